//! `cargo xtask bench-build`: times image builds of one service with uv and
//! with pip (the same lock file), cold (empty build cache), warm (nothing
//! changed) and code-only (one source file changed), plus image sizes, and
//! writes a Markdown report. Speed lives here and in BENCHMARKS.md, never in
//! timed tests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bollard::query_parameters::PruneBuildOptionsBuilder;
use bollard::Docker;
use clap::Args;
use indicatif::ProgressBar;

use crate::build_images::{self, spinner_style};
use crate::dotenv::DotEnv;
use crate::engine::{self, BuildReport};
use crate::manifest::{self, Installer, Service, Stack};

/// Time builds (uv vs pip; cold, warm, code-only) and image sizes; write a report.
#[derive(Args, Debug)]
pub struct BenchBuild {
    /// The service whose image is measured.
    #[arg(long, default_value = "api-server")]
    pub service: String,
    /// Where the Markdown report goes.
    #[arg(long, default_value = "target/bench-build.md")]
    pub out: PathBuf,
}

struct Row {
    installer: Installer,
    cold: BuildReport,
    warm: BuildReport,
    code_only: BuildReport,
}

impl BenchBuild {
    pub fn run(self, root: &Path) -> Result<()> {
        let stack = manifest::load(root)?;
        let service = stack
            .services
            .iter()
            .find(|s| s.name == self.service)
            .with_context(|| format!("no service named {:?}", self.service))?
            .clone();
        let rows = engine::runtime()?.block_on(async {
            let docker = engine::connect().await?;
            let mut rows = Vec::new();
            for installer in [Installer::Uv, Installer::Pip] {
                rows.push(measure(&docker, &stack, &service, installer).await?);
            }
            let version = docker.version().await.ok().and_then(|v| v.version).unwrap_or_default();
            anyhow::Ok((rows, version))
        })?;
        let report = render(&service.name, &rows.0, &rows.1);
        let out = if self.out.is_absolute() { self.out.clone() } else { root.join(&self.out) };
        crate::gen::write_atomic(&out, &report)?;
        print!("{report}");
        println!("\nreport written to {}", out.display());
        Ok(())
    }
}

async fn measure(docker: &Docker, stack: &Stack, service: &Service, installer: Installer) -> Result<Row> {
    let env = DotEnv::load_or_create(&stack.root)?;
    let mut args = build_images::base_args(stack, &env);
    if installer == Installer::Pip {
        args.remove("UV_IMAGE");
    }
    let ca = build_images::proxy_ca(&stack.root);
    let tag = format!("{}-bench/{}-{installer}:latest", build_images::image_prefix(stack, &env), service.name);
    let build = |label: &'static str, extra: Option<(String, Vec<u8>)>, no_cache: bool| {
        let tag = tag.clone();
        let args = args.clone();
        let ca = ca.clone();
        async move {
            let mut ctx = build_images::service_context(stack, service, installer, ca.as_deref())?;
            if let Some((path, data)) = extra {
                ctx.add_bytes(&path, 0o644, data);
            }
            let bar = ProgressBar::new_spinner().with_prefix(format!("{installer} {label}"));
            bar.set_style(spinner_style());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            let spec = engine::BuildSpec {
                tag,
                extra_tags: vec![],
                dockerfile: service.dockerfile_path(),
                context: ctx.into_tar()?,
                build_args: args,
                labels: Default::default(),
                no_cache,
            };
            let report = engine::build(docker, spec, &bar).await;
            bar.finish_and_clear();
            let report = report?;
            println!(
                "{installer:>3} {label:<9} {:>6.1}s  {}/{} steps cached",
                report.seconds, report.cached, report.steps
            );
            anyhow::Ok(report)
        }
    };
    // Cold: no layer cache and no installer cache (cache mounts live in the build cache).
    docker
        .prune_build(Some(PruneBuildOptionsBuilder::default().all(true).build()))
        .await
        .context("cannot prune the build cache")?;
    let cold = build("cold", None, true).await?;
    let warm = build("warm", None, false).await?;
    let package = service.manifest.packages.first().context("a service has a package")?;
    let marker = format!("{}/{package}/_bench_code_change.py", service.dir);
    let stamp = format!("# code-only change made by cargo xtask bench-build at {}\n", build_images::rfc3339_now());
    let code_only = build("code-only", Some((marker, stamp.into_bytes())), false).await?;
    Ok(Row { installer, cold, warm, code_only })
}

fn render(service: &str, rows: &[Row], engine_version: &str) -> String {
    let mut r = format!(
        "# Build benchmark: {service}\n\nMeasured by `cargo xtask bench-build` on {} against Docker Engine {engine_version} \
         (BuildKit through the Engine API). Same lock file for both installers.\n\n",
        build_images::rfc3339_now()
    );
    r.push_str("| installer | cold (empty build cache) | warm (no change) | code-only change | image size |\n");
    r.push_str("| --- | --- | --- | --- | --- |\n");
    for row in rows {
        let _ = writeln!(
            r,
            "| {} | {:.1} s | {:.1} s ({}/{} cached) | {:.1} s ({}/{} cached) | {} |",
            row.installer,
            row.cold.seconds,
            row.warm.seconds,
            row.warm.cached,
            row.warm.steps,
            row.code_only.seconds,
            row.code_only.cached,
            row.code_only.steps,
            engine::human_size(row.code_only.size_bytes)
        );
    }
    r
}

/// Time from `docker compose up` to all healthy: the generated healthcheck
/// settings against the seed's (interval 10 s, start period 30 s), same run.
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
    ("generated (interval 2 s, start period 60 s)", &[]),
    ("seed (interval 10 s, start period 30 s)", &[("HEALTH_INTERVAL", "10s"), ("HEALTH_START_PERIOD", "30s")]),
];

impl BenchUp {
    pub fn run(self, sh: &xshell::Shell, root: &Path) -> Result<()> {
        let stack = manifest::load(root)?;
        let up = crate::stack::Up { timeout: 180, no_build: true, json: false };
        let names = crate::stack::service_names(&stack);
        let mut rows: Vec<(String, Vec<std::collections::BTreeMap<String, f64>>)> = Vec::new();
        engine::runtime()?.block_on(async {
            let docker = engine::connect().await?;
            // Images must exist: build what is stale once, outside the timings.
            build_images::build_all(sh, &docker, &stack, &build_images::BuildImages::default()).await?;
            for (label, vars) in HEALTH_SETTINGS {
                let shell = sh.clone();
                for (k, v) in vars {
                    shell.set_var(k, v);
                }
                let mut runs = Vec::new();
                for i in 0..self.runs {
                    // Containers removed, data volume kept: a restart, not a first init.
                    xshell::cmd!(shell, "docker compose down --remove-orphans").quiet().ignore_stderr().run()?;
                    let healthy = up.start_and_wait(&shell, &docker, &stack).await?;
                    let all = healthy.values().cloned().fold(0.0, f64::max);
                    println!("{label}: run {} all healthy in {all:.1}s", i + 1);
                    runs.push(healthy);
                }
                rows.push((label.to_owned(), runs));
            }
            // Leave the stack as `cargo xtask up` would: generated settings.
            xshell::cmd!(sh, "docker compose down --remove-orphans").quiet().ignore_stderr().run()?;
            up.start_and_wait(sh, &docker, &stack).await?;
            anyhow::Ok(())
        })?;
        let mut r = format!(
            "# Time to healthy\n\nMeasured by `cargo xtask bench-up` on {}: `docker compose up` (images built, data volume kept) \
             until the engine reports every container healthy; {} runs per setting, in one run of the command.\n\n| setting |",
            build_images::rfc3339_now(),
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
        let out = if self.out.is_absolute() { self.out.clone() } else { root.join(&self.out) };
        crate::gen::write_atomic(&out, &r)?;
        print!("{r}");
        println!("\nreport written to {}", out.display());
        Ok(())
    }
}
