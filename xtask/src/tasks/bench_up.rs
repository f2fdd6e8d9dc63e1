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
}

/// (label, environment) of each compared setting; the generated compose
/// file reads both variables.
const HEALTH_SETTINGS: [(&str, &[(&str, &str)]); 2] = [
    ("generated (interval 1 s, start period 60 s)", &[]),
    ("design notes (interval 10 s, start period 30 s)", &[("HEALTH_INTERVAL", "10s"), ("HEALTH_START_PERIOD", "30s")]),
];

/// Seconds each start may take to become healthy.
const TIMEOUT: u64 = 180;

impl BenchUp {
    pub fn run(self, repo: &Repo) -> Result<()> {
        // What `up` does first: engine, `.env`, base images (built locally without a registry).
        let p = repo.prepare()?;
        let (sh, docker, stack) = (&p.sh, p.docker(), &p.stack);
        let names = stack::service_names(stack);
        let mut rows: Vec<(String, Vec<std::collections::BTreeMap<String, f64>>)> = Vec::new();
        p.block_on(async {
            // Images must exist: build what is stale once, outside the timings.
            images::build_all(&p, &Select::default()).await?;
            for (label, vars) in HEALTH_SETTINGS {
                let shell = sh.clone();
                for (k, v) in vars {
                    shell.set_var(k, v);
                }
                let mut runs = Vec::new();
                for i in 0..self.runs {
                    // Containers removed, data volume kept: a restart, not a first init.
                    xshell::cmd!(shell, "docker compose down --remove-orphans").quiet().ignore_stderr().run()?;
                    let healthy = stack::start_and_wait(&shell, docker, stack, TIMEOUT, false).await?;
                    let all = healthy.values().cloned().fold(0.0, f64::max);
                    println!("{label}: run {} all healthy in {all:.1}s", i + 1);
                    runs.push(healthy);
                }
                rows.push((label.to_owned(), runs));
            }
            // Leave the stack as `cargo xtask up` would: generated settings.
            xshell::cmd!(sh, "docker compose down --remove-orphans").quiet().ignore_stderr().run()?;
            stack::start_and_wait(sh, docker, stack, TIMEOUT, false).await?;
            anyhow::Ok(())
        })?;
        let mut r = format!(
            "# Time to healthy\n\nMeasured by `cargo xtask bench-up` on {}: `docker compose up` (images built, data volume kept) \
             until the engine reports every container healthy; {} runs per setting, in one run of the command.\n\n| setting |",
            rfc3339_now(),
            self.runs
        );
        for n in &names {
            let _ = write!(r, " {n} |");
        }
        r.push_str(" all healthy |\n|---|");
        for _ in 0..=names.len() {
            r.push_str("---|");
        }
        r.push('\n');
        for (label, runs) in &rows {
            let _ = write!(r, "| {label} |");
            for n in &names {
                let ts: Vec<String> =
                    runs.iter().map(|m| format!("{:.1}", m.get(n).copied().unwrap_or(f64::NAN))).collect();
                let _ = write!(r, " {} s |", ts.join(" / "));
            }
            let all: Vec<String> =
                runs.iter().map(|m| format!("{:.1}", m.values().cloned().fold(0.0, f64::max))).collect();
            let _ = writeln!(r, " **{} s** |", all.join(" / "));
        }
        let out = if self.out.is_absolute() { self.out.clone() } else { repo.root.join(&self.out) };
        write_atomic(&out, &r)?;
        print!("{r}");
        println!("\nreport written to {}", out.display());
        Ok(())
    }
}
