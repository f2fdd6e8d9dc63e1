//! `cargo xtask dev [service…]`: the stack in dev mode (`compose.dev.yaml`
//! on top of `compose.yaml`: code folders mounted read-only, commands that
//! reload on SIGHUP) and a watcher that applies every edit until Ctrl-C.
//! A code edit is a SIGHUP to the containers that use it (the http
//! supervisor serves a fresh child, a worker reloads between batches); a
//! lock file rebuilds and recreates just that service; a manifest
//! regenerates first. `devloop::classify` decides which; each outcome is one
//! printed line with the time from the file write until the new code serves.
//! On Ctrl-C the stack is left as `cargo xtask up` leaves it (`--down` stops it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use bollard::query_parameters::{KillContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder};
use bollard::Docker;
use clap::Args;
use futures_util::StreamExt;
use tokio::signal::unix::{signal, Signal, SignalKind};
use xshell::{cmd, Shell};

use crate::bench::http::Conn;
use crate::devloop::{self, Change, Outcome, Plan, Snapshot};
use crate::gen::{self, Mode};
use crate::images::{self, Select};
use crate::manifest::{self, Kind, Stack};
use crate::prepared::{Prepared, Repo};
use crate::stack;
use crate::workspace::{self, Exports};

/// How often the watched files are polled, and how long a change may settle.
const POLL: Duration = Duration::from_millis(25);
const SETTLE: Duration = Duration::from_millis(10);
/// How long a service has to report a reload, or to serve after a rebuild.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
const SERVE_TIMEOUT: Duration = Duration::from_secs(120);
/// The override for a subset of the services (`dev api-server`).
const SUBSET_OVERRIDE: &str = "target/xtask-dev/compose.dev.yaml";

/// Run the stack in dev mode: every edit is live until Ctrl-C.
#[derive(Args, Debug)]
pub struct Dev {
    /// Services in dev mode (default: every one); the others run their images.
    pub services: Vec<String>,
    /// Stop the stack on Ctrl-C (default: leave it as `cargo xtask up` does).
    #[arg(long)]
    pub down: bool,
    /// Seconds to wait for every service to become healthy at the start.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
}

/// A `pysvc-dev:` report of one container.
struct Event {
    container: String,
    outcome: Outcome,
    at: SystemTime,
}

enum Next {
    Stop,
    /// New manifests (generated files written): the plan is carried out with them.
    Manifests(Box<Stack>, Exports, Plan, Vec<Change>),
}

struct Session {
    dev_sh: Shell,
    selected: Vec<String>,
    snapshot: Snapshot,
    /// Log followers by container id, with the container's service.
    followers: BTreeMap<String, (String, tokio::task::JoinHandle<()>)>,
    tx: mpsc::Sender<Event>,
    rx: mpsc::Receiver<Event>,
    pending: Option<(Plan, Vec<Change>)>,
    stop_signals: (Signal, Signal),
}

impl Dev {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let mut p = stack::prepare_to_run(repo)?;
        for name in &self.services {
            if !p.stack.services.iter().any(|s| &s.name == name) {
                let known: Vec<&str> = p.stack.services.iter().map(|s| s.name.as_str()).collect();
                bail!("no service named {name:?}; services: {}", known.join(", "));
            }
        }
        let mut session = p.block_on(self.start(&p))?;
        loop {
            match p.block_on(session.watch(&p))? {
                Next::Stop => break,
                Next::Manifests(stack, exports, plan, changes) => {
                    p.stack = *stack;
                    p.exports = exports;
                    session.pending = Some((plan, changes));
                }
            }
        }
        p.block_on(self.finish(&p, &mut session))
    }

    /// Builds what is stale, starts the stack with the dev override and
    /// waits until it is healthy.
    async fn start(&self, p: &Prepared) -> Result<Session> {
        let results = images::build_all(p, &Select::default()).await?;
        if results.iter().any(|r| r.built) {
            images::print_table(&results);
        }
        let dev_sh = p.sh.clone();
        dev_sh.set_var("COMPOSE_FILE", dev_compose_files(&p.stack, p.engine.caps.start_interval(), &self.services)?);
        stack::start_and_wait(&dev_sh, p.docker(), &p.stack, self.timeout, false).await?;
        let (tx, rx) = mpsc::channel();
        let stop_signals = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
        let mut session = Session {
            dev_sh,
            selected: self.services.clone(),
            snapshot: Snapshot::take(&p.stack),
            followers: BTreeMap::new(),
            tx,
            rx,
            pending: None,
            stop_signals,
        };
        session.follow(p).await?;
        let names = session.dev_services(&p.stack);
        println!("dev mode: {} (code mounted read-only, reloaded in place on each save)", names.join(", "));
        println!("watching the manifests, services/ and the shared packages; Ctrl-C to stop");
        Ok(session)
    }

    /// After Ctrl-C: the stack as `up` leaves it (images rebuilt with the
    /// edits, containers without the dev override), or stopped with `--down`.
    async fn finish(&self, p: &Prepared, session: &mut Session) -> Result<()> {
        for (_, (_, task)) in std::mem::take(&mut session.followers) {
            task.abort();
        }
        if self.down {
            println!("stopping the stack (`--down`; data volumes are kept)");
            cmd!(p.sh, "docker compose down").run()?;
            return Ok(());
        }
        println!("leaving dev mode: rebuilding what changed and starting the stack as `cargo xtask up` does");
        let results = images::build_all(p, &Select::default()).await?;
        if results.iter().any(|r| r.built) {
            images::print_table(&results);
        }
        stack::start_and_wait(&p.sh, p.docker(), &p.stack, self.timeout, false).await?;
        println!("the stack runs its images (no dev mounts); `cargo xtask down` stops it");
        Ok(())
    }
}

/// `COMPOSE_FILE` for dev mode: the committed override, or for a subset of
/// the services one written under target/ (paths in it are relative to the
/// project folder, the first file's).
fn dev_compose_files(stack: &Stack, start_interval: bool, selected: &[String]) -> Result<String> {
    if selected.is_empty() {
        return Ok(gen::compose_files(start_interval, Some(gen::DEV_COMPOSE_FILE)));
    }
    let path = stack.root.join(SUBSET_OVERRIDE);
    std::fs::create_dir_all(path.parent().expect("has a folder"))?;
    crate::util::write_atomic(&path, &gen::compose_dev(stack, selected))?;
    Ok(gen::compose_files(start_interval, Some(SUBSET_OVERRIDE)))
}

/// Ids of the running containers of a compose service.
async fn running(docker: &Docker, project: &str, service: &str) -> Result<Vec<String>> {
    let filters = std::collections::HashMap::from([(
        "label".to_owned(),
        vec![format!("com.docker.compose.project={project}"), format!("com.docker.compose.service={service}")],
    )]);
    let list = docker
        .list_containers(Some(ListContainersOptionsBuilder::default().filters(&filters).build()))
        .await
        .context("cannot list containers")?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// Reads a container's new log lines and passes on its `pysvc-dev:` reports.
fn follower(docker: Docker, container: String, tx: mpsc::Sender<Event>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let options = LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).tail("0").build();
        let mut logs = docker.logs(&container, Some(options));
        let mut pending = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            pending.push_str(&chunk.to_string());
            while let Some(end) = pending.find('\n') {
                if let Some(outcome) = devloop::outcome(&pending[..end]) {
                    let _ = tx.send(Event { container: container.clone(), outcome, at: SystemTime::now() });
                }
                pending.drain(..=end);
            }
        }
    })
}

fn seconds_since(written: SystemTime, at: SystemTime) -> f64 {
    at.duration_since(written).unwrap_or_default().as_secs_f64()
}

impl Session {
    /// The services this session runs in dev mode.
    fn dev_services(&self, stack: &Stack) -> Vec<String> {
        let all = stack.services.iter().map(|s| s.name.clone());
        all.filter(|n| self.selected.is_empty() || self.selected.contains(n)).collect()
    }

    /// Follows the logs of every running dev container (new ones after a recreate).
    async fn follow(&mut self, p: &Prepared) -> Result<()> {
        let mut alive = BTreeSet::new();
        for name in self.dev_services(&p.stack) {
            for id in running(p.docker(), &p.stack.manifest.project, &name).await? {
                alive.insert(id.clone());
                // New containers, and ones whose log stream ended (restarted).
                if self.followers.get(&id).is_none_or(|(_, task)| task.is_finished()) {
                    let task = follower(p.docker().clone(), id.clone(), self.tx.clone());
                    self.followers.insert(id, (name.clone(), task));
                }
            }
        }
        self.followers.retain(|id, (_, task)| alive.contains(id) || !task.is_finished());
        Ok(())
    }

    /// Polls the files until Ctrl-C; carries out each change.
    async fn watch(&mut self, p: &Prepared) -> Result<Next> {
        if let Some((plan, changes)) = self.pending.take() {
            self.rebuild(p, &plan, &changes).await?;
            self.reload(p, &plan, &changes).await?;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = self.stop_signals.0.recv() => return Ok(Next::Stop),
                _ = self.stop_signals.1.recv() => return Ok(Next::Stop),
            }
            if Snapshot::take(&p.stack) == self.snapshot {
                continue;
            }
            tokio::time::sleep(SETTLE).await;
            let newer = Snapshot::take(&p.stack);
            let changes = self.snapshot.changes(&newer);
            self.snapshot = newer;
            let paths: Vec<String> = changes.iter().map(|c| c.path.clone()).collect();
            let plan = devloop::classify(&p.stack, &paths);
            if plan.regenerate {
                match regenerate(p, &self.selected, &changes) {
                    Ok((stack, exports, affected)) => {
                        let mut plan = plan;
                        plan.rebuild.extend(affected);
                        let rebuilt = plan.rebuild.clone();
                        plan.reload.retain(|s| !rebuilt.contains(s));
                        return Ok(Next::Manifests(Box::new(stack), exports, plan, changes));
                    }
                    Err(e) => println!("{} → not applied: {e:#}", devloop::describe(&changes)),
                }
                continue;
            }
            if plan.reload.is_empty() && plan.rebuild.is_empty() {
                println!("{} → nothing to do (no service's code or dependencies)", devloop::describe(&changes));
            }
            self.rebuild(p, &plan, &changes).await?;
            self.reload(p, &plan, &changes).await?;
        }
    }
}

/// The manifests read again, the lock brought up to date with the
/// pyprojects (as `uv run` does), the generated files written from them;
/// with the services whose build inputs were among the files written.
fn regenerate(p: &Prepared, selected: &[String], changes: &[Change]) -> Result<(Stack, Exports, BTreeSet<String>)> {
    let stack = manifest::load(&p.stack.root)?;
    if stack.manifest.project != p.stack.manifest.project {
        bail!("the project name changed: stop `cargo xtask dev` (Ctrl-C) and start it again");
    }
    workspace::lock(&p.sh, &stack.root, false, &[])?;
    workspace::lock_own(&p.sh, &stack, false, &[])?;
    let exports = workspace::exports(&p.sh, &stack)?;
    let written = gen::ensure_files(&stack.root, &gen::render_all(&stack, &exports), Mode::Write)?;
    let affected = stack
        .services
        .iter()
        .filter(|s| {
            let inputs = s.context_paths(&stack.manifest);
            written.iter().any(|w| *w == s.dockerfile_path() || inputs.contains(w))
        })
        .map(|s| s.name.clone())
        .collect();
    dev_compose_files(&stack, false, selected)?; // rewrites the subset override; the list is not needed here
    let what = if written.is_empty() { "no generated file changed".to_owned() } else { written.join(", ") };
    println!("{} → regenerated: {what}", devloop::describe(changes));
    Ok((stack, exports, affected))
}

impl Session {
    /// Rebuilds and recreates the services of `plan.rebuild` (dev ones),
    /// and waits until each serves again; the others are not touched.
    async fn rebuild(&mut self, p: &Prepared, plan: &Plan, changes: &[Change]) -> Result<()> {
        let known: BTreeSet<String> = self.dev_services(&p.stack).into_iter().collect();
        let names: Vec<String> = plan.rebuild.iter().filter(|n| known.contains(*n)).cloned().collect();
        if names.is_empty() {
            return Ok(());
        }
        let what = devloop::describe(changes);
        let mut old = BTreeSet::new();
        for name in &names {
            old.extend(running(p.docker(), &p.stack.manifest.project, name).await?);
        }
        let select = Select { services: names.clone(), quiet: true, ..Select::default() };
        if let Err(e) = images::build_all(p, &select).await {
            println!("{what} → rebuild of {} failed; the running containers are kept:\n{e:#}", names.join(", "));
            return Ok(());
        }
        let (sh, args) = (&self.dev_sh, &names);
        if let Err(e) = cmd!(sh, "docker compose up --detach --no-deps --no-build --pull never {args...}").quiet().run()
        {
            println!("{what} → recreating {} failed: {e:#}", names.join(", "));
            return Ok(());
        }
        for name in &names {
            let line = match serving_again(p, name, &old).await {
                Ok(at) => format!(
                    "rebuilt and recreated, serving {:.2} s after the write",
                    seconds_since(devloop::written(changes), at)
                ),
                Err(e) => format!("rebuilt and recreated, but {e:#}"),
            };
            println!("{what} → {name}: {line}");
        }
        self.follow(p).await
    }

    /// Sends SIGHUP to every container of the services of `plan.reload`
    /// (dev ones) and reports what each did.
    async fn reload(&mut self, p: &Prepared, plan: &Plan, changes: &[Change]) -> Result<()> {
        let known: BTreeSet<String> = self.dev_services(&p.stack).into_iter().collect();
        let what = devloop::describe(changes);
        if !plan.reload.is_empty() {
            self.follow(p).await?;
        }
        while self.rx.try_recv().is_ok() {}
        let mut waiting: BTreeMap<String, String> = BTreeMap::new();
        for name in plan.reload.iter() {
            let Some(service) = p.stack.services.iter().find(|s| &s.name == name) else { continue };
            if !known.contains(name) {
                println!("{what} → {name}: not in dev mode, not reloaded");
            } else if gen::dev_command(&p.stack, service).is_none() {
                self.restart(p, name, changes).await?;
            } else {
                for id in running(p.docker(), &p.stack.manifest.project, name).await? {
                    let hup = KillContainerOptionsBuilder::default().signal("SIGHUP").build();
                    p.docker().kill_container(&id, Some(hup)).await.with_context(|| format!("cannot signal {name}"))?;
                    waiting.insert(id, name.clone());
                }
            }
        }
        let expected: BTreeSet<String> = waiting.values().cloned().collect();
        let reports = self.reports(waiting).await;
        for name in expected {
            println!(
                "{what} → {name}: {}",
                reload_line(&p.stack, &name, reports.get(&name), devloop::written(changes))
            );
        }
        Ok(())
    }

    /// The reports of the `waiting` containers (id -> service), by service.
    async fn reports(&mut self, mut waiting: BTreeMap<String, String>) -> BTreeMap<String, Vec<(Outcome, SystemTime)>> {
        let mut reports: BTreeMap<String, Vec<(Outcome, SystemTime)>> = BTreeMap::new();
        let deadline = Instant::now() + REPORT_TIMEOUT;
        while !waiting.is_empty() && Instant::now() < deadline {
            while let Ok(event) = self.rx.try_recv() {
                if let Some(name) = waiting.remove(&event.container) {
                    reports.entry(name).or_default().push((event.outcome, event.at));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        reports
    }

    /// A service without an in-place reload: its containers are restarted.
    async fn restart(&mut self, p: &Prepared, name: &str, changes: &[Change]) -> Result<()> {
        let old = BTreeSet::new();
        let sh = &self.dev_sh;
        cmd!(sh, "docker compose restart {name}").quiet().run()?;
        let line = match serving_again(p, name, &old).await {
            Ok(at) => format!(
                "restarted (no in-place reload), serving {:.2} s after the write",
                seconds_since(devloop::written(changes), at)
            ),
            Err(e) => format!("restarted, but {e:#}"),
        };
        println!("{} → {name}: {line}", devloop::describe(changes));
        self.follow(p).await
    }
}

/// One service's reload, as printed.
fn reload_line(stack: &Stack, name: &str, reports: Option<&Vec<(Outcome, SystemTime)>>, written: SystemTime) -> String {
    let reports = reports.map(Vec::as_slice).unwrap_or_default();
    if let Some((Outcome::Failed(what), _)) = reports.iter().find(|(o, _)| matches!(o, Outcome::Failed(_))) {
        return format!(
            "reload failed: {}; the previous code keeps serving (save a fix to retry)",
            devloop::host_paths(stack, name, what)
        );
    }
    match reports.iter().map(|(_, at)| *at).max() {
        Some(at) => {
            format!("reloaded in place, serving the new code {:.2} s after the write", seconds_since(written, at))
        }
        None => format!("no reload report within {} s (see `cargo xtask logs {name}`)", REPORT_TIMEOUT.as_secs()),
    }
}

/// Waits until `name` serves from containers other than `old`: an http
/// service answers its health path on its host port, a worker is healthy.
async fn serving_again(p: &Prepared, name: &str, old: &BTreeSet<String>) -> Result<SystemTime> {
    let service = p.stack.services.iter().find(|s| s.name == name).context("a known service")?;
    let port = service.manifest.host_port.map(|port| {
        p.env.get(&format!("{}_HOST_PORT", service.env_name())).and_then(|v| v.parse().ok()).unwrap_or(port)
    });
    let path = service.manifest.health.path.clone().unwrap_or_else(|| "/health".to_owned());
    let deadline = Instant::now() + SERVE_TIMEOUT;
    while Instant::now() < deadline {
        let ids = running(p.docker(), &p.stack.manifest.project, name).await?;
        let fresh = !ids.is_empty() && ids.iter().all(|id| !old.contains(id));
        let serves = match (service.manifest.kind, port) {
            (Kind::Http, Some(port)) if fresh => {
                let addr = format!("127.0.0.1:{port}");
                matches!(Conn::new(&addr).request("GET", &path, b"").await, Ok((200, _)))
            }
            _ if fresh => {
                stack::states(p.docker(), &p.stack.manifest.project).await?.get(name).is_some_and(|s| s.healthy())
            }
            _ => false,
        };
        if serves {
            return Ok(SystemTime::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{name} did not serve within {} s (see `cargo xtask logs {name}`)", SERVE_TIMEOUT.as_secs())
}
