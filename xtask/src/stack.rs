//! `cargo xtask up | down | status | logs`: the dev stack through Compose v2,
//! with health watched through the Engine API.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder, LogsOptionsBuilder};
use bollard::Docker;
use clap::Args;
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar};
use xshell::{cmd, Shell};

use crate::build_images::{self, BuildImages};
use crate::dotenv::DotEnv;
use crate::gen::{self, Mode};
use crate::manifest::{self, Kind, Stack};
use crate::{base_images, engine, setup};

/// How long a running service may stay unhealthy before `up` gives up on it.
const UNHEALTHY_GRACE: Duration = Duration::from_secs(15);

/// Build what is stale, start the stack and wait until every service is healthy.
#[derive(Args, Debug)]
pub struct Up {
    /// Seconds to wait for every service to become healthy.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// Do not build images (use what the engine has).
    #[arg(long)]
    pub no_build: bool,
    /// Print the time-to-healthy table as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Stop and remove the stack's containers (data volumes are kept unless --volumes).
#[derive(Args, Debug)]
pub struct Down {
    /// Also remove the data volumes (the database is lost).
    #[arg(long)]
    pub volumes: bool,
}

/// Show every service's state and health.
#[derive(Args, Debug)]
pub struct Status {}

/// Show (and by default follow) the logs of one service or of all.
#[derive(Args, Debug)]
pub struct Logs {
    /// Only this service (default: all).
    pub service: Option<String>,
    /// Print what is there and exit instead of following.
    #[arg(long)]
    pub no_follow: bool,
    /// Lines of history per service.
    #[arg(long, default_value_t = 100)]
    pub tail: u32,
}

/// Names of every compose service: infrastructure first, then the manifests'.
pub fn service_names(stack: &Stack) -> Vec<String> {
    manifest::INFRA.iter().map(|s| s.to_string()).chain(stack.services.iter().map(|s| s.name.clone())).collect()
}

fn compose_preflight(sh: &Shell) -> Result<()> {
    if setup::compose_version(sh).is_none() {
        bail!("Docker Compose v2 is missing (`docker compose version` fails): run `cargo xtask setup --yes`");
    }
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceState {
    pub service: String,
    pub state: String,
    pub health: String,
    pub restarts: i64,
    pub container: String,
}

impl ServiceState {
    fn label(&self) -> String {
        match (self.state.as_str(), self.health.as_str()) {
            ("running", "") => "running".to_owned(),
            ("running", h) => h.to_owned(),
            (s, _) => s.to_owned(),
        }
    }
    fn healthy(&self) -> bool {
        self.state == "running" && self.health == "healthy"
    }
}

/// Every container of a compose project, running or not.
async fn project_containers(docker: &Docker, project: &str) -> Result<Vec<bollard::models::ContainerSummary>> {
    let filters =
        std::collections::HashMap::from([("label".to_owned(), vec![format!("com.docker.compose.project={project}")])]);
    docker
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .context("cannot list containers")
}

/// Current state of each service of the project, by service name. A service
/// with several containers (`replicas`) shows its least healthy one, so it
/// counts as healthy only when every replica is.
pub async fn states(docker: &Docker, project: &str) -> Result<BTreeMap<String, ServiceState>> {
    let containers = project_containers(docker, project).await?;
    // One entry per replica: (service, container number).
    let mut replicas: BTreeMap<(String, String), ServiceState> = BTreeMap::new();
    for c in containers {
        let labels = c.labels.clone().unwrap_or_default();
        let Some(service) = labels.get("com.docker.compose.service").cloned() else {
            continue;
        };
        let number = labels.get("com.docker.compose.container-number").cloned().unwrap_or_default();
        let id = c.id.clone().unwrap_or_default();
        // Compose may remove a container (a replaced one) between the list
        // and this look: it is simply not part of the state any more.
        let Ok(inspect) = docker.inspect_container(&id, None::<InspectContainerOptions>).await else { continue };
        let state = inspect.state.clone().unwrap_or_default();
        let health = state.health.as_ref().and_then(|h| h.status).map(|s| s.to_string()).unwrap_or_default();
        let entry = ServiceState {
            service: service.clone(),
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            health: if health == "none" { String::new() } else { health },
            restarts: inspect.restart_count.unwrap_or_default(),
            container: id,
        };
        // While compose replaces a container, two exist: the running one counts.
        let key = (service, number);
        if replicas.get(&key).is_none_or(|known: &ServiceState| known.state != "running") {
            replicas.insert(key, entry);
        }
    }
    Ok(least_healthy(replicas.into_values()))
}

/// Per service, the replica furthest from healthy.
fn least_healthy(replicas: impl IntoIterator<Item = ServiceState>) -> BTreeMap<String, ServiceState> {
    let rank = |s: &ServiceState| match (s.state.as_str(), s.health.as_str()) {
        ("running", "healthy" | "") => 0,
        ("running", "starting") => 1,
        _ => 2,
    };
    let mut out: BTreeMap<String, ServiceState> = BTreeMap::new();
    for replica in replicas {
        if out.get(&replica.service).is_none_or(|known| rank(&replica) > rank(known)) {
            out.insert(replica.service.clone(), replica);
        }
    }
    out
}

/// Why a service is not healthy: its last probe outputs and its log tail.
pub async fn diagnose(docker: &Docker, state: &ServiceState) -> String {
    let mut out = format!("{} is {} (restarts: {})", state.service, state.label(), state.restarts);
    if let Ok(inspect) = docker.inspect_container(&state.container, None::<InspectContainerOptions>).await {
        let s = inspect.state.unwrap_or_default();
        if let Some(code) = s.exit_code.filter(|c| *c != 0) {
            out.push_str(&format!("\nexit code: {code}"));
        }
        if let Some(log) = s.health.and_then(|h| h.log) {
            out.push_str("\nlast health probes:");
            for probe in log.iter().rev().take(3).rev() {
                let output = probe.output.clone().unwrap_or_default();
                out.push_str(&format!(
                    "\n  exit {}: {}",
                    probe.exit_code.unwrap_or(-1),
                    output.trim().lines().last().unwrap_or("")
                ));
            }
        }
    }
    let mut logs =
        docker.logs(&state.container, Some(LogsOptionsBuilder::default().stdout(true).stderr(true).tail("25").build()));
    out.push_str("\nlast log lines:");
    let mut text = String::new();
    while let Some(Ok(line)) = logs.next().await {
        for l in line.to_string().lines() {
            out.push_str("\n  | ");
            out.push_str(l);
            text.push_str(l);
            text.push('\n');
        }
    }
    if let Some(hint) = hint(&text) {
        out.push_str("\nhint: ");
        out.push_str(hint);
    }
    out
}

/// Known causes, recognised in a log, with the fix a newcomer needs.
pub fn hint(logs: &str) -> Option<&'static str> {
    const HINTS: [(&str, &str); 3] = [
        (
            "password authentication failed",
            "the database volume was initialised with another POSTGRES_PASSWORD than the one in .env now: \
             put the old one back in .env, or start afresh with `cargo xtask down --volumes` (deletes the data)",
        ),
        ("address already in use", "a host port is taken: change the *_HOST_PORT values in .env"),
        ("POSTGRES_PASSWORD is not set", "run `cargo xtask up` once (it writes .env) or copy .env.example to .env"),
    ];
    HINTS.iter().find(|(needle, _)| logs.contains(needle)).map(|(_, hint)| *hint)
}

impl Up {
    pub fn run(self, sh: &Shell, root: &Path) -> Result<()> {
        let stack = manifest::load(root)?;
        gen::ensure_files(root, &gen::render_all(&stack), Mode::Check)
            .context("generated files are stale; `cargo xtask gen` regenerates them")?;
        let rt = engine::runtime()?;
        if let Ok(docker) = rt.block_on(engine::connect()) {
            rt.block_on(refuse_another_checkout(&docker, &stack.manifest.project, root))?;
        }
        let docker = prepare(sh, root, &rt)?;
        rt.block_on(async {
            if !self.no_build {
                let results = build_images::build_all(sh, &docker, &stack, &BuildImages::default()).await?;
                if results.iter().any(|r| r.built) {
                    build_images::print_table(&results);
                }
            }
            let healthy_at = self.start_and_wait(sh, &docker, &stack).await?;
            self.report(&stack, &healthy_at)
        })
    }

    fn report(&self, stack: &Stack, healthy_at: &BTreeMap<String, f64>) -> Result<()> {
        let total = healthy_at.values().cloned().fold(0.0, f64::max);
        if self.json {
            println!("{}", serde_json::json!({ "time_to_healthy": healthy_at, "all_healthy_seconds": total }));
            return Ok(());
        }
        println!("\n{:<16} {:>16}", "SERVICE", "HEALTHY AFTER");
        for (n, t) in service_names(stack).iter().filter_map(|n| healthy_at.get(n).map(|t| (n, t))) {
            println!("{n:<16} {t:>15.1}s");
        }
        println!("all {} services healthy in {total:.1}s", healthy_at.len());
        let env = DotEnv::load_or_create(&stack.root)?;
        for s in stack.services.iter().filter(|s| s.manifest.kind == Kind::Http) {
            if let Some(port) = s.manifest.host_port {
                let port = env.get(&format!("{}_HOST_PORT", s.env_name())).unwrap_or_else(|| port.to_string());
                println!(
                    "{}: http://127.0.0.1:{port}/docs (health: http://127.0.0.1:{port}{})",
                    s.name,
                    s.manifest.health.path.as_deref().unwrap_or("/health")
                );
            }
        }
        Ok(())
    }

    /// Starts the stack and waits; returns each service's seconds to healthy.
    pub async fn start_and_wait(&self, sh: &Shell, docker: &Docker, stack: &Stack) -> Result<BTreeMap<String, f64>> {
        let started = Instant::now();
        let names = service_names(stack);
        let mut watch = Watch::new(spawn_compose_up(sh), started);
        let bars = Bars::new(&names, self.json);
        let deadline = started + Duration::from_secs(self.timeout);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let verdict: Result<()> = loop {
            watch.poll_compose().await?;
            let current = states(docker, &stack.manifest.project).await?;
            watch.observe(&names, &current);
            bars.show(&names, &current, &watch.healthy_at);
            if let Some(verdict) = watch.verdict(docker, &names, &current, deadline, self.timeout).await {
                break verdict;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = &mut ctrl_c => interrupted(sh, &bars, watch.compose.take()).await,
            }
        };
        bars.finish();
        if let Err(e) = verdict {
            bail!("{e:#}\n\nthe containers are left running for inspection: `cargo xtask status`, `cargo xtask logs <service>`; `cargo xtask down` removes them");
        }
        Ok(watch.healthy_at)
    }
}

type ComposeUp = tokio::task::JoinHandle<xshell::Result<std::process::Output>>;

/// `docker compose up` in the background. compose waits for
/// `service_healthy` dependencies before starting dependants, but returns as
/// soon as containers are started: the watch tells healthy from running.
fn spawn_compose_up(sh: &Shell) -> ComposeUp {
    eprintln!("$ docker compose up --detach --no-build --pull never --remove-orphans");
    let sh = sh.clone();
    tokio::task::spawn_blocking(move || {
        cmd!(sh, "docker compose up --detach --no-build --pull never --remove-orphans --quiet-pull")
            .quiet()
            .ignore_status()
            .output()
    })
}

/// Ctrl-C while `up` waits: stop the stack (keeping the containers), exit 130.
async fn interrupted(sh: &Shell, bars: &Bars, compose: Option<ComposeUp>) -> ! {
    bars.clear();
    eprintln!("interrupted: stopping the stack (containers are kept; `cargo xtask down` removes them)");
    // Let a running `compose up` return first, or it could start a
    // container after the stop below.
    if let Some(handle) = compose {
        let _ = tokio::time::timeout(Duration::from_secs(60), handle).await;
    }
    let _ = cmd!(sh, "docker compose stop").quiet().ignore_stderr().run();
    std::process::exit(130);
}

/// One live progress line per service.
struct Bars(BTreeMap<String, ProgressBar>);

impl Bars {
    fn new(names: &[String], hidden: bool) -> Bars {
        let multi = MultiProgress::new();
        if hidden {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        Bars(
            names
                .iter()
                .map(|n| {
                    let bar = multi.add(ProgressBar::new_spinner().with_prefix(format!("{n:<14}")));
                    bar.set_style(engine::spinner_style());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar.set_message("waiting");
                    (n.clone(), bar)
                })
                .collect(),
        )
    }

    fn show(&self, names: &[String], current: &BTreeMap<String, ServiceState>, healthy_at: &BTreeMap<String, f64>) {
        for name in names {
            let msg = match (current.get(name), healthy_at.get(name)) {
                (Some(_), Some(t)) => format!("healthy after {t:.1}s"),
                (Some(s), None) if s.restarts > 0 => format!("{} (restarted {}x)", s.label(), s.restarts),
                (Some(s), None) => s.label(),
                (None, _) => "not created yet".to_owned(),
            };
            engine::progress(&self.0[name], msg);
        }
    }

    fn finish(&self) {
        self.0.values().for_each(ProgressBar::finish);
    }

    fn clear(&self) {
        self.0.values().for_each(ProgressBar::finish_and_clear);
    }
}

/// What `up` has seen so far: compose's outcome, when each service became
/// healthy, and since when each running one has been unhealthy.
struct Watch {
    started: Instant,
    compose: Option<ComposeUp>,
    compose_failure: Option<String>,
    healthy_at: BTreeMap<String, f64>,
    unhealthy_since: BTreeMap<String, Instant>,
}

impl Watch {
    fn new(compose: ComposeUp, started: Instant) -> Watch {
        Watch {
            started,
            compose: Some(compose),
            compose_failure: None,
            healthy_at: BTreeMap::new(),
            unhealthy_since: BTreeMap::new(),
        }
    }

    /// Collects compose's result once it has returned.
    async fn poll_compose(&mut self) -> Result<()> {
        if let Some(handle) = self.compose.take_if(|h| h.is_finished()) {
            let output = handle.await.context("compose task failed")?.context("cannot run `docker compose`")?;
            if !output.status.success() {
                self.compose_failure = Some(String::from_utf8_lossy(&output.stderr).trim().to_owned());
            }
        }
        Ok(())
    }

    fn observe(&mut self, names: &[String], current: &BTreeMap<String, ServiceState>) {
        for name in names {
            match current.get(name) {
                Some(s) if s.healthy() => {
                    self.healthy_at.entry(name.clone()).or_insert_with(|| self.started.elapsed().as_secs_f64());
                }
                Some(_) => {
                    self.healthy_at.remove(name);
                }
                None => {}
            }
        }
        for (name, s) in current {
            if s.state == "running" && s.health == "unhealthy" {
                self.unhealthy_since.entry(name.clone()).or_insert_with(Instant::now);
            } else {
                self.unhealthy_since.remove(name);
            }
        }
    }

    /// `Some` once the wait is over: all healthy, or why not.
    async fn verdict(
        &self,
        docker: &Docker,
        names: &[String],
        current: &BTreeMap<String, ServiceState>,
        deadline: Instant,
        timeout: u64,
    ) -> Option<Result<()>> {
        // Until compose returns, a healthy container may be the old one it
        // is about to replace, and a container may still hold a previous
        // run's state: only the deadline is judged before that.
        if self.compose.is_none() {
            if let Some(verdict) = self.settled(docker, names, current).await {
                return Some(verdict);
            }
        }
        if Instant::now() <= deadline {
            return None;
        }
        let mut report = format!("not every service was healthy after {timeout} s (raise --timeout?)");
        for n in names.iter().filter(|n| !self.healthy_at.contains_key(*n)) {
            match current.get(n) {
                Some(s) => report.push_str(&format!("\n\n{}", diagnose(docker, s).await)),
                None => report.push_str(&format!("\n\n{n} was never created (a dependency never became healthy)")),
            }
        }
        Some(Err(anyhow::anyhow!(report)))
    }

    /// Once compose has returned: all healthy, compose failed, or a service
    /// that will not become healthy.
    async fn settled(
        &self,
        docker: &Docker,
        names: &[String],
        current: &BTreeMap<String, ServiceState>,
    ) -> Option<Result<()>> {
        if names.iter().all(|n| self.healthy_at.contains_key(n)) {
            return Some(Ok(()));
        }
        if let Some(msg) = &self.compose_failure {
            let mut report = format!("`docker compose up` failed:\n{msg}");
            for s in current.values().filter(|s| !s.healthy()) {
                report.push_str(&format!("\n\n{}", diagnose(docker, s).await));
            }
            return Some(Err(anyhow::anyhow!(report)));
        }
        // A running service may recover (a dependency restarting): it fails
        // only after UNHEALTHY_GRACE of continuous unhealthiness.
        let failed = current.values().find(|s| {
            self.unhealthy_since.get(&s.service).is_some_and(|t| t.elapsed() >= UNHEALTHY_GRACE)
                || (s.state == "exited" && s.restarts >= 3)
                || s.state == "dead"
        })?;
        Some(Err(anyhow::anyhow!("{}", diagnose(docker, failed).await)))
    }
}

/// Compose names a stack by its project alone: a second checkout of this
/// project (a clone or a git worktree) would take over the first one's
/// containers, ports and data volume. Refuses, naming the other directory
/// and the way out, while any container of the project was started from
/// another directory than `root`.
pub async fn refuse_another_checkout(docker: &Docker, project: &str, root: &Path) -> Result<()> {
    let containers = project_containers(docker, project).await?;
    let here = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let other = containers
        .iter()
        .filter_map(|c| c.labels.as_ref()?.get("com.docker.compose.project.working_dir"))
        .map(|dir| Path::new(dir).canonicalize().unwrap_or_else(|_| dir.into()))
        .find(|dir| *dir != here);
    if let Some(dir) = other.as_ref().filter(|d| !d.exists()) {
        bail!(
            "the compose project {project:?} has containers started from {dir}, a checkout that no longer exists; \
             this checkout stops here without touching them.\n\
             Remove those containers (their data volume is kept) with `docker compose -p {project} down`, then retry.",
            dir = dir.display()
        );
    }
    if let Some(dir) = other {
        bail!(
            "the compose project {project:?} has containers started from {dir} (another checkout of this project); \
             they share its name, host ports and data volume, so this checkout stops here without touching them.\n\
             Either stop that stack first (`cd {dir} && cargo xtask down`), or give this checkout a project of its \
             own: set `project:` in stack.yaml to another name, run `cargo xtask gen`, and change the *_HOST_PORT \
             values in .env if that stack keeps running.",
            dir = dir.display()
        );
    }
    Ok(())
}

/// On a machine whose `.env` selects the local base images (or that cannot
/// pull the upstream ones), build them first.
/// What every command that runs the stack needs first: an engine and
/// Compose (on a fresh machine: the checks, and with consent the installs,
/// of `setup`), a `.env`, and the base images it selects.
pub fn prepare(sh: &Shell, root: &Path, rt: &tokio::runtime::Runtime) -> Result<Docker> {
    let connected = match setup::compose_version(sh) {
        Some(_) => rt.block_on(engine::connect()).ok(),
        None => None,
    };
    let docker = match connected {
        Some(docker) => docker,
        None => {
            setup::Setup { yes: false, registry: false }.run(sh, root)?;
            rt.block_on(engine::connect())?
        }
    };
    let project = manifest::load(root)?.manifest.project;
    rt.block_on(async {
        let env = DotEnv::load_or_create(root)?;
        let volume = format!("{project}_postgres-data");
        if env.created && docker.inspect_volume(&volume).await.is_ok() {
            bail!(
                "the data volume {volume} already exists (another checkout of this project, or an earlier .env), \
                 but .env was just created with a new random POSTGRES_PASSWORD, which that database will refuse.\n\
                 Either put the password it was initialised with into .env, or delete the old data with \
                 `cargo xtask down --volumes`."
            );
        }
        ensure_base_images(sh, root, &docker, &env).await?;
        Ok(docker)
    })
}

async fn ensure_base_images(sh: &Shell, root: &Path, docker: &Docker, env: &DotEnv) -> Result<()> {
    let mut missing = Vec::new();
    for (key, _) in base_images::env_overrides() {
        let image = env.get(key).filter(|v| !v.is_empty()).unwrap_or_default();
        if !image.is_empty() && engine::image_id(docker, &image).await.is_none() {
            missing.push((key, image));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    // Upstream images: pull them (a connected machine keeps them).
    let mut offline = false;
    for (_, image) in missing.iter().filter(|(_, i)| !i.starts_with("pysvc/")) {
        eprintln!("pulling {image}");
        if let Err(err) = engine::pull(docker, image).await {
            eprintln!("cannot pull {image} ({err:#}): building local base images instead (no registry needed)");
            offline = true;
            break;
        }
    }
    if offline || missing.iter().any(|(k, i)| i.starts_with("pysvc/") && *k != "KAFKA_IMAGE") {
        return base_images::ensure_all(sh, root, docker, false).await;
    }
    // Only the broker is local-only: build it on the selected Python image.
    if missing.iter().any(|(k, _)| *k == "KAFKA_IMAGE") {
        let python = env.get("PYTHON_BASE_IMAGE").unwrap_or_else(|| base_images::PYTHON_IMAGE.to_owned());
        let id = engine::image_id(docker, &python).await.unwrap_or_default();
        base_images::broker(sh, root, docker, &python, &id, false).await?;
    }
    Ok(())
}

/// A shell for compose commands that never start anything (`down`, `logs`):
/// they must work before `.env` exists, so a missing password is filled in
/// with a placeholder (compose refuses to read the file without one).
fn compose_shell_without_secrets(sh: &Shell, root: &Path) -> Result<Shell> {
    compose_preflight(sh)?;
    let shell = sh.clone();
    let in_env_file = std::fs::read_to_string(root.join(".env"))
        .map(|t| t.lines().any(|l| l.strip_prefix("POSTGRES_PASSWORD=").is_some_and(|v| !v.trim().is_empty())))
        .unwrap_or(false);
    if !in_env_file && std::env::var_os("POSTGRES_PASSWORD").is_none() {
        shell.set_var("POSTGRES_PASSWORD", "placeholder-not-used-by-down-or-logs");
    }
    Ok(shell)
}

impl Down {
    pub fn run(self, sh: &Shell, root: &Path) -> Result<()> {
        // `down` must work even with a broken manifest: then compose alone decides.
        if let Ok(m) = manifest::load_stack_manifest(root) {
            let rt = engine::runtime()?;
            if let Ok(docker) = rt.block_on(engine::connect()) {
                rt.block_on(refuse_another_checkout(&docker, &m.project, root))?;
            }
        }
        let sh = &compose_shell_without_secrets(sh, root)?;
        let volumes = self.volumes.then_some("--volumes");
        cmd!(sh, "docker compose down --remove-orphans {volumes...}").run().context("`docker compose down` failed")?;
        if !self.volumes {
            println!("stack removed; data volumes kept (`cargo xtask down --volumes` removes them)");
        }
        Ok(())
    }
}

impl Status {
    pub fn run(self, root: &Path) -> Result<()> {
        let stack = manifest::load(root)?;
        engine::runtime()?.block_on(async {
            let docker = engine::connect().await?;
            let current = states(&docker, &stack.manifest.project).await?;
            println!("{:<16} {:<12} {:>8}", "SERVICE", "STATE", "RESTARTS");
            for name in service_names(&stack) {
                match current.get(&name) {
                    Some(s) => println!("{:<16} {:<12} {:>8}", name, s.label(), s.restarts),
                    None => println!("{:<16} {:<12} {:>8}", name, "absent", "-"),
                }
            }
            Ok(())
        })
    }
}

impl Logs {
    pub fn run(self, sh: &Shell, root: &Path) -> Result<()> {
        let sh = &compose_shell_without_secrets(sh, root)?;
        let follow = (!self.no_follow).then_some("--follow");
        let tail = self.tail.to_string();
        let service = self.service;
        cmd!(sh, "docker compose logs --tail {tail} {follow...} {service...}")
            .run()
            .context("`docker compose logs` failed")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_failures_get_a_hint() {
        let log = "FATAL:  password authentication failed for user \"pysvc\"";
        assert!(super::hint(log).unwrap().contains("cargo xtask down --volumes"));
        assert!(super::hint("all good").is_none());
    }

    #[test]
    fn a_service_is_as_healthy_as_its_least_healthy_replica() {
        let replica = |service: &str, container: &str, state: &str, health: &str| super::ServiceState {
            service: service.to_owned(),
            state: state.to_owned(),
            health: health.to_owned(),
            restarts: 0,
            container: container.to_owned(),
        };
        let states = super::least_healthy([
            replica("worker", "w1", "running", "healthy"),
            replica("worker", "w2", "running", "starting"),
            replica("worker", "w3", "running", "healthy"),
            replica("api", "a1", "running", "healthy"),
            replica("db", "d1", "exited", ""),
            replica("db", "d2", "running", "healthy"),
        ]);
        assert_eq!(states["worker"].container, "w2", "one starting replica keeps the service starting");
        assert_eq!(states["api"].container, "a1");
        assert_eq!(states["db"].container, "d1", "an exited replica is the one to show");
    }
}
