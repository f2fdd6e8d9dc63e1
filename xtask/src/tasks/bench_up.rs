//! `cargo xtask bench-up`: time from `docker compose up` to all healthy,
//! the generated healthcheck timing against the design notes', in one run (the
//! build benchmark is bench_build.rs). Speed lives here and in
//! BENCHMARKS.md, never in timed tests.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::images::{self, Select};
use crate::prepared::Repo;
use crate::stack;
use crate::util::{rfc3339_now, write_atomic};

/// Time from `docker compose up` to all healthy: the generated healthcheck
/// settings against the design notes' (interval 10 s, start period 30 s), same run.
#[derive(Args, Debug)]
pub struct BenchUp {
    /// Runs per setting.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Where the Markdown report goes.
    #[arg(long, default_value = "target/bench-up.md")]
    pub out: PathBuf,
    /// Seconds of an idle, healthy stack over which each setting's probe
    /// count and the engine's CPU time are measured (0: skip).
    #[arg(long, default_value_t = 60)]
    pub idle: u64,
}

/// What a healthy, idle stack costs the engine over the measured window.
#[derive(Default, Clone, Copy)]
struct Idle {
    probes_per_minute: f64,
    engine_cpu_per_minute: f64,
    /// The containers' memory at the end of the idle window (`docker stats`:
    /// the cgroup's usage without page cache), in MiB: all, and the broker's.
    memory_mib: Option<(f64, f64)>,
}

/// (label, environment) of each compared setting; the generated compose
/// files read these variables. The first needs an engine with
/// `start_interval` (Docker 25+) and is skipped elsewhere.
const HEALTH_SETTINGS: [(&str, &[(&str, &str)]); 3] = [
    (
        "generated + compose.probes.yaml (start_interval 1-2 s, idle 10 s)",
        &[("COMPOSE_FILE", "compose.yaml:compose.probes.yaml")],
    ),
    ("generated, compose.yaml alone (interval 1-2 s throughout)", &[("COMPOSE_FILE", "compose.yaml")]),
    (
        "design notes (interval 10 s, start period 30 s)",
        &[("COMPOSE_FILE", "compose.yaml"), ("HEALTH_INTERVAL", "10s"), ("HEALTH_START_PERIOD", "30s")],
    ),
];

/// Seconds each start may take to become healthy.
const TIMEOUT: u64 = 180;

impl BenchUp {
    pub fn run(self, repo: &Repo) -> Result<()> {
        // What `up` does first: engine, `.env`, base images (built locally without a registry).
        let p = repo.prepare()?;
        let (sh, docker, stack) = (&p.sh, p.docker(), &p.stack);
        let names = stack::service_names(stack);
        let mut rows: Vec<Row> = Vec::new();
        let start_interval = p.engine.caps.start_interval();
        p.block_on(async {
            // Images must exist: build what is stale once, outside the timings.
            images::build_all(&p, &Select::default()).await?;
            let settings: Vec<_> =
                HEALTH_SETTINGS.iter().filter(|(_, v)| start_interval || !v[0].1.contains("probes")).collect();
            let shell_for = |vars: &[(&str, &str)]| {
                let shell = sh.clone();
                vars.iter().for_each(|(k, v)| shell.set_var(k, v));
                shell
            };
            // Interleaved (run 1 of each setting, then run 2 of each, ...),
            // so that a change in the machine's load hits every setting alike.
            let mut runs: Vec<Vec<std::collections::BTreeMap<String, f64>>> = vec![Vec::new(); settings.len()];
            for i in 0..self.runs {
                for (n, (label, vars)) in settings.iter().enumerate() {
                    let shell = shell_for(&vars[..]);
                    // Containers removed, data volume kept: a restart, not a first init.
                    xshell::cmd!(shell, "docker compose down --remove-orphans").quiet().ignore_stderr().run()?;
                    let healthy = stack::start_and_wait(&shell, docker, stack, TIMEOUT, false).await?;
                    let all = healthy.values().cloned().fold(0.0, f64::max);
                    println!("{label}: run {} all healthy in {all:.1}s", i + 1);
                    runs[n].push(healthy);
                }
            }
            for ((label, vars), runs) in settings.iter().zip(runs) {
                let shell = shell_for(&vars[..]);
                xshell::cmd!(shell, "docker compose down --remove-orphans").quiet().ignore_stderr().run()?;
                stack::start_and_wait(&shell, docker, stack, TIMEOUT, false).await?;
                let idle = idle_cost(docker, &stack.manifest.project, self.idle).await?;
                rows.push(Row { label: label.to_string(), runs, idle });
            }
            // Leave the stack as `cargo xtask up` would.
            xshell::cmd!(sh, "docker compose down --remove-orphans").quiet().ignore_stderr().run()?;
            stack::start_and_wait(sh, docker, stack, TIMEOUT, false).await?;
            anyhow::Ok(())
        })?;
        let r = report(&names, &rows, &self, &p.engine.caps.describe());
        let out = if self.out.is_absolute() { self.out.clone() } else { repo.root.join(&self.out) };
        write_atomic(&out, &r)?;
        print!("{r}");
        println!("\nreport written to {}", out.display());
        Ok(())
    }
}

struct Row {
    label: String,
    runs: Vec<std::collections::BTreeMap<String, f64>>,
    idle: Idle,
}

fn report(names: &[String], rows: &[Row], bench: &BenchUp, engine: &str) -> String {
    let mut r = format!(
        "# Time to healthy\n\nMeasured by `cargo xtask bench-up` on {} ({engine}): `docker compose up` (images built, data \
         volume kept) until the engine reports every container healthy; {} runs per setting, in one run of the command, \
         interleaved (run 1 of each setting, then run 2, ...). Then each setting's stack, started once more, idles {} s: \
         healthcheck probes the engine ran (its `exec_start` events) and the CPU time of the engine's own processes \
         (dockerd, its containerd and its containers' shims), both per minute.\n\n| setting |",
        rfc3339_now(),
        bench.runs,
        bench.idle
    );
    for n in names {
        let _ = write!(r, " {n} |");
    }
    r.push_str(" all healthy | idle probes/min | idle engine CPU s/min | memory after idle (all / broker) |\n|---|");
    for _ in 0..names.len() + 4 {
        r.push_str("---|");
    }
    r.push('\n');
    for row in rows {
        let _ = write!(r, "| {} |", row.label);
        for n in names {
            let ts: Vec<String> =
                row.runs.iter().map(|m| format!("{:.1}", m.get(n).copied().unwrap_or(f64::NAN))).collect();
            let _ = write!(r, " {} s |", ts.join(" / "));
        }
        let all: Vec<String> =
            row.runs.iter().map(|m| format!("{:.1}", m.values().cloned().fold(0.0, f64::max))).collect();
        let _ = writeln!(
            r,
            " **{} s** | {:.0} | {:.2} | {} |",
            all.join(" / "),
            row.idle.probes_per_minute,
            row.idle.engine_cpu_per_minute,
            row.idle
                .memory_mib
                .map(|(all, broker)| format!("{all:.0} / {broker:.0} MiB"))
                .unwrap_or_else(|| "-".into())
        );
    }
    r
}

/// Probes per minute (the engine's `exec_start` events of the project's
/// containers) and dockerd + containerd CPU seconds per minute, over
/// `seconds` of an idle, healthy stack.
async fn idle_cost(docker: &bollard::Docker, project: &str, seconds: u64) -> Result<Idle> {
    if seconds == 0 {
        return Ok(Idle::default());
    }
    // Counted live: the engine keeps only its last few hundred events, so
    // asking afterwards loses some when other containers are busy.
    let filters = std::collections::HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        ("label".to_owned(), vec![format!("com.docker.compose.project={project}")]),
    ]);
    let options = bollard::query_parameters::EventsOptionsBuilder::default().filters(&filters).build();
    let mut events = docker.events(Some(options));
    let started = std::time::Instant::now();
    let cpu_before = engine_cpu_ticks();
    let window = std::time::Duration::from_secs(seconds);
    let mut probes = 0usize;
    while let Ok(Some(event)) =
        tokio::time::timeout(window.saturating_sub(started.elapsed()), futures_util::StreamExt::next(&mut events)).await
    {
        probes += usize::from(event?.action.as_deref().is_some_and(|a| a.starts_with("exec_start")));
    }
    let cpu = engine_cpu_between(&cpu_before, &engine_cpu_ticks());
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let memory_mib = memory_mib(project);
    Ok(Idle { probes_per_minute: probes as f64 / minutes, engine_cpu_per_minute: cpu / minutes, memory_mib })
}

/// The memory of the project's running containers (`docker stats
/// --no-stream`), in MiB: their sum and the broker's; None when unreadable.
fn memory_mib(project: &str) -> Option<(f64, f64)> {
    let label = format!("label=com.docker.compose.project={project}");
    let ps = std::process::Command::new("docker").args(["ps", "-q", "--filter", &label]).output().ok()?;
    let ids: Vec<String> = String::from_utf8_lossy(&ps.stdout).split_whitespace().map(str::to_owned).collect();
    let stats = std::process::Command::new("docker")
        .args(["stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}"])
        .args(&ids)
        .output()
        .ok()?;
    (stats.status.success() && !ids.is_empty()).then(|| memory_of(&String::from_utf8_lossy(&stats.stdout)))
}

/// (sum, broker) in MiB of `docker stats` lines "name\t12.5MiB / 7.7GiB".
fn memory_of(stats: &str) -> (f64, f64) {
    let mut all = 0.0;
    let mut broker = 0.0;
    for (name, usage) in stats.lines().filter_map(|l| l.split_once('\t')) {
        let used = usage.split('/').next().unwrap_or_default().trim();
        let digits = used.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = used[digits.len()..].to_ascii_lowercase();
        let factor = match unit.as_str() {
            "gib" | "gb" => 1024.0,
            "kib" | "kb" => 1.0 / 1024.0,
            "b" => 1.0 / (1024.0 * 1024.0),
            _ => 1.0,
        };
        let mib = digits.parse::<f64>().unwrap_or_default() * factor;
        all += mib;
        if name.ends_with("-kafka-1") {
            broker += mib;
        }
    }
    (all, broker)
}

/// User + system CPU ticks of each process of the Docker engine: dockerd,
/// the containerd it runs (its config under /var/run/docker) and the shims
/// of its containers (namespace `moby`), by pid. Another containerd on the
/// machine (a Kubernetes node's) is not the engine's and is left out.
fn engine_cpu_ticks() -> std::collections::BTreeMap<u32, u64> {
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let engine = match comm.trim() {
            "dockerd" => true,
            "containerd" => cmdline.contains("/var/run/docker/containerd"),
            c if c.starts_with("containerd-shim") => cmdline.contains("-namespace moby"),
            _ => false,
        };
        if !engine {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
        let fields: Vec<u64> = after.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
        out.insert(pid, fields.iter().sum::<u64>());
    }
    out
}

/// CPU seconds the engine's processes used between two readings: each
/// process's growth (a process that started in between counts whole; one
/// that ended is not seen, so never negative).
fn engine_cpu_between(
    before: &std::collections::BTreeMap<u32, u64>,
    after: &std::collections::BTreeMap<u32, u64>,
) -> f64 {
    let ticks: u64 = after.iter().map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0))).sum();
    ticks as f64 / 100.0 // USER_HZ on Linux
}

#[cfg(test)]
mod tests {
    #[test]
    fn engine_cpu_counts_growth_only() {
        let before = std::collections::BTreeMap::from([(1, 100), (2, 50), (3, 10)]);
        // 1 grew by 30, 2 ended (not seen), 4 started (counts whole).
        let after = std::collections::BTreeMap::from([(1, 130), (4, 20), (3, 10)]);
        assert!((super::engine_cpu_between(&before, &after) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn memory_is_summed_from_docker_stats_lines() {
        let stats =
            "pysvc-kafka-1\t301.5MiB / 7.7GiB\npysvc-postgres-1\t40MiB / 7.7GiB\npysvc-api-server-1\t1.5GiB / 7.7GiB\n";
        let (all, broker) = super::memory_of(stats);
        assert!((all - (301.5 + 40.0 + 1536.0)).abs() < 1e-6, "{all}");
        assert!((broker - 301.5).abs() < 1e-6);
    }
}
