//! `cargo xtask bench-dev`: the dev loop's targets, measured from outside on
//! its own scratch stack (`scratch::Scratch`) with the real `cargo xtask dev`
//! running: each time starts just before the file is written and ends when
//! the new behaviour is seen over HTTP (api-server: the title its docs page
//! shows; the worker: how many results a search sent after the edit gets; a
//! shared edit: a query only the new limit accepts, accepted by the API and
//! answered by the worker); a dependency added to api-server's lock until
//! its new container serves, with the worker's container checked untouched;
//! searches at a steady rate across code edits, none lost. Then, in the same
//! run and on the same stack, the rebuild path (`build-images` + recreate)
//! and `docker compose watch` sync+restart. Medians of `--edits` runs; the
//! section of BENCHMARKS.md is written from these figures.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::bench::http::Conn;
use crate::bench::stats::median;
use crate::engine;
use crate::images::{self, Select};
use crate::prepared::{Prepared, Repo};
use crate::scratch::Scratch;
use crate::util::write_atomic;
use crate::workspace;

const APP_PY: &str = "services/api-server/api_server/app.py";
const SEARCH_PY: &str = "services/search-worker/search_worker/search.py";
const MESSAGES_PY: &str = "services/shared/pysvc_common/messages.py";
/// A small pure-Python wheel, added to and removed from api-server in turn
/// (as `uv add --package api-server` leaves its pyproject and uv.lock).
const ADDED_DEPENDENCY: &str = "iniconfig==2.3.1";
/// A query two seed documents match.
const QUERY: &str = "builds";
const LIMIT: Duration = Duration::from_secs(120);
const SECTION_START: &str = "<!-- bench-dev: start (written by `cargo xtask bench-dev`, do not edit) -->";
const SECTION_END: &str = "<!-- bench-dev: end -->";

/// Measure the dev loop: edit -> serving through `cargo xtask dev`, against the rebuild path and `docker compose watch`.
#[derive(Args, Debug)]
pub struct BenchDev {
    /// Edits per figure (medians of these).
    #[arg(long, default_value_t = 5)]
    pub edits: usize,
    /// Code edits made while searches arrive at `--rate`.
    #[arg(long, default_value_t = 20)]
    pub load_edits: usize,
    /// Searches per second during the load run.
    #[arg(long, default_value_t = 20)]
    pub rate: u32,
    /// Print only; do not write BENCHMARKS.md.
    #[arg(long)]
    pub no_write: bool,
}

/// Seconds of each run of one figure.
#[derive(Debug, Default, Clone)]
struct Figure(Vec<f64>);

impl Figure {
    fn median(&self) -> f64 {
        median(&self.0)
    }
    fn cell(&self) -> String {
        let min = self.0.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().cloned().fold(0.0, f64::max);
        format!("{:.2} s ({:.2}–{:.2}, n={})", self.median(), min, max, self.0.len())
    }
}

#[derive(Debug, Default)]
struct Results {
    api: Figure,
    worker: Figure,
    shared: Figure,
    lock: Figure,
    /// The worker's container kept through the lock runs.
    worker_untouched: bool,
    load: Load,
    rebuild: Figure,
    /// `docker compose watch` sync+restart, or why it cannot run here.
    watch: Option<std::result::Result<Figure, String>>,
}

#[derive(Debug, Default)]
struct Load {
    edits: usize,
    accepted: usize,
    failed: usize,
    lost: usize,
}

impl BenchDev {
    pub fn run(self, repo: &Repo) -> Result<()> {
        ensure!(self.edits >= 1, "--edits must be at least 1");
        let scratch = Scratch::create(&repo.root, "bench-dev", &std::env::current_exe()?)?;
        eprintln!("bench-dev: scratch stack {} in {}", scratch.project, scratch.dir.display());
        let api = format!("127.0.0.1:{}", scratch.ports["api-server"]);
        let rt = engine::runtime()?;
        let docker = rt.block_on(engine::connect())?;
        rt.block_on(engine::warn_if_busy(&docker, Some(&scratch.project)));
        let mut r = Results::default();
        let mut dev = DevProcess::spawn(&scratch)?;
        dev.expect("watching", Duration::from_secs(900))?;
        rt.block_on(self.through_dev(&scratch, &api, &mut r))?;
        dev.stop()?;
        drop(docker);
        let p = Repo::new(scratch.dir.clone())?.prepare()?;
        r.rebuild = p.block_on(rebuild_path(&p, &api, self.edits))?;
        r.watch = Some(p.block_on(compose_watch(&p, &api, self.edits.min(3))).map_err(|e| format!("{e:#}")));
        let section = markdown(&r, &self);
        println!("\n{section}");
        if !self.no_write {
            let out = repo.root.join("BENCHMARKS.md");
            let existing = std::fs::read_to_string(&out).unwrap_or_default();
            write_atomic(&out, &replace_section(&existing, &section))?;
            eprintln!("wrote the dev-loop section of {}", out.display());
        }
        Ok(())
    }

    async fn through_dev(&self, scratch: &Scratch, api: &str, r: &mut Results) -> Result<()> {
        let dir = &scratch.dir;
        for i in 1..=self.edits {
            let started = Instant::now();
            set_between(dir, APP_PY, "title=\"", "\"", &format!("bench-{i}"))?;
            r.api.0.push(until(started, || title_is(api, format!("bench-{i}"))).await?);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!("api-server code edit -> new code answers: {}", r.api.cell());
        for i in 1..=self.edits {
            let results = 1 + i % 2;
            let started = Instant::now();
            set_line(dir, SEARCH_PY, "MAX_RESULTS = ", &format!("MAX_RESULTS = {results}"))?;
            r.worker.0.push(first_answer(api, QUERY, started, |n| n == results).await?);
        }
        eprintln!("search-worker code edit -> a search sent after it answered by the new code: {}", r.worker.cell());
        r.shared = shared_edits(dir, api, self.edits).await?;
        eprintln!("shared package edit -> both services serve it: {}", r.shared.cell());
        self.lock_runs(scratch, api, r).await?;
        r.load = self.load_run(dir, api).await?;
        Ok(())
    }

    /// A dependency added to (then removed from) api-server, until its new
    /// container serves; the worker's container must stay as it was. The
    /// added state is `uv add`'s own output, made untimed in a copy of the
    /// workspace files; each run writes the pyproject and uv.lock as `uv add`
    /// (or undoing it) leaves them, and is timed from that write.
    async fn lock_runs(&self, scratch: &Scratch, api: &str, r: &mut Results) -> Result<()> {
        let (original, added) = dependency_states(&scratch.dir)?;
        let worker_before = container_started(scratch, "search-worker");
        for i in 1..=self.edits {
            let before = container_started(scratch, "api-server");
            let files = if i % 2 == 1 { &added } else { &original };
            let started = Instant::now();
            write_all(&scratch.dir, files)?;
            let fresh = || {
                let now = container_started(scratch, "api-server");
                let before = before.clone();
                async move {
                    (now != before && !now.is_empty() && http_status(api, "/ready").await == Some(200)).then_some(())
                }
            };
            r.lock.0.push(until(started, fresh).await?);
        }
        write_all(&scratch.dir, &original)?;
        r.worker_untouched = container_started(scratch, "search-worker") == worker_before;
        eprintln!(
            "dependency added -> api-server rebuilt and serving: {} (worker untouched: {})",
            r.lock.cell(),
            r.worker_untouched
        );
        // The last write restored the files: let that rebuild settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let settled = || async { (http_status(api, "/ready").await == Some(200)).then_some(()) };
        until(Instant::now(), settled).await?;
        Ok(())
    }
}

/// The workspace files `uv add` changes, as (path, text): as they are in
/// `dir`, and after `uv add --package api-server` of [`ADDED_DEPENDENCY`]
/// (run in a copy, so the running dev loop sees nothing of it).
type Files = Vec<(String, String)>;

fn dependency_states(dir: &Path) -> Result<(Files, Files)> {
    let paths = ["services/api-server/pyproject.toml".to_owned(), workspace::LOCK_FILE.to_owned()];
    let read = |root: &Path| -> Result<Files> {
        paths.iter().map(|p| Ok((p.clone(), std::fs::read_to_string(root.join(p))?))).collect()
    };
    let copy = dir.with_extension("uv-add");
    workspace::copy_project_files(dir, &copy)?;
    let sh = Shell::new()?;
    let added = workspace::add(&sh, &copy, "api-server", ADDED_DEPENDENCY).and_then(|()| read(&copy));
    let _ = std::fs::remove_dir_all(&copy);
    Ok((read(dir)?, added.context("cannot add the benchmark's dependency in a copy of the workspace")?))
}

fn write_all(dir: &Path, files: &Files) -> Result<()> {
    for (path, text) in files {
        std::fs::write(dir.join(path), text).with_context(|| format!("cannot write {path}"))?;
    }
    Ok(())
}

/// `cargo xtask dev` on the scratch stack, its stdout read line by line.
struct DevProcess {
    child: Child,
    lines: Receiver<String>,
}

impl DevProcess {
    fn spawn(scratch: &Scratch) -> Result<DevProcess> {
        let mut child = scratch.command(&["dev"]).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("  dev | {line}");
                let _ = tx.send(line);
            }
        });
        Ok(DevProcess { child, lines })
    }

    fn expect(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        bail!("`cargo xtask dev` printed no {needle:?} within {timeout:?}")
    }

    /// Ctrl-C: the stack is left as `up` leaves it.
    fn stop(mut self) -> Result<()> {
        let status = std::process::Command::new("kill").args(["-INT", &self.child.id().to_string()]).status()?;
        ensure!(status.success(), "cannot interrupt `cargo xtask dev`");
        let status = self.child.wait()?;
        ensure!(status.success(), "`cargo xtask dev` exited with {status} after Ctrl-C");
        Ok(())
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `container id@start time` of a service of the scratch stack ("" when none).
fn container_started(scratch: &Scratch, service: &str) -> String {
    let label = |k: &str, v: &str| format!("label=com.docker.compose.{k}={v}");
    let ids = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &label("project", &scratch.project), "--filter", &label("service", service)])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if ids.is_empty() {
        return String::new();
    }
    let started = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.StartedAt}}", &ids])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{ids}@{started}")
}

/// Seconds from `started` until `probe` gives `Some` (polled every 10 ms, at most [`LIMIT`]).
async fn until<F, Fut>(started: Instant, mut probe: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    while started.elapsed() < LIMIT {
        if probe().await.is_some() {
            return Ok(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the change was not seen within {} s", LIMIT.as_secs())
}

async fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, serde_json::Value)> {
    let (status, body) = Conn::new(addr).request(method, path, body).await.ok()?;
    Some((status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
}

async fn http_status(addr: &str, path: &str) -> Option<u16> {
    Conn::new(addr).request("GET", path, b"").await.ok().map(|(s, _)| s)
}

/// The API's title as its docs page shows it (cheap: no OpenAPI schema is built).
async fn title_is(addr: &str, wanted: String) -> Option<()> {
    let (status, page) = Conn::new(addr).request("GET", "/docs", b"").await.ok()?;
    (status == 200 && String::from_utf8_lossy(&page).contains(&format!("<title>{wanted} - "))).then_some(())
}

/// The shared query-length limit (`MAX_QUERY_LEN`, which the API validates
/// and the worker checks again) raised step by step from a lowered start: a
/// query at the new limit is refused by the old API and skipped by the old
/// worker, so its answer shows both serve the edit. PostgreSQL allows 200.
async fn shared_edits(dir: &Path, api: &str, edits: usize) -> Result<Figure> {
    let (low, step) = (100, 100 / edits.max(1));
    set_line(dir, MESSAGES_PY, "MAX_QUERY_LEN = ", &format!("MAX_QUERY_LEN = {low}"))?;
    let refused = |len: usize| {
        let query = padded(len);
        async move { matches!(post_search(api, &query).await, Some((422, _))).then_some(()) }
    };
    until(Instant::now(), || refused(low + 1)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await; // the worker too (untimed)
    let mut figure = Figure::default();
    for i in 1..=edits {
        let limit = low + i * step;
        let started = Instant::now();
        set_line(dir, MESSAGES_PY, "MAX_QUERY_LEN = ", &format!("MAX_QUERY_LEN = {limit}"))?;
        figure.0.push(first_answer(api, &padded(limit), started, |_| true).await?);
    }
    set_line(dir, MESSAGES_PY, "MAX_QUERY_LEN = ", "MAX_QUERY_LEN = 200")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(figure)
}

/// A query of exactly `len` characters that matches the seed documents.
fn padded(len: usize) -> String {
    format!("{QUERY}{}", " ".repeat(len.saturating_sub(QUERY.len())))
}

async fn post_search(addr: &str, query: &str) -> Option<(u16, String)> {
    let body = serde_json::json!({ "query": query }).to_string();
    let (status, doc) = request(addr, "POST", "/searches", body.as_bytes()).await?;
    Some((status, doc["id"].as_str().unwrap_or_default().to_owned()))
}

/// Seconds from `started` until a search sent after it (one every 100 ms)
/// is answered with a result count `wanted` accepts.
async fn first_answer(addr: &str, query: &str, started: Instant, wanted: impl Fn(usize) -> bool) -> Result<f64> {
    let mut pending: Vec<String> = Vec::new();
    let mut next_post = Instant::now();
    while started.elapsed() < LIMIT {
        if Instant::now() >= next_post {
            next_post += Duration::from_millis(100);
            if let Some((202, id)) = post_search(addr, query).await {
                pending.push(id);
            }
        }
        for id in pending.clone() {
            let Some((200, doc)) = request(addr, "GET", &format!("/searches/{id}"), b"").await else { continue };
            if doc["status"] == "done" {
                pending.retain(|p| *p != id);
                if wanted(doc["results"].as_array().map_or(0, Vec::len)) {
                    return Ok(started.elapsed().as_secs_f64());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("no search sent after the edit was answered by the new code within {} s", LIMIT.as_secs())
}

/// Replaces the text between the first `start` and the next `end` in a file.
fn set_between(dir: &Path, rel: &str, start: &str, end: &str, value: &str) -> Result<()> {
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path)?;
    let a = text.find(start).with_context(|| format!("{rel} has no {start:?}"))? + start.len();
    let b = a + text[a..].find(end).with_context(|| format!("{rel}: no {end:?} after {start:?}"))?;
    std::fs::write(&path, format!("{}{value}{}", &text[..a], &text[b..]))?;
    Ok(())
}

/// Replaces the first line starting with `prefix` in a file.
fn set_line(dir: &Path, rel: &str, prefix: &str, line: &str) -> Result<()> {
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path)?;
    ensure!(text.lines().any(|l| l.starts_with(prefix)), "{rel} has no line starting with {prefix:?}");
    let mut done = false;
    let out: Vec<&str> = text
        .lines()
        .map(|l| {
            if !done && l.starts_with(prefix) {
                done = true;
                line
            } else {
                l
            }
        })
        .collect();
    std::fs::write(&path, out.join("\n") + "\n")?;
    Ok(())
}

impl BenchDev {
    /// Searches at `--rate` per second while `--load-edits` code edits
    /// (api-server and worker in turn, one a second) are applied; then every
    /// accepted search must be answered.
    async fn load_run(&self, dir: &Path, api: &str) -> Result<Load> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load = tokio::spawn(send_searches(api.to_owned(), self.rate, stop.clone()));
        for i in 0..self.load_edits {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if i % 2 == 0 {
                set_between(dir, APP_PY, "version=\"", "\"", &format!("load-{i}"))?;
            } else {
                set_line(dir, SEARCH_PY, "MAX_RESULTS = ", &format!("MAX_RESULTS = {}", 1 + i % 3))?;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (ids, failed) = load.await.context("the load task failed")?;
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut waiting = ids.clone();
        while !waiting.is_empty() && Instant::now() < deadline {
            let mut still = Vec::new();
            for id in waiting {
                match request(api, "GET", &format!("/searches/{id}"), b"").await {
                    Some((200, doc)) if doc["status"] == "done" => {}
                    _ => still.push(id),
                }
            }
            waiting = still;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let load = Load { edits: self.load_edits, accepted: ids.len(), failed, lost: waiting.len() };
        eprintln!(
            "load: {} accepted, {} failed requests, {} lost across {} edits",
            load.accepted, load.failed, load.lost, load.edits
        );
        Ok(load)
    }
}

/// One search every 1/rate s on a fresh connection each, until `stop`:
/// the accepted ids and the number of requests that got no 202.
async fn send_searches(
    api: String,
    rate: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<String>, usize) {
    let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut tick = tokio::time::interval(every);
    let (mut ids, mut failed) = (Vec::new(), 0);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        tick.tick().await;
        match post_search(&api, "cache").await {
            Some((202, id)) => ids.push(id),
            _ => failed += 1,
        }
    }
    (ids, failed)
}

/// The rebuild path on the same stack (not in dev mode): a code edit,
/// `build-images` for api-server, its container recreated, until the new
/// code answers (what bench-build's `--edit-to-serving` measures).
async fn rebuild_path(p: &Prepared, api: &str, edits: usize) -> Result<Figure> {
    let only = Select { services: vec!["api-server".to_owned()], quiet: true, ..Select::default() };
    let mut figure = Figure::default();
    for i in 1..=edits {
        let started = Instant::now();
        set_between(&p.stack.root, APP_PY, "title=\"", "\"", &format!("rebuild-{i}"))?;
        images::build_all(p, &only).await?;
        cmd!(p.sh, "docker compose up --detach --no-build --pull never --no-deps api-server")
            .quiet()
            .ignore_stderr()
            .run()?;
        figure.0.push(until(started, || title_is(api, format!("rebuild-{i}"))).await?);
    }
    eprintln!("rebuild path (build-images + recreate): {}", figure.cell());
    Ok(figure)
}

/// `docker compose watch` with a sync+restart rule for api-server's code, as
/// Compose's own docs set it up; the error it gives when it cannot work here.
async fn compose_watch(p: &Prepared, api: &str, edits: usize) -> Result<Figure> {
    let root = &p.stack.root;
    let rule = "services:\n  api-server:\n    develop:\n      watch:\n        - action: sync+restart\n          path: ./services/api-server/api_server\n          target: /app/api_server\n";
    let file = root.join("target/bench-dev-watch.yaml");
    std::fs::create_dir_all(file.parent().expect("a folder"))?;
    std::fs::write(&file, rule)?;
    let log = root.join("target/bench-dev-watch.log");
    let mut watch = std::process::Command::new("docker")
        .args(["compose", "-f", "compose.yaml", "-f"])
        .arg(&file)
        .args(["watch", "--no-up", "api-server"])
        .current_dir(root)
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(root.join("target/bench-dev-watch.err"))?)
        .spawn()
        .context("cannot run `docker compose watch`")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut figure = Figure::default();
    let mut outcome = Ok(());
    for i in 1..=edits {
        let started = Instant::now();
        set_between(root, APP_PY, "title=\"", "\"", &format!("watch-{i}"))?;
        let seen =
            tokio::time::timeout(Duration::from_secs(30), until(started, || title_is(api, format!("watch-{i}")))).await;
        match seen {
            Ok(Ok(seconds)) => figure.0.push(seconds),
            _ => {
                outcome = Err(watch_failure(root, watch.try_wait().ok().flatten()));
                break;
            }
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    outcome?;
    eprintln!("docker compose watch sync+restart: {}", figure.cell());
    Ok(figure)
}

/// Why `docker compose watch` did not serve the edit: its own last words.
fn watch_failure(root: &Path, exit: Option<std::process::ExitStatus>) -> anyhow::Error {
    let said = |f: &str| std::fs::read_to_string(root.join(f)).unwrap_or_default();
    let text = format!("{}{}", said("target/bench-dev-watch.err"), said("target/bench-dev-watch.log"));
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(4)..].join(" | ");
    let exit = exit.map(|s| format!(" (it exited: {s})")).unwrap_or_default();
    anyhow::anyhow!("the edit was not served within 30 s{exit}; compose said: {tail}")
}

fn markdown(r: &Results, cmd: &BenchDev) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "## Dev loop: edit -> serving (`cargo xtask bench-dev --edits {}`)\n", cmd.edits);
    let _ = writeln!(
        m,
        "Each time runs from just before the file is written until the new behaviour is seen over HTTP, \
         with `cargo xtask dev` running on the bench's own scratch stack; medians of {} edits (min–max). \
         The rebuild path and `docker compose watch` ran in the same run, on the same stack.\n",
        cmd.edits
    );
    if let Some(load) =
        std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().map(str::to_owned))
    {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let _ = writeln!(m, "Load average when the section was written: {load} on {cores} cores.\n");
    }
    let _ = writeln!(m, "| change | through `cargo xtask dev` | target | met |\n|---|---|---|---|");
    let rows = [
        ("api-server code edit -> the new code answers", &r.api, 0.5),
        ("search-worker code edit -> a search sent after it is answered by the new code", &r.worker, 2.0),
        ("shared package edit -> both services serve it", &r.shared, 2.0),
        ("dependency added to api-server (uv add) -> rebuilt and serving", &r.lock, 5.0),
    ];
    for (what, figure, goal) in rows {
        let met = if figure.median() <= goal { "yes" } else { "no" };
        let _ = writeln!(m, "| {what} | {} | ≤ {goal} s | {met} |", figure.cell());
    }
    let untouched = if r.worker_untouched { "yes" } else { "no" };
    let _ = writeln!(m, "\nsearch-worker's container untouched through the lock changes: {untouched}.");
    let l = &r.load;
    let _ = writeln!(
        m,
        "Searches lost across {} code edits (api-server and worker in turn) at {}/s: **{}** of {} accepted \
         ({} requests not accepted; target: 0 lost).\n",
        l.edits, cmd.rate, l.lost, l.accepted, l.failed
    );
    let _ = writeln!(m, "| api-server code edit, other ways | edit -> new code answers |\n|---|---|");
    let _ = writeln!(m, "| rebuild path: `build-images` + recreate | {} |", r.rebuild.cell());
    let watch = match &r.watch {
        Some(Ok(f)) => f.cell(),
        Some(Err(why)) => format!("did not work here: {}", why.replace('|', "/")),
        None => "not run".to_owned(),
    };
    let _ = writeln!(m, "| `docker compose watch`, sync+restart | {watch} |");
    format!("{SECTION_START}\n{m}{SECTION_END}\n")
}

/// `existing` with the dev-loop section replaced (or appended).
fn replace_section(existing: &str, section: &str) -> String {
    if let (Some(a), Some(b)) = (existing.find(SECTION_START), existing.find(SECTION_END)) {
        let end = b + SECTION_END.len();
        let rest = existing[end..].strip_prefix('\n').unwrap_or(&existing[end..]);
        return format!("{}{section}{rest}", &existing[..a]);
    }
    format!("{}\n\n{section}", existing.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dev_section_is_replaced() {
        let old = format!("# B\n\nkept\n\n{SECTION_START}\nold\n{SECTION_END}\nafter\n");
        let new = replace_section(&old, &format!("{SECTION_START}\nnew\n{SECTION_END}\n"));
        assert_eq!(new, format!("# B\n\nkept\n\n{SECTION_START}\nnew\n{SECTION_END}\nafter\n"));
        assert!(replace_section("# B\n", "S\n").ends_with("# B\n\nS\n"));
    }

    #[test]
    fn edits_replace_one_value() {
        let dir = std::env::temp_dir().join(format!("bench-dev-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.py"), "X = 1\napp = FastAPI(title=\"t\", version=\"1\", y=2)\n").unwrap();
        set_between(&dir, "a.py", "version=\"", "\"", "bench-3").unwrap();
        set_line(&dir, "a.py", "X = ", "X = 7").unwrap();
        let text = std::fs::read_to_string(dir.join("a.py")).unwrap();
        assert_eq!(text, "X = 7\napp = FastAPI(title=\"t\", version=\"bench-3\", y=2)\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
