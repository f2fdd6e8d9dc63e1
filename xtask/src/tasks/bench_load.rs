//! `cargo xtask bench-load`: drives a running stack with an asynchronous
//! load generator (a small HTTP/1.1 keep-alive client on tokio), measures
//! the GET /health ceiling with the same generator in the same run, and
//! reports accepted searches per second, latency, how long the workers need
//! to answer everything, what was rejected and what was lost. `--fault`
//! restarts the broker or PostgreSQL, or kills a worker, half-way through.
//!
//! By default it starts its own isolated stack (a `scratch::Scratch`: a copy
//! of the repository's inputs with its own compose project, image prefix and
//! host ports) and removes it afterwards; `--target` drives
//! a stack that is already running (faults and the database check then act
//! on the compose project of the repository root, or of `PYSVC_ROOT`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use futures_util::future::join_all;
use serde::Serialize;

mod group;
mod silence;

use crate::bench::http::Conn;
use crate::bench::stats::{median, percentile};
use crate::prepared::Repo;
use crate::scratch::Scratch;
use crate::{engine, manifest};

/// Names bench-load's own stack (`pysvct-loadbench-<pid>-<n>`).
const SCRATCH_NAME: &str = "loadbench";
/// Queries that find documents in the seed data, used in turn.
const QUERIES: [&str; 6] = ["kafka", "healthcheck", "graceful shutdown", "proxy", "cache", "postgres"];
/// The stack's services that run all the time (the topics step exits).
const LONG_RUNNING: [&str; 4] = ["postgres", "kafka", "api-server", "search-worker"];
/// Synthetic documents for the worker backlog, by default.
const DOCUMENTS: usize = 20_000;

/// Load the stack: accepted searches/s vs the GET /health ceiling, latency, drain time, rejected, lost.
#[derive(Args, Debug)]
pub struct BenchLoad {
    /// Base URL of a running stack (`http://127.0.0.1:8000`); default: an isolated stack of its own.
    #[arg(long)]
    pub target: Option<String>,
    /// Searches posted per concurrency level.
    #[arg(long, default_value_t = 1500)]
    pub requests: usize,
    /// Concurrency levels (comma-separated); default 8,32,64, or 32 with --fault.
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// Runs per level (the POST run follows its own GET /health run each time); medians are reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Worker counts compared on a queued backlog (comma-separated); skipped with --fault.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 3])]
    pub workers: Vec<usize>,
    /// Synthetic documents added to the isolated stack's database before the
    /// worker backlog, so that a search costs real work (the seed data has
    /// ten documents, which one worker searches faster than the API accepts);
    /// 0 adds none. Not allowed with --target: it never writes to your data.
    #[arg(long)]
    pub documents: Option<usize>,
    /// Inject a fault when half the searches of a level have been sent.
    #[arg(long, value_enum)]
    pub fault: Option<Fault>,
    /// Rounds of the worker-group changes (restart, stop/start, 3 stopped
    /// and started, scale 1->3->1); 0 skips them; skipped with --fault.
    #[arg(long, default_value_t = 3)]
    pub group_runs: usize,
    /// Seconds to wait for every accepted search to be answered.
    #[arg(long, default_value_t = 180)]
    pub answer_timeout: u64,
    /// Leave the isolated stack running afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    BrokerRestart,
    WorkerKill,
    PostgresRestart,
    /// The broker restarted and, while it starts, the worker recreated (a
    /// user's `docker restart kafka` then `compose up --force-recreate`).
    BrokerThenWorkerRestart,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::BrokerRestart => "broker-restart",
            Fault::WorkerKill => "worker-kill",
            Fault::PostgresRestart => "postgres-restart",
            Fault::BrokerThenWorkerRestart => "broker-then-worker-restart",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Level {
    pub concurrency: usize,
    /// Runs of this level; rates, ratio, latencies and drain are their medians.
    pub repeats: usize,
    pub health_per_second: f64,
    pub accepted_per_second: f64,
    pub ratio: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub sent: usize,
    pub accepted: usize,
    /// Answered with another status than 202, by status.
    pub rejected: BTreeMap<u16, usize>,
    /// No answer at all (connection error or timeout).
    pub failed: usize,
    /// From the last accepted search to the last answer (server clock).
    pub drain_seconds: Option<f64>,
    /// Accepted searches that were never answered within --answer-timeout.
    pub lost: usize,
    /// Rows stored beyond the accepted ones: a rejected request half-stored
    /// (None when the database cannot be reached).
    pub stored_but_rejected: Option<i64>,
    /// Searches the api-server's safety net (its republish loop) sent to the
    /// broker again during the level, from its log (None when unreadable):
    /// with a durable broker log, a broker restart should need none.
    pub republished: Option<usize>,
    /// Of those, the ones the broker had acknowledged (in its log): the
    /// queue republished from PostgreSQL. 0 unless the broker lost its log.
    pub republished_acknowledged: Option<usize>,
    pub fault: Option<Fault>,
    /// With a fault: the longest stretch in which every service reported
    /// healthy, searches waited and none was answered (seconds).
    pub healthy_silence_seconds: Option<f64>,
    /// Whether the fault command succeeded (None without a fault).
    pub fault_injected: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct Backlog {
    pub workers: usize,
    /// Backlogs answered (`--repeats`); times are their medians, counts sums.
    pub runs: usize,
    pub searches: usize,
    /// From starting the workers until each holds its share of the
    /// partitions and the group stays put (joining the consumer group).
    pub join_seconds: f64,
    /// From resuming the workers to the last answer stored (`completed_at`:
    /// the database's clock, which a local engine shares with this one).
    pub drain_seconds: f64,
    pub lost: usize,
    /// Searches whose answer was stored before the workers were resumed:
    /// 0 unless the pause did not hold them (then the time means little).
    pub answered_before_resume: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub cores: usize,
    pub engine: String,
    pub requests: usize,
    pub levels: Vec<Level>,
    /// Synthetic documents added before the backlog (0: the seed data only).
    pub documents: usize,
    pub backlog: Vec<Backlog>,
    /// The worker-group changes (None when skipped).
    pub group: Option<group::Group>,
}

impl BenchLoad {
    pub fn run(self, repo: &Repo) -> Result<()> {
        anyhow::ensure!(
            self.target.is_none() || self.documents.is_none(),
            "--documents writes to the database, so it only works on bench-load's own isolated stack: \
             leave out --target (or --documents)"
        );
        let documents = if self.target.is_some() { 0 } else { self.documents.unwrap_or(DOCUMENTS) };
        let isolated = self.isolated_stack(repo)?;
        let compose_dir = isolated.as_ref().map(|s| s.dir.clone()).unwrap_or_else(|| repo.root.clone());
        let addr = match &self.target {
            Some(url) => url.trim_start_matches("http://").trim_end_matches('/').to_owned(),
            None => isolated.as_ref().map(|s| format!("127.0.0.1:{}", s.ports["api-server"])).unwrap_or_default(),
        };
        let levels = match (&self.concurrency[..], self.fault) {
            ([], None) => vec![8, 32, 64],
            ([], Some(_)) => vec![32],
            (given, _) => given.to_vec(),
        };
        let stack = Stack { compose_dir, addr: addr.clone() };
        let mut report = Report {
            target: if isolated.is_some() { format!("an isolated stack ({addr})") } else { addr.clone() },
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            engine: stack.engine_version(),
            requests: self.requests,
            levels: Vec::new(),
            documents: 0,
            backlog: Vec::new(),
            group: None,
        };
        engine::runtime()?.block_on(async {
            for &c in &levels {
                let level = self.level(&stack, c).await?;
                if !self.json {
                    eprintln!("{}", level_line(&level));
                }
                report.levels.push(level);
            }
            if self.fault.is_none() && !self.workers.is_empty() {
                if documents > 0 {
                    stack.add_documents(documents)?;
                    report.documents = documents;
                }
                report.backlog = self.backlogs(&stack).await?;
            }
            if self.fault.is_none() && self.group_runs > 0 {
                let partitions = manifest::load_stack_manifest(&stack.compose_dir)?.kafka.partitions as usize;
                report.group = Some(group::measure(&stack, self.group_runs, partitions).await?);
            }
            anyhow::Ok(())
        })?;
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", render(&report));
        }
        drop(isolated);
        Ok(())
    }

    /// Without `--target`: bench-load's own scratch stack, up.
    fn isolated_stack(&self, repo: &Repo) -> Result<Option<Scratch>> {
        if self.target.is_some() {
            return Ok(None);
        }
        if let Ok(engine) = repo.connect() {
            engine.rt.block_on(engine::warn_if_busy(&engine.docker, None));
        }
        let mut scratch = Scratch::create(&repo.root, SCRATCH_NAME, &std::env::current_exe()?)?;
        if self.keep {
            scratch.keep();
        }
        eprintln!("starting the isolated stack {} in {}", scratch.project, scratch.dir.display());
        scratch.xtask(&["up"])?;
        Ok(Some(scratch))
    }

    /// The worker backlog for every `--workers` count, `--repeats` times
    /// each (medians of the times, sums of the counts); one worker after.
    async fn backlogs(&self, stack: &Stack) -> Result<Vec<Backlog>> {
        let partitions = manifest::load_stack_manifest(&stack.compose_dir)?.kafka.partitions as usize;
        // The workers keep running from one count to the next: the group
        // only rebalances, which settles within seconds, where a group whose
        // members all stop and start again waits out the rebalance timeout
        // on the broker here.
        let mut counts = self.workers.clone();
        counts.sort_unstable();
        counts.dedup();
        let mut out = Vec::new();
        for n in counts {
            let mut runs = Vec::new();
            for _ in 0..self.repeats.max(1) {
                let b = self.backlog(stack, n, partitions).await?;
                if !self.json {
                    eprintln!(
                        "backlog: {n} worker(s) joined in {:.1}s, answered {} in {:.2}s ({} before the resume)",
                        b.join_seconds, b.searches, b.drain_seconds, b.answered_before_resume
                    );
                }
                runs.push(b);
            }
            let median = |f: fn(&Backlog) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
            out.push(Backlog {
                workers: n,
                runs: runs.len(),
                searches: runs.iter().map(|b| b.searches).sum(),
                join_seconds: median(|b| b.join_seconds),
                drain_seconds: median(|b| b.drain_seconds),
                lost: runs.iter().map(|b| b.lost).sum(),
                answered_before_resume: runs.iter().map(|b| b.answered_before_resume).sum(),
            });
        }
        // Back to one worker, as the stack was.
        stack.scale_workers(1)?;
        Ok(out)
    }

    /// `repeats` runs of the level (one with a fault): medians of the rates,
    /// ratios, latencies and drain times; sums of the counts.
    async fn level(&self, stack: &Stack, concurrency: usize) -> Result<Level> {
        let repeats = if self.fault.is_some() { 1 } else { self.repeats.max(1) };
        let mut runs = Vec::new();
        for _ in 0..repeats {
            runs.push(self.once(stack, concurrency).await?);
        }
        let median = |f: &dyn Fn(&Level) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let mut rejected = BTreeMap::new();
        for (status, n) in runs.iter().flat_map(|r| r.rejected.iter()) {
            *rejected.entry(*status).or_default() += n;
        }
        let drains: Vec<f64> = runs.iter().filter_map(|r| r.drain_seconds).collect();
        Ok(Level {
            concurrency,
            repeats,
            health_per_second: median(&|r| r.health_per_second),
            accepted_per_second: median(&|r| r.accepted_per_second),
            ratio: median(&|r| r.ratio),
            p50_ms: median(&|r| r.p50_ms),
            p99_ms: median(&|r| r.p99_ms),
            sent: runs.iter().map(|r| r.sent).sum(),
            accepted: runs.iter().map(|r| r.accepted).sum(),
            rejected,
            failed: runs.iter().map(|r| r.failed).sum(),
            drain_seconds: (drains.len() == runs.len()).then(|| median(&|r| r.drain_seconds.unwrap_or_default())),
            lost: runs.iter().map(|r| r.lost).sum(),
            stored_but_rejected: runs.iter().map(|r| r.stored_but_rejected).sum(),
            republished: runs.iter().map(|r| r.republished).sum(),
            republished_acknowledged: runs.iter().map(|r| r.republished_acknowledged).sum(),
            fault: self.fault,
            healthy_silence_seconds: runs.iter().filter_map(|r| r.healthy_silence_seconds).reduce(f64::max),
            fault_injected: runs[0].fault_injected,
        })
    }

    async fn once(&self, stack: &Stack, concurrency: usize) -> Result<Level> {
        let health = load(&stack.addr, Kind::Health, self.requests, concurrency, None).await;
        let before = stack.stored();
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
        let fault = self.fault.map(|f| (f, stack.clone()));
        // Watched only with a fault: the sampler's commands cost the stack
        // some CPU, which the fault-free levels' rates must not pay.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = self.fault.map(|_| tokio::spawn(silence::sample_until(stack.clone(), stop.clone())));
        let post = load(&stack.addr, Kind::Search, self.requests, concurrency, fault).await;
        let answers = answers(&stack.addr, &post.ids, Duration::from_secs(self.answer_timeout)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let samples = match sampler {
            Some(task) => Some(task.await.unwrap_or_default()),
            None => None,
        };
        let after = stack.stored();
        let republished = stack.republished_since(since);
        let wall = |r: &LoadRun| r.finished.duration_since(r.started).as_secs_f64().max(1e-9);
        let health_per_second = health.ok as f64 / wall(&health);
        let accepted_per_second = post.ids.len() as f64 / wall(&post);
        let mut latencies = post.latencies.clone();
        latencies.sort_by(f64::total_cmp);
        Ok(Level {
            concurrency,
            repeats: 1,
            health_per_second,
            accepted_per_second,
            ratio: accepted_per_second / health_per_second.max(1e-9),
            p50_ms: percentile(&latencies, 0.50) * 1000.0,
            p99_ms: percentile(&latencies, 0.99) * 1000.0,
            sent: self.requests,
            accepted: post.ids.len(),
            rejected: post.statuses.into_iter().filter(|(s, _)| *s != 202).collect(),
            failed: post.failed,
            drain_seconds: answers.last_completed().zip(answers.last_created).map(|(done, created)| done - created),
            lost: answers.pending,
            stored_but_rejected: before.zip(after).map(|(b, a)| a - b - post.ids.len() as i64),
            republished: republished.map(|r| r.0),
            republished_acknowledged: republished.map(|r| r.1),
            fault: self.fault,
            healthy_silence_seconds: samples.as_deref().map(silence::longest_healthy_silence),
            fault_injected: post.fault_injected,
        })
    }

    /// `workers` running (scaled from the count before, the group left to
    /// settle), then paused (frozen, still members) while `requests`
    /// searches are accepted, then resumed: the time to answer them all is
    /// the workers' processing time, not the group's joining.
    async fn backlog(&self, stack: &Stack, workers: usize, partitions: usize) -> Result<Backlog> {
        let joining = Instant::now();
        stack.scale_workers(workers)?;
        stack.wait_for_assignment(workers, partitions).await?;
        let join_seconds = joining.elapsed().as_secs_f64();
        stack.compose(&["pause", "search-worker"])?;
        let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64());
        let posted = now()?;
        let post = load(&stack.addr, Kind::Search, self.requests, 32, None).await;
        let resumed = now()?;
        stack.compose(&["unpause", "search-worker"])?;
        // Wait with one light query every half second: polling every search
        // through the API would take cores from the workers being measured.
        let deadline = Instant::now() + Duration::from_secs(self.answer_timeout);
        while stack.unanswered_since(posted).is_none_or(|n| n > 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let answers = answers(&stack.addr, &post.ids, Duration::from_secs(self.answer_timeout)).await;
        Ok(Backlog {
            workers,
            runs: 1,
            searches: post.ids.len(),
            join_seconds,
            drain_seconds: answers.last_completed().map(|last| last - resumed).unwrap_or(f64::NAN),
            lost: answers.pending,
            answered_before_resume: answers.completed.iter().filter(|c| **c < resumed).count(),
        })
    }
}

fn level_line(l: &Level) -> String {
    format!(
        "concurrency {}: {:.0} accepted/s vs {:.0} health/s ({:.2}x), p50 {:.0} ms, p99 {:.0} ms, rejected {}, drain {}, lost {}, \
         republished {}",
        l.concurrency,
        l.accepted_per_second,
        l.health_per_second,
        l.ratio,
        l.p50_ms,
        l.p99_ms,
        l.rejected.values().sum::<usize>() + l.failed,
        l.drain_seconds.map(|d| format!("{d:.1}s")).unwrap_or_else(|| "-".to_owned()),
        l.lost,
        republished_cell(l)
    )
}

pub fn render(r: &Report) -> String {
    let mut out = format!(
        "bench-load: {} searches per run against {}; {} cores, Docker Engine {}; medians of the runs of each level\n\n",
        r.requests, r.target, r.cores, r.engine
    );
    out.push_str("| concurrency | runs | fault | GET /health per s | POST /searches accepted per s | ratio | p50 | p99 | rejected | drain after last accepted | lost | stored but rejected | republished (acknowledged before) | longest healthy silence |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for l in &r.levels {
        let rejected: Vec<String> = l.rejected.iter().map(|(s, n)| format!("{n}x{s}")).collect();
        let rejected_total = l.rejected.values().sum::<usize>() + l.failed;
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.2} | {:.0} ms | {:.0} ms | {} ({:.1}%){}{} | {} | {} | {} | {} | {} |\n",
            l.concurrency,
            l.repeats,
            l.fault.map(Fault::name).unwrap_or("-"),
            l.health_per_second,
            l.accepted_per_second,
            l.ratio,
            l.p50_ms,
            l.p99_ms,
            rejected_total,
            100.0 * rejected_total as f64 / l.sent.max(1) as f64,
            if rejected.is_empty() { String::new() } else { format!(" {}", rejected.join(" ")) },
            if l.failed > 0 { format!(" {} without answer", l.failed) } else { String::new() },
            l.drain_seconds.map(|d| format!("{d:.1} s")).unwrap_or_else(|| "-".to_owned()),
            l.lost,
            l.stored_but_rejected.map(|n| n.to_string()).unwrap_or_else(|| "n/a".to_owned()),
            republished_cell(l),
            l.healthy_silence_seconds.map(|d| format!("{d:.1} s")).unwrap_or_else(|| "-".to_owned()),
        ));
    }
    if let Some(g) = &r.group {
        out.push_str(&render_group(g));
    }
    if !r.backlog.is_empty() {
        out.push_str(&format!(
            "\nWorker backlog: the workers scaled to the count (joining: until the consumer group settled), then \
             paused while the searches were accepted, then resumed (time to the last answer stored, the database's \
             clock); searched over {} documents.\n",
            10 + r.documents
        ));
        out.push_str(
            "\n| workers | runs | joining the group | queued searches per run | resume to last answer | answered before the resume | lost |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for b in &r.backlog {
            out.push_str(&format!(
                "| {} | {} | {:.1} s | {} | {:.2} s | {} | {} |\n",
                b.workers,
                b.runs,
                b.join_seconds,
                b.searches / b.runs.max(1),
                b.drain_seconds,
                b.answered_before_resume,
                b.lost
            ));
        }
        if let (Some(one), Some(most)) = (r.backlog.first(), r.backlog.last()) {
            if most.workers > one.workers {
                out.push_str(&format!(
                    "\n{} workers answered the backlog {:.2}x as fast as {}.\n",
                    most.workers,
                    one.drain_seconds / most.drain_seconds,
                    one.workers
                ));
            }
        }
    }
    out
}

fn render_group(g: &group::Group) -> String {
    format!(
        "\nWorker group (KIP-848), medians of {} rounds, each from the start of the command to the next search \
         answered:\n\n| change | answering again after |\n|---|---|\n\
         | `docker compose restart search-worker` | {:.2} s |\n\
         | worker stopped, a search posted, `docker start` | {:.2} s |\n\
         | 3 workers stopped, a search posted, all started | {:.2} s |\n\
         | scale 1 -> 3 | {:.2} s |\n\
         | scale 3 -> 1 | {:.2} s |\n",
        g.runs, g.restart, g.stop_start, g.all_three_stop_start, g.scale_up, g.scale_down
    )
}

/// The stack under load: its HTTP address and its compose project folder.
#[derive(Clone)]
struct Stack {
    compose_dir: PathBuf,
    addr: String,
}

impl Stack {
    fn compose(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("docker")
            .arg("compose")
            .args(args)
            .current_dir(&self.compose_dir)
            .output()
            .context("cannot run `docker compose`")?;
        if !out.status.success() {
            bail!("`docker compose {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn engine_version(&self) -> String {
        Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// Runs `sql` with psql inside the postgres container (as the stack's
    /// own user, stopping at the first error) and returns its bare output.
    /// The statement goes in through the environment, so no quoting of it.
    fn psql(&self, sql: &str) -> Result<String> {
        let env = format!("SQL={sql}");
        let script = "psql -v ON_ERROR_STOP=1 -q -tA -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -c \"$SQL\"";
        self.compose(&["exec", "-T", "--env", &env, "postgres", "sh", "-c", script])
    }

    /// Rows in `searches`.
    /// Searches the api-server republished since `epoch` (its log's
    /// "republished N unfinished searches" lines), None when unreadable.
    fn republished_since(&self, epoch: f64) -> Option<(usize, usize)> {
        let ids = self.compose(&["ps", "-q", "api-server"]).ok()?;
        let since = format!("{epoch:.3}");
        let out = Command::new("docker").args(["logs", "--since", &since, ids.lines().next()?]).output().ok()?;
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        out.status.success().then(|| republished_in(&log))
    }

    /// Whether each long-running service has a container, and every one of
    /// them runs and is healthy (or has no healthcheck).
    fn all_healthy(&self) -> bool {
        let Ok(out) = self.compose(&["ps", "--format", "json"]) else { return false };
        let rows: Vec<serde_json::Value> = match serde_json::from_str::<serde_json::Value>(&out) {
            Ok(serde_json::Value::Array(rows)) => rows,
            _ => out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
        };
        let ok =
            |r: &serde_json::Value| r["State"] == "running" && matches!(r["Health"].as_str(), Some("healthy" | ""));
        LONG_RUNNING.iter().all(|s| rows.iter().any(|r| r["Service"] == *s))
            && rows.iter().filter(|r| LONG_RUNNING.contains(&r["Service"].as_str().unwrap_or_default())).all(ok)
    }

    /// Searches answered and searches waiting, from the database.
    fn answered_and_waiting(&self) -> Option<(i64, i64)> {
        let out = self
            .psql("SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status <> 'done') FROM searches")
            .ok()?;
        let (done, waiting) = out.split_once('|')?;
        Some((done.trim().parse().ok()?, waiting.trim().parse().ok()?))
    }

    fn stored(&self) -> Option<i64> {
        self.psql("SELECT count(*) FROM searches").ok()?.parse().ok()
    }

    /// Searches created since `epoch` (seconds) that are not answered yet.
    fn unanswered_since(&self, epoch: f64) -> Option<i64> {
        let sql =
            format!("SELECT count(*) FROM searches WHERE status <> 'done' AND created_at >= to_timestamp({epoch:.3})");
        self.psql(&sql).ok()?.parse().ok()
    }

    /// `n` synthetic documents: 12 words each from a vocabulary of 200 that
    /// holds the benchmark's query words, so each query matches about one
    /// document in twenty and ranks them all. Deterministic: same `n`, same rows.
    fn add_documents(&self, n: usize) -> Result<()> {
        let words: Vec<String> = QUERIES
            .iter()
            .flat_map(|q| q.split(' '))
            .map(str::to_owned)
            .chain((0..).map(|i| format!("term{i}")))
            .take(200)
            .collect();
        let vocabulary = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(",");
        let sql = format!(
            "INSERT INTO documents (title, body) SELECT 'Synthetic document ' || g, \
             (SELECT string_agg((ARRAY[{vocabulary}])[1 + ((g * 7919 + k * 104729 + g * k) % 200)], ' ') \
             FROM generate_series(1, 12) k) FROM generate_series(1, {n}) g; ANALYZE documents;"
        );
        self.psql(&sql).with_context(|| format!("cannot add {n} synthetic documents"))?;
        Ok(())
    }

    /// Waits until the `n` worker containers hold all `partitions` between
    /// them (each at least one, when there are enough), as their logs say,
    /// and the assignment stays the same for two polls a second apart.
    async fn wait_for_assignment(&self, n: usize, partitions: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut stable = 0;
        let mut last: Vec<Vec<u32>> = Vec::new();
        loop {
            let ids = self.compose(&["ps", "-q", "search-worker"])?;
            let owned: Vec<Vec<u32>> = ids.lines().map(|id| assigned_partitions(&container_logs(id))).collect();
            let total: usize = owned.iter().map(Vec::len).sum();
            let ready =
                owned.len() == n && total == partitions && (n > partitions || owned.iter().all(|p| !p.is_empty()));
            stable = if ready && owned == last { stable + 1 } else { 0 };
            if stable >= 2 {
                return Ok(());
            }
            last = owned;
            anyhow::ensure!(
                Instant::now() < deadline,
                "{n} search-worker(s) did not share the {partitions} partitions within 180 s (last seen: {last:?}); \
                 see `docker compose logs search-worker` in {}",
                self.compose_dir.display()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn scale_workers(&self, n: usize) -> Result<()> {
        let scale = format!("search-worker={n}");
        self.compose(&[
            "up",
            "--detach",
            "--no-deps",
            "--no-build",
            "--pull",
            "never",
            "--scale",
            &scale,
            "search-worker",
        ])?;
        Ok(())
    }

    /// Runs the fault (blocking: called on a blocking thread).
    fn inject(&self, fault: Fault) -> Result<()> {
        match fault {
            Fault::BrokerRestart => self.compose(&["restart", "kafka"]).map(drop),
            Fault::PostgresRestart => self.compose(&["restart", "postgres"]).map(drop),
            Fault::BrokerThenWorkerRestart => {
                self.compose(&["restart", "--timeout", "5", "kafka"])?;
                let args = ["up", "--detach", "--no-deps", "--no-build", "--pull", "never", "--force-recreate"];
                self.compose(&[&args[..], &["search-worker"]].concat()).map(drop)
            }
            Fault::WorkerKill => {
                let ids = self.compose(&["ps", "-q", "search-worker"])?;
                let id = ids.lines().next().context("no search-worker container to kill")?;
                // SIGKILL to the worker process itself (not to the container's
                // init, which `docker kill` would hit): a crash, after which
                // the restart policy brings the container back.
                let script = "import os\nfor p in os.listdir('/proc'):\n    \
                    if p.isdigit() and int(p) != os.getpid():\n        \
                    try:\n            cmd = open(f'/proc/{p}/cmdline', 'rb').read()\n        \
                    except OSError:\n            continue\n        \
                    if b'search_worker.main' in cmd:\n            os.kill(int(p), 9)\n            \
                    raise SystemExit(0)\nraise SystemExit('no search_worker.main process')\n";
                let out = Command::new("docker").args(["exec", id, "python", "-c", script]).output()?;
                anyhow::ensure!(out.status.success(), "kill failed: {}", String::from_utf8_lossy(&out.stderr));
                Ok(())
            }
        }
    }
}

/// A container's log, stdout and stderr (empty when it cannot be read).
fn container_logs(id: &str) -> String {
    Command::new("docker")
        .args(["logs", id])
        .output()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .unwrap_or_default()
}

/// The searches an api-server log says it republished, and how many of
/// them the broker had acknowledged ("(K of them acknowledged)").
fn republished_in(log: &str) -> (usize, usize) {
    let mut out = (0, 0);
    for (n, rest) in log.lines().filter_map(|l| l.split_once("republished ")?.1.split_once(" unfinished searches")) {
        out.0 += n.trim().parse::<usize>().unwrap_or(0);
        let acked = rest.trim_start().strip_prefix('(').and_then(|r| r.split_once(" of them acknowledged"));
        out.1 += acked.and_then(|(k, _)| k.trim().parse::<usize>().ok()).unwrap_or(0);
    }
    out
}

fn republished_cell(l: &Level) -> String {
    match (l.republished, l.republished_acknowledged) {
        (Some(n), Some(k)) => format!("{n} ({k})"),
        _ => "n/a".to_owned(),
    }
}

/// The partitions a worker holds now, from its log: the "(holding [...])"
/// of its last "partitions assigned/revoked" line (KIP-848 assignments are
/// incremental). Lines without it (an older worker): the list of the last
/// "partitions assigned" line, or none after a "partitions revoked" line.
fn assigned_partitions(log: &str) -> Vec<u32> {
    let list = |text: &str| -> Vec<u32> {
        let inner = text.split(']').next().unwrap_or_default().trim_start_matches('[');
        inner.split(',').filter_map(|p| p.trim().parse().ok()).collect()
    };
    let mut now = Vec::new();
    for line in log.lines() {
        if let Some((_, held)) = line.split_once("(holding ") {
            now = list(held);
        } else if let Some((_, assigned)) = line.split_once("partitions assigned: ") {
            now = list(assigned.trim());
        } else if line.contains("partitions revoked: ") {
            now.clear();
        }
    }
    now
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Health,
    Search,
}

struct LoadRun {
    started: Instant,
    finished: Instant,
    ok: usize,
    ids: Vec<String>,
    latencies: Vec<f64>,
    statuses: BTreeMap<u16, usize>,
    failed: usize,
    fault_injected: Option<bool>,
}

/// `total` requests over `concurrency` keep-alive connections; with a
/// fault, it is injected once half of them have been sent.
async fn load(addr: &str, kind: Kind, total: usize, concurrency: usize, fault: Option<(Fault, Stack)>) -> LoadRun {
    let next = Rc::new(Cell::new(0usize));
    let run = Rc::new(RefCell::new(LoadRun {
        started: Instant::now(),
        finished: Instant::now(),
        ok: 0,
        ids: Vec::new(),
        latencies: Vec::new(),
        statuses: BTreeMap::new(),
        failed: 0,
        fault_injected: None,
    }));
    let fault_task = fault.map(|(fault, stack)| inject_half_way(fault, stack, total, next.clone(), run.clone()));
    let clients = (0..concurrency).map(|_| client(addr, kind, total, next.clone(), run.clone()));
    let started = Instant::now();
    match fault_task {
        Some(task) => {
            futures_util::join!(join_all(clients), task);
        }
        None => {
            join_all(clients).await;
        }
    }
    let mut run = Rc::try_unwrap(run).ok().expect("every client is done").into_inner();
    run.started = started;
    run.finished = Instant::now();
    run
}

/// Waits until half of `total` requests are sent, then injects the fault
/// (on a blocking thread) and records whether it worked.
async fn inject_half_way(fault: Fault, stack: Stack, total: usize, next: Rc<Cell<usize>>, run: Rc<RefCell<LoadRun>>) {
    while next.get() < total / 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("injecting {} after {} requests", fault.name(), next.get());
    let injected = match tokio::task::spawn_blocking(move || stack.inject(fault)).await {
        Ok(Ok(())) => {
            eprintln!("{} done", fault.name());
            true
        }
        Ok(Err(e)) => {
            eprintln!("{} failed: {e:#}", fault.name());
            false
        }
        Err(e) => {
            eprintln!("{} failed: {e}", fault.name());
            false
        }
    };
    run.borrow_mut().fault_injected = Some(injected);
}

/// One connection taking the next request number until `total` are sent,
/// recording each answer in `run`.
async fn client(addr: &str, kind: Kind, total: usize, next: Rc<Cell<usize>>, run: Rc<RefCell<LoadRun>>) {
    let mut conn = Conn::new(addr);
    loop {
        let i = next.get();
        if i >= total {
            break;
        }
        next.set(i + 1);
        let (method, path, body) = match kind {
            Kind::Health => ("GET", "/health", String::new()),
            Kind::Search => ("POST", "/searches", format!("{{\"query\": \"{}\"}}", QUERIES[i % QUERIES.len()])),
        };
        let sent = Instant::now();
        let answer = conn.request(method, path, body.as_bytes()).await;
        let took = sent.elapsed().as_secs_f64();
        let mut run = run.borrow_mut();
        match answer {
            Ok((status, body)) => {
                *run.statuses.entry(status).or_default() += 1;
                let ok = if kind == Kind::Health { status == 200 } else { status == 202 };
                if ok {
                    run.ok += 1;
                    run.latencies.push(took);
                }
                if kind == Kind::Search && ok {
                    let id = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_owned));
                    run.ids.extend(id);
                }
            }
            Err(_) => run.failed += 1,
        }
    }
}

struct Answers {
    pending: usize,
    last_created: Option<f64>,
    /// Every answered search's `completed_at`.
    completed: Vec<f64>,
}

impl Answers {
    fn last_completed(&self) -> Option<f64> {
        self.completed.iter().copied().reduce(f64::max)
    }
}

/// Polls every id until it is answered or `timeout` passes.
async fn answers(addr: &str, ids: &[String], timeout: Duration) -> Answers {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<String> = ids.to_vec();
    let mut done = Answers { pending: 0, last_created: None, completed: Vec::new() };
    let stamps = RefCell::new(Vec::<(f64, f64)>::new());
    while !pending.is_empty() && Instant::now() < deadline {
        let queue = RefCell::new(std::mem::take(&mut pending));
        let still = RefCell::new(Vec::new());
        let pollers = (0..8).map(|_| async {
            let mut conn = Conn::new(addr);
            loop {
                let Some(id) = queue.borrow_mut().pop() else { break };
                let answer = conn.request("GET", &format!("/searches/{id}"), b"").await;
                let body = answer
                    .ok()
                    .filter(|(s, _)| *s == 200)
                    .and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok());
                match body.filter(|v| v["status"] == "done") {
                    Some(v) => {
                        let t = |k: &str| v[k].as_str().and_then(parse_timestamp);
                        if let (Some(created), Some(completed)) = (t("created_at"), t("completed_at")) {
                            stamps.borrow_mut().push((created, completed));
                        }
                    }
                    None => still.borrow_mut().push(id),
                }
            }
        });
        join_all(pollers).await;
        pending = still.into_inner();
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let stamps = stamps.into_inner();
    done.pending = pending.len();
    done.last_created = stamps.iter().map(|s| s.0).reduce(f64::max);
    done.completed = stamps.iter().map(|s| s.1).collect();
    done
}

/// Seconds since the epoch of an RFC 3339 timestamp
/// (`2026-11-30T10:00:00.123456Z` or with a `+hh:mm` offset).
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (clock, offset) = match time.find(['Z', '+', '-']) {
        Some(i) => time.split_at(i),
        None => (time, "Z"),
    };
    let mut c = clock.splitn(3, ':');
    let (h, min) = (c.next()?.parse::<i64>().ok()?, c.next()?.parse::<i64>().ok()?);
    let sec = c.next()?.parse::<f64>().ok()?;
    let offset_seconds = match offset {
        "Z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    // Days since 1970-01-01 of a proleptic Gregorian date.
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5 + day - 719469;
    Some((days * 86400 + h * 3600 + min * 60 - offset_seconds) as f64 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_with_any_offset() {
        let z = parse_timestamp("1970-01-02T00:00:01.5Z").unwrap();
        assert!((z - 86401.5).abs() < 1e-9);
        let plus = parse_timestamp("2026-11-30T11:00:00+01:00").unwrap();
        let utc = parse_timestamp("2026-11-30T10:00:00Z").unwrap();
        assert_eq!(plus, utc);
        assert_eq!(parse_timestamp("2000-03-01T00:00:00Z").unwrap(), 951868800.0);
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn a_workers_partitions_are_its_last_assignment_unless_revoked_since() {
        let log = "2026-11-30 12:00:00,000 search-worker INFO search_worker: partitions assigned: [0, 1, 2, 3, 4, 5]\n\
                   2026-11-30 12:00:01,000 search-worker INFO search_worker: partitions revoked: [0, 1, 2, 3, 4, 5]\n\
                   2026-11-30 12:00:02,000 search-worker INFO search_worker: partitions assigned: [2, 3]\n";
        assert_eq!(assigned_partitions(log), vec![2, 3]);
        let revoked = format!("{log}x INFO search_worker: partitions revoked: [2, 3]\n");
        assert!(assigned_partitions(&revoked).is_empty());
        assert!(assigned_partitions("x INFO search_worker: partitions assigned: []\n").is_empty());
        assert!(assigned_partitions("").is_empty());
        let api = "x INFO api_server: republished 12 unfinished searches\nx INFO other\n\
                   x INFO api_server: republished 3 unfinished searches (2 of them acknowledged)\n";
        assert_eq!(republished_in(api), (15, 2));
        let incremental = "x INFO search_worker: partitions assigned: [0, 4] (holding [0, 4])\n\
                           x INFO search_worker: partitions assigned: [2] (holding [0, 2, 4])\n\
                           x INFO search_worker: partitions revoked: [0] (holding [2, 4])\n";
        assert_eq!(assigned_partitions(incremental), vec![2, 4]);
        assert!(assigned_partitions("x partitions revoked: [1] (holding [])\n").is_empty());
    }
}
