//! The running stack, shared by `up`, `status` and the benches: Compose v2
//! starts it, the Engine API tells each service's state and health, and
//! `start_and_wait` watches it become healthy, or says why not.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bollard::query_parameters::{InspectContainerOptions, LogsOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar};
use xshell::{cmd, Shell};

use crate::engine;
use crate::gen::{self, Mode};
use crate::manifest::{self, Stack};
use crate::prepared::{Prepared, Repo};

pub mod timers;

/// The longest one healthcheck run by the `Prober` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a running service may stay unhealthy before `up` gives up on it.
const UNHEALTHY_GRACE: Duration = Duration::from_secs(15);

/// Names of every compose service: infrastructure first, then the manifests'.
pub fn service_names(stack: &Stack) -> Vec<String> {
    manifest::INFRA.iter().map(|s| s.to_string()).chain(stack.services.iter().map(|s| s.name.clone())).collect()
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
    pub fn label(&self) -> String {
        match (self.state.as_str(), self.health.as_str()) {
            ("running", "") => "running".to_owned(),
            ("running", h) => h.to_owned(),
            (s, _) => s.to_owned(),
        }
    }
    pub fn healthy(&self) -> bool {
        self.state == "running" && self.health == "healthy"
    }
}

/// Every container of a compose project, running or not.
async fn project_containers(project: &str) -> Result<Vec<engine::Container>> {
    engine::containers_with_label(&format!("com.docker.compose.project={project}")).await
}

/// Current state of each service of the project, by service name. A service
/// with several containers (`replicas`) shows its least healthy one, so it
/// counts as healthy only when every replica is.
pub async fn states(docker: &Docker, project: &str) -> Result<BTreeMap<String, ServiceState>> {
    let containers = project_containers(project).await?;
    // One entry per replica: (service, container number).
    let mut replicas: BTreeMap<(String, String), ServiceState> = BTreeMap::new();
    for c in containers {
        let labels = c.labels.clone();
        let Some(service) = labels.get("com.docker.compose.service").cloned() else {
            continue;
        };
        let number = labels.get("com.docker.compose.container-number").cloned().unwrap_or_default();
        let id = c.id.clone();
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

/// The last line of a container's last failed health probe, while its
/// latest probe failed (what `status` shows beside an unhealthy service).
pub async fn failing_probe(docker: &Docker, container: &str) -> Option<String> {
    let inspect = docker.inspect_container(container, None::<InspectContainerOptions>).await.ok()?;
    let last = inspect.state?.health?.log?.pop()?;
    let output = last.output.unwrap_or_default();
    (last.exit_code != Some(0)).then(|| output.trim().lines().last().unwrap_or("").to_owned())
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

/// Starts the stack and waits; returns each service's seconds to healthy.
/// `quiet` hides the progress lines (for `--json`).
pub async fn start_and_wait(
    sh: &Shell,
    docker: &Docker,
    stack: &Stack,
    timeout: u64,
    quiet: bool,
) -> Result<BTreeMap<String, f64>> {
    let started = Instant::now();
    let names = service_names(stack);
    let mut prober = Prober::new(docker).await?;
    let caps = engine::caps::of(docker).await?;
    let keep = !caps.compose_sees_unchanged_containers() && unchanged(sh, docker, &stack.manifest.project).await;
    let mut watch = Watch::new(spawn_compose_up(sh, keep)?, started);
    let bars = Bars::new(&names, quiet);
    let deadline = started + Duration::from_secs(timeout);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let verdict: Result<()> = loop {
        watch.poll_compose().await?;
        prober.tick(&stack.manifest.project).await;
        let current = states(docker, &stack.manifest.project).await?;
        watch.observe(&names, &current);
        bars.show(&names, &current, &watch.healthy_at);
        if let Some(verdict) = watch.verdict(docker, &names, &current, deadline, timeout).await {
            break verdict;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = &mut ctrl_c => interrupted(sh, &bars, watch.compose.take()).await,
        }
    };
    bars.finish();
    if let Some(compose) = watch.compose.take() {
        // The deadline passed while compose still waits on a dependency:
        // stop it, so `--timeout` bounds compose's own wait too.
        compose.stop().await;
    }
    if prober.active() {
        // From now on the health timers probe, as the engine's would. A
        // failure to start them must not hide the verdict below.
        if let Err(e) = timers::ensure(&stack.manifest.project) {
            eprintln!("warning: {e:#}: health changes only when `cargo xtask status` probes");
        }
    }
    if let Err(e) = verdict {
        bail!("{e:#}\n\nthe containers are left running for inspection: `cargo xtask status`, `cargo xtask logs <service>`; `cargo xtask down` removes them");
    }
    Ok(watch.healthy_at)
}

/// `docker compose up` running in the background: its task and process id.
struct ComposeUp {
    handle: tokio::task::JoinHandle<std::io::Result<std::process::Output>>,
    pid: u32,
}

impl ComposeUp {
    /// Stops compose (SIGTERM) and waits, at most 30 s, for it to return.
    async fn stop(self) {
        let _ = std::process::Command::new("kill").arg(self.pid.to_string()).status();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.handle).await;
    }
}

/// Whether every container the project has matches what Compose would
/// create now: its config hash (`docker compose config --hash`) and the id
/// of the image its reference names. For engines where Compose cannot tell
/// (`Capabilities::compose_sees_unchanged_containers`).
async fn unchanged(sh: &Shell, docker: &Docker, project: &str) -> bool {
    let Ok(hashes) = cmd!(sh, "docker compose config --hash *").quiet().ignore_stderr().read() else { return false };
    let hashes: BTreeMap<&str, &str> = hashes.lines().filter_map(|l| l.split_once(' ')).collect();
    let Ok(containers) = project_containers(project).await else { return false };
    for c in containers {
        let service = c.labels.get("com.docker.compose.service").map(String::as_str).unwrap_or_default();
        let hash = c.labels.get("com.docker.compose.config-hash").map(String::as_str);
        let Ok(inspect) = docker.inspect_container(&c.id, None::<InspectContainerOptions>).await else { return false };
        let reference = inspect.config.and_then(|c| c.image).unwrap_or_default();
        let current = engine::image_id(docker, &reference).await;
        if hashes.get(service).copied() != hash || current.is_none() || current != inspect.image {
            return false;
        }
    }
    true
}

/// `docker compose up` in the background. compose waits for
/// `service_healthy` dependencies before starting dependants, but returns as
/// soon as containers are started: the watch tells healthy from running.
/// `keep`: every container is known unchanged (see `unchanged`), so none is
/// recreated (`--no-recreate`); missing or stopped ones are still started.
fn spawn_compose_up(sh: &Shell, keep: bool) -> Result<ComposeUp> {
    let keep = if keep { ["--no-recreate"].as_slice() } else { &[] };
    eprintln!("$ docker compose up --detach --no-build --pull never --remove-orphans {}", keep.join(" "));
    let mut command = std::process::Command::from(cmd!(
        sh,
        "docker compose up --detach --no-build --pull never --remove-orphans --quiet-pull {keep...}"
    ));
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().context("cannot run `docker compose`")?;
    let pid = child.id();
    Ok(ComposeUp { handle: tokio::task::spawn_blocking(move || child.wait_with_output()), pid })
}

/// Ctrl-C while `up` waits: stop the stack (keeping the containers), exit 130.
async fn interrupted(sh: &Shell, bars: &Bars, compose: Option<ComposeUp>) -> ! {
    bars.clear();
    eprintln!("interrupted: stopping the stack (containers are kept; `cargo xtask down` removes them)");
    // Let a running `compose up` return first, or it could start a
    // container after the stop below.
    if let Some(compose) = compose {
        compose.stop().await;
    }
    let _ = cmd!(sh, "docker compose stop").quiet().ignore_stderr().run();
    std::process::exit(130);
}

/// On an engine that runs no healthchecks itself (Podman without systemd),
/// runs them: a container not yet healthy every second, a healthy one
/// every ten. The engine records each result, so Compose's
/// `service_healthy` and `status` see the truth. Does nothing elsewhere.
pub struct Prober {
    active: bool,
    /// Per container: when it was last probed and whether it was healthy
    /// then. A probe that failed to run (the container still starting, no
    /// answer in time) is simply due again.
    last: BTreeMap<String, (Instant, bool)>,
}

impl Prober {
    pub async fn new(docker: &Docker) -> Result<Prober> {
        Ok(Prober { active: !engine::caps::of(docker).await?.runs_healthchecks(), last: BTreeMap::new() })
    }

    /// A prober that runs whatever the engine (the health timers' process,
    /// started only where the engine runs none).
    pub fn always() -> Prober {
        Prober { active: true, last: BTreeMap::new() }
    }

    /// Whether it runs healthchecks (the engine does not).
    pub fn active(&self) -> bool {
        self.active
    }

    /// Probes each running container of `project` that is due; returns how
    /// many containers the project has (0 when they cannot be listed).
    pub async fn tick(&mut self, project: &str) -> usize {
        if !self.active {
            return 0;
        }
        let Ok(containers) = project_containers(project).await else { return 0 };
        // A container that stopped starts again as `starting`: probe it fast.
        let running: Vec<String> = containers.iter().filter(|c| c.state == "running").map(|c| c.id.clone()).collect();
        self.last.retain(|id, _| running.contains(id));
        for id in running {
            let due = match self.last.get(&id) {
                None => true,
                Some((at, healthy)) => at.elapsed() >= Duration::from_secs(if *healthy { 10 } else { 1 }),
            };
            if due {
                // Bounded: a probe that does not answer counts as not healthy.
                let probe = tokio::time::timeout(PROBE_TIMEOUT, engine::run_healthcheck(&id)).await;
                let healthy = matches!(probe, Ok(Ok(status)) if status == "healthy");
                self.last.insert(id, (Instant::now(), healthy));
            }
        }
        containers.len()
    }
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
        if let Some(compose) = self.compose.take_if(|c| c.handle.is_finished()) {
            let output = compose.handle.await.context("compose task failed")?.context("cannot run `docker compose`")?;
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

/// What `up` and `dev` do before they start the stack: the manifests and
/// exports, generated files that must be fresh, the engine (offering
/// `setup`), no other checkout's stack under this project (checked before
/// anything is written, not even `.env`), then the prepared context.
pub fn prepare_to_run(repo: &Repo) -> Result<Prepared> {
    let stack = repo.stack()?;
    let exports = repo.exports(&stack)?;
    gen::ensure_files(&repo.root, &gen::render_all(&stack, &exports), Mode::Check)
        .context("generated files are stale; `cargo xtask gen` regenerates them")?;
    let engine = repo.engine()?;
    engine.rt.block_on(refuse_another_checkout(&stack.manifest.project, &repo.root))?;
    Prepared::new(repo, stack, exports, engine)
}

/// Compose names a stack by its project alone: a second checkout of this
/// project (a clone or a git worktree) would take over the first one's
/// containers, ports and data volume. Refuses, naming the other directory
/// and the way out, while any container of the project was started from
/// another directory than `root`.
pub async fn refuse_another_checkout(project: &str, root: &Path) -> Result<()> {
    let containers = project_containers(project).await?;
    let here = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let other = containers
        .iter()
        .filter_map(|c| c.labels.get("com.docker.compose.project.working_dir"))
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
