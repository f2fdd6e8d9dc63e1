//! `cargo xtask bench-build`: the generated Dockerfile (uv and pip) against
//! the design notes' own Dockerfiles, built in the same run on the same
//! engine from the same requirements file (the service's export of uv.lock):
//! cold, warm no-op, code-only change and lock change, each repeated; image
//! size; a fresh container's start-up (start until the service's modules are
//! imported); the no-op `build-images`; and whether a dependency added to
//! another service changes this one's image inputs (it must not). Prints a
//! table, `--json` for CI, and writes the build section of BENCHMARKS.md and
//! its chart (an SVG drawn here).
//!
//! Speed lives here and in BENCHMARKS.md, never in timed tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bollard::query_parameters::PruneBuildOptionsBuilder;
use bollard::Docker;
use clap::Args;
use indicatif::ProgressBar;
use xshell::{cmd, Shell};

use crate::bench::http::http_ok;
use crate::bench::stats::median;
use crate::context::ContextTar;
use crate::engine::{self, spinner_style, BuildReport};
use crate::gen::{self, BaseImage, PROXY_CA_DIR, PROXY_CA_FILE};
use crate::images::{self, Select};
use crate::manifest::{Installer, Service, Stack};
use crate::prepared::{Prepared, Repo};
use crate::stack;
use crate::util::{rfc3339_now, write_atomic};
use crate::workspace::{self, Exports};

/// Build times of the generated Dockerfiles against the design notes' own, with repeats and a chart.
#[derive(Args, Debug)]
pub struct BenchBuild {
    /// The service whose image is measured.
    #[arg(long, default_value = "api-server")]
    pub service: String,
    /// Repeats of every scenario (medians and min-max are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Print the results as JSON on stdout (nothing is written).
    #[arg(long)]
    pub json: bool,
    /// The Markdown file whose build section is rewritten.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Where the chart goes (linked from the Markdown section); default
    /// `docs/bench-build.svg`, or `docs/bench-build-cli.svg` with `--via docker-cli`.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Also measure edit -> serving on this project's stack: a code file of
    /// an http service changes, `build-images` rebuilds the code layer,
    /// compose recreates that one container, until it answers its health
    /// path. Brings the stack up first (as `cargo xtask up`).
    #[arg(long)]
    pub edit_to_serving: bool,
    /// Only these Dockerfiles (comma-separated keys: ours-uv, ours-pip,
    /// ours-uv-build-packages, notes-uv, notes-pip, notes-multistage-pip). A partial run prints its
    /// table and targets but writes nothing.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub variants: Vec<Variant>,
    /// The dependency the row "a dependency added to <another service>" adds
    /// (in a copy of the workspace's pyprojects and uv.lock, never the checkout's).
    #[arg(long, default_value = "six", value_name = "REQUIREMENT")]
    pub added_dependency: String,
    /// The registry of the fresh-runner rows (`cargo xtask setup --registry`
    /// starts one on 127.0.0.1:5000): each cold image is pushed there as its
    /// build cache, then rebuilt after its image is removed and the build
    /// cache pruned, pulling what it can from the registry. Skipped, with a
    /// warning, when nothing answers there.
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "HOST:PORT")]
    pub registry: String,
    /// How each build reaches the engine: the xtask's own Engine API request
    /// (as `build-images`), or the docker CLI as a user runs it
    /// (`DOCKER_BUILDKIT=1 docker build -f <Dockerfile> <dir>`, with a client
    /// that does BuildKit: one with buildx, or a 20.10 one).
    #[arg(long, value_enum, default_value = "engine-api")]
    pub via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    EngineApi,
    DockerCli,
}

/// The design notes' Dockerfiles, as written there (see each file's header
/// for the two adaptations a machine without a registry needs).
/// What the build-packages row adds to the measured service's
/// `build_packages` (when it has none of its own): the compiler and C headers
/// a C extension needs, so the builder stage installs a real toolchain.
const BENCH_BUILD_PACKAGES: [&str; 2] = ["gcc", "libc6-dev"];

const NOTES_UV: &str = include_str!("../../../docker/bench/notes-uv.Dockerfile");
const NOTES_PIP: &str = include_str!("../../../docker/bench/notes-pip.Dockerfile");
const NOTES_MULTISTAGE_PIP: &str = include_str!("../../../docker/bench/notes-multistage-pip.Dockerfile");
const PYTHON_SLIM: &str = include_str!("../../../docker/bench/python-slim.Dockerfile");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    OursUv,
    OursUvNoBytecode,
    OursPip,
    /// The generated file of the service with `build_packages`: the builder
    /// stage and the runtime stage that copies the venv.
    OursUvBuildPackages,
    NotesUv,
    NotesPip,
    NotesMultistagePip,
}

const VARIANTS: [Variant; 7] = [
    Variant::OursUv,
    Variant::OursUvNoBytecode,
    Variant::OursPip,
    Variant::OursUvBuildPackages,
    Variant::NotesUv,
    Variant::NotesPip,
    Variant::NotesMultistagePip,
];

impl Variant {
    fn key(self) -> &'static str {
        match self {
            Variant::OursUv => "ours-uv",
            Variant::OursUvNoBytecode => "ours-uv-no-bytecode",
            Variant::OursPip => "ours-pip",
            Variant::OursUvBuildPackages => "ours-uv-build-packages",
            Variant::NotesUv => "notes-uv",
            Variant::NotesPip => "notes-pip",
            Variant::NotesMultistagePip => "notes-multistage-pip",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::OursUv => "generated, uv",
            Variant::OursUvNoBytecode => "generated, uv, `bytecode: false`",
            Variant::OursPip => "generated, pip (`installer: pip`)",
            Variant::OursUvBuildPackages => "generated, uv, `build_packages` (builder stage)",
            Variant::NotesUv => "design notes' ADR (uv --system --no-cache)",
            Variant::NotesPip => "design notes' pip rollback",
            Variant::NotesMultistagePip => "design notes' multi-stage pip",
        }
    }

    fn notes(self) -> Option<&'static str> {
        match self {
            Variant::NotesUv => Some(NOTES_UV),
            Variant::NotesPip => Some(NOTES_PIP),
            Variant::NotesMultistagePip => Some(NOTES_MULTISTAGE_PIP),
            Variant::OursUv | Variant::OursUvNoBytecode | Variant::OursPip | Variant::OursUvBuildPackages => None,
        }
    }
}

const SCENARIOS: [&str; 7] =
    ["cold", "warm", "code_only", "lock_change", "startup", "fresh_unchanged", "fresh_lock_change"];

fn scenario_label(s: &str) -> &'static str {
    match s {
        "cold" => "cold (build cache pruned)",
        "warm" => "warm no-op",
        "code_only" => "code-only change",
        "lock_change" => "lock-file change",
        "fresh_unchanged" => "fresh runner, lock unchanged (registry cache)",
        "fresh_lock_change" => "fresh runner, lock changed (registry cache)",
        _ => "fresh container: start to app imported",
    }
}

/// Samples of one figure, in seconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Figure {
    samples: Vec<f64>,
    median: f64,
    min: f64,
    max: f64,
}

impl Figure {
    fn of(mut samples: Vec<f64>) -> Figure {
        samples.sort_by(|a, b| a.total_cmp(b));
        Figure {
            median: median(&samples),
            min: samples.first().copied().unwrap_or(f64::NAN),
            max: samples.last().copied().unwrap_or(f64::NAN),
            samples,
        }
    }

    fn cell(&self) -> String {
        if self.samples.is_empty() {
            "–".to_owned()
        } else if self.samples.len() > 1 {
            format!("{:.2} s ({:.2}–{:.2})", self.median, self.min, self.max)
        } else {
            format!("{:.2} s", self.median)
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    variant: Variant,
    label: &'static str,
    size_bytes: i64,
    figures: BTreeMap<&'static str, Figure>,
}

#[derive(Debug, serde::Serialize)]
struct Results {
    service: String,
    runs: usize,
    date: String,
    cores: usize,
    engine: String,
    base_image: String,
    via: Via,
    /// The registry of the fresh-runner rows (None: not measured).
    registry: Option<String>,
    rows: Vec<Row>,
    noop_build_images: Figure,
    edit_to_serving: Option<Figure>,
    dependency_added: Option<DependencyAdded>,
    targets: Vec<Target>,
}

/// The row "a dependency added to <other>": `uv add --package <other>
/// <dependency>` in a copy of the workspace's pyprojects and uv.lock, the
/// exports of that lock, and the build plan they give against this run's
/// images (nothing is built or written in the checkout).
#[derive(Debug, Clone, serde::Serialize)]
struct DependencyAdded {
    /// The service the dependency went to.
    other: String,
    dependency: String,
    /// The measured service's inputs hash, before and after.
    inputs_before: String,
    inputs_after: String,
    /// `build-images` would rebuild the measured service.
    rebuilt: bool,
    /// The other service's inputs hash changed.
    other_changed: bool,
}

#[derive(Debug, serde::Serialize)]
struct Target {
    what: String,
    value: String,
    goal: String,
    met: bool,
}

impl BenchBuild {
    pub fn run(self, repo: &Repo) -> Result<()> {
        anyhow::ensure!(self.runs >= 1, "--runs must be at least 1");
        // What `up` does first: engine, `.env`, and the base images it selects.
        let p = repo.prepare()?;
        let root = &repo.root;
        let service = p
            .stack
            .services
            .iter()
            .find(|s| s.name == self.service)
            .with_context(|| format!("no service named {:?}", self.service))?
            .clone();
        p.block_on(engine::warn_if_busy(p.docker(), None));
        let variants: Vec<Variant> =
            VARIANTS.into_iter().filter(|v| self.variants.is_empty() || self.variants.contains(v)).collect();
        let how = How { via: self.via, registry: self.registry.clone(), json: self.json };
        let mut results = p.block_on(measure_all(&p, &service, &variants, self.runs, &how))?;
        let added = p.block_on(dependency_added(&p, &service, &self.added_dependency))?;
        if let Some(added) = &added {
            results.targets.push(dependency_target(&service.name, added));
        }
        results.dependency_added = added;
        if self.edit_to_serving {
            let figure = p.block_on(edit_to_serving(&p, &service, self.runs))?;
            results.targets.push(Target {
                what: format!("edit {} code -> new container serving", service.name),
                value: figure.cell(),
                goal: "≤ 2 s".into(),
                met: figure.median <= 2.0,
            });
            results.edit_to_serving = Some(figure);
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&results)?);
            return Ok(());
        }
        let out = if self.out.is_absolute() { self.out.clone() } else { root.join(&self.out) };
        let default_svg = match self.via {
            Via::EngineApi => "docs/bench-build.svg",
            Via::DockerCli => "docs/bench-build-cli.svg",
        };
        let svg = root.join(self.svg.clone().unwrap_or_else(|| PathBuf::from(default_svg)));
        // The chart is linked relative to the Markdown file.
        let link = out.parent().and_then(|dir| svg.strip_prefix(dir).ok()).unwrap_or(&svg).to_path_buf();
        let section = markdown(&results, &link);
        print!("\n{section}");
        if variants.len() != VARIANTS.len() {
            println!("\n(a partial run: {} not written)", out.display());
            return Ok(());
        }
        let existing = std::fs::read_to_string(&out).unwrap_or_default();
        write_atomic(&svg, &chart(&results))?;
        write_atomic(&out, &replace_section(&existing, &section, self.via))?;
        println!("\nwritten: {} (build section), {}", out.display(), svg.display());
        Ok(())
    }
}

/// How a run builds: through which client, and with which registry for
/// the fresh-runner rows.
struct How {
    via: Via,
    registry: String,
    json: bool,
}

/// Everything one variant's build needs besides the context.
struct Plan<'a> {
    stack: &'a Stack,
    service: &'a Service,
    exports: &'a Exports,
    args: BTreeMap<String, String>,
    ca: Option<Vec<u8>>,
    prefix: String,
    slim_image: String,
    uv_image: String,
    /// The Python base image, as the generated images' SBOMs name it.
    base: BaseImage,
    stamp: String,
    json: bool,
    via: Via,
    /// The docker CLI that builds with BuildKit (`--via docker-cli`).
    cli: Option<String>,
    /// Where the fresh-runner rows push and pull their cache (None: skipped).
    registry: Option<String>,
}

/// A change applied on top of the checked-in files.
#[derive(Clone, Copy)]
enum Change {
    None,
    Code,
    CodeAndLock,
}

impl Plan<'_> {
    fn tag(&self, v: Variant) -> String {
        format!("{}-bench/{}-{}:latest", self.prefix, self.service.name, v.key())
    }

    fn code_file(&self) -> Result<String> {
        let package = self.service.manifest.packages.first().context("a service has a package")?;
        Ok(format!("{}/{package}/_bench_code_change.py", self.service.dir))
    }

    /// The service's exported requirements (what its image installs), as
    /// committed: the same file every row builds from.
    fn requirements(&self) -> String {
        gen::requirements(self.service, self.exports)
    }

    fn lock(&self) -> String {
        let mut lock = self.requirements();
        let _ = writeln!(lock, "# lock-file change made by cargo xtask bench-build ({})", self.stamp);
        lock
    }

    /// The context and Dockerfile path of `v` with `change` applied.
    fn context(&self, v: Variant, change: Change) -> Result<(ContextTar, String)> {
        let code = format!("# code-only change made by cargo xtask bench-build ({})\n", self.stamp);
        let Some(notes) = v.notes() else {
            let installer = if v == Variant::OursPip { Installer::Pip } else { Installer::Uv };
            let mut service = self.service.clone();
            service.manifest.bytecode = v != Variant::OursUvNoBytecode;
            if v == Variant::OursUvBuildPackages {
                service.manifest.build_packages.extend(BENCH_BUILD_PACKAGES.map(str::to_owned));
            }
            let mut ctx =
                images::service_context(self.stack, &service, installer, self.exports, &self.base, self.ca.as_deref())?;
            if !matches!(change, Change::None) {
                ctx.add_bytes(&self.code_file()?, 0o644, code.into_bytes());
            }
            if matches!(change, Change::CodeAndLock) {
                ctx.replace_bytes(&self.service.requirements_path(), 0o644, self.lock().into_bytes());
            }
            return Ok((ctx, self.service.dockerfile_path()));
        };
        // The layout the notes' Dockerfiles expect: src/<service>/ holds the
        // requirements file (our hashed lock) and the code, src/common the
        // shared code. Shared packages also go next to the service's, so the
        // same imports work in every image.
        let svc = &self.service.name;
        let dockerfile = notes
            .replace("src/api-server", &format!("src/{svc}"))
            .replace("python:3.11-slim", &self.slim_image)
            .replace("ghcr.io/astral-sh/uv:latest", &self.uv_image);
        let mut ctx = ContextTar::default();
        ctx.add_bytes("Dockerfile", 0o644, dockerfile.into_bytes());
        let lock = match change {
            Change::CodeAndLock => self.lock().into_bytes(),
            _ => self.requirements().into_bytes(),
        };
        ctx.add_bytes(&format!("src/{svc}/requirements.txt"), 0o644, lock);
        let root = &self.stack.root;
        let mut packages: Vec<(String, String)> = self
            .service
            .manifest
            .packages
            .iter()
            .map(|p| (format!("{}/{p}", self.service.dir), format!("src/{svc}/{}", last(p))))
            .collect();
        for shared in &self.stack.manifest.shared {
            packages.push((shared.path.clone(), format!("src/{svc}/{}", last(&shared.path))));
            packages.push((shared.path.clone(), format!("src/common/{}", last(&shared.path))));
        }
        for (from, to) in packages {
            ctx.add_path_as(root, &from, &to)?;
        }
        if !matches!(change, Change::None) {
            let package = self.service.manifest.packages.first().context("a service has a package")?;
            ctx.add_bytes(&format!("src/{svc}/{}/_bench_code_change.py", last(package)), 0o644, code.into_bytes());
        }
        ctx.add_path(root, &format!("{PROXY_CA_DIR}/README.md"))?;
        if let Some(ca) = &self.ca {
            ctx.add_unhashed(PROXY_CA_FILE, ca.clone());
        }
        Ok((ctx, "Dockerfile".to_owned()))
    }

    async fn build(&self, docker: &Docker, v: Variant, change: Change, what: &str) -> Result<BuildReport> {
        self.build_from(docker, v, change, what, &[]).await
    }

    /// A build of `v` with `change`, reusing layers from `cache_from`.
    async fn build_from(
        &self,
        docker: &Docker,
        v: Variant,
        change: Change,
        what: &str,
        cache_from: &[String],
    ) -> Result<BuildReport> {
        let (ctx, dockerfile) = self.context(v, change)?;
        let mut args = self.args.clone();
        if v == Variant::OursPip {
            args.remove("UV_IMAGE");
        }
        if v.notes().is_some() {
            args.clear();
        }
        // Every image carries its layer cache, as `build-images` writes it.
        args.insert(engine::INLINE_CACHE_ARG.to_owned(), "1".to_owned());
        let bar = ProgressBar::new_spinner().with_prefix(format!("{} {what}", v.key()));
        if self.json {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        bar.set_style(spinner_style());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let body = ctx.into_tar()?;
        // Every build starts with the disk's write-back queue empty, so no
        // row pays for the files the previous one wrote (a local engine
        // shares this machine's disk; for a remote one this does nothing).
        let _ = std::process::Command::new("sync").status();
        let spec = || engine::BuildSpec {
            tag: self.tag(v),
            extra_tags: vec![],
            dockerfile: dockerfile.clone(),
            context: body.clone(),
            build_args: args.clone(),
            labels: Default::default(),
            no_cache: false,
            cache_from: cache_from.to_vec(),
            cache_to: None,
        };
        let once = || async {
            match (&self.via, &self.cli) {
                (Via::DockerCli, Some(cli)) => self.build_cli(docker, cli, v, &spec()).await,
                _ => engine::build(docker, spec(), &bar).await,
            }
        };
        let mut report = once().await;
        if let Err(e) = &report {
            // On a shared engine a build cache pruned by someone else can
            // fail a running build ("not found"): one retry, said aloud.
            eprintln!(
                "{} {what}: build failed, retrying once ({})",
                v.key(),
                format!("{e:#}").lines().last().unwrap_or("")
            );
            report = once().await;
        }
        bar.finish_and_clear();
        let report = report?;
        if !self.json {
            eprintln!(
                "{:<22} {what:<12} {:>6.2} s  {}/{} steps cached",
                v.key(),
                report.seconds,
                report.cached,
                report.steps
            );
        }
        Ok(report)
    }

    /// The build as a user runs it: the context unpacked into a folder (with
    /// the Dockerfile's own `.dockerignore` next to it for ours), then
    /// `DOCKER_BUILDKIT=1 <cli> build --progress plain -f … <folder>`.
    async fn build_cli(&self, docker: &Docker, cli: &str, v: Variant, spec: &engine::BuildSpec) -> Result<BuildReport> {
        let dir = self.stack.root.join("target/bench-build-cli").join(v.key());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        tar::Archive::new(spec.context.as_slice()).unpack(&dir).context("cannot unpack the build context")?;
        if v.notes().is_none() {
            let ignore = dir.join(format!("{}.dockerignore", spec.dockerfile));
            write_atomic(&ignore, &crate::gen::dockerignore(self.stack, self.service))?;
        }
        let args = cli_args(spec, &dir);
        let started = Instant::now();
        let out = std::process::Command::new(cli).args(&args).env("DOCKER_BUILDKIT", "1").output()?;
        let seconds = started.elapsed().as_secs_f64();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("{cli} build of {} failed:\n{}", spec.tag, tail.join("\n"));
        }
        let (steps, cached, ran) = cli_counts(&log);
        let image = docker.inspect_image(&spec.tag).await.with_context(|| format!("{cli} built no {}", spec.tag))?;
        let warnings = log
            .lines()
            .filter(|l| l.contains("importing cache manifest") && l.contains("ERROR"))
            .map(str::to_owned)
            .collect();
        Ok(BuildReport {
            image_id: image.id.unwrap_or_default(),
            seconds,
            steps,
            cached,
            size_bytes: image.size.unwrap_or_default(),
            warnings,
            ran,
        })
    }

    fn cache_ref(&self, registry: &str, v: Variant) -> String {
        images::cache_ref(&format!("{registry}/{}-bench", self.prefix), &format!("{}-{}", self.service.name, v.key()))
    }

    /// After the cold build: its image (it carries its inline cache) goes
    /// to the registry, as CI's last run on the default branch leaves it.
    async fn push_cache(&self, docker: &Docker, v: Variant) -> Result<()> {
        let Some(registry) = &self.registry else { return Ok(()) };
        let remote = self.cache_ref(registry, v);
        let (repo, tag) = remote.rsplit_once(':').expect("a cache ref has a tag");
        let options = bollard::query_parameters::TagImageOptionsBuilder::default().repo(repo).tag(tag).build();
        docker.tag_image(&self.tag(v), Some(options)).await?;
        let options = bollard::query_parameters::PushImageOptionsBuilder::default().tag(tag).build();
        let mut stream = docker.push_image(repo, Some(options), None);
        while let Some(item) = futures_util::StreamExt::next(&mut stream).await {
            if let Some(err) = item?.error_detail.and_then(|d| d.message) {
                bail!("pushing the bench cache {remote} failed: {err}");
            }
        }
        Ok(())
    }

    /// The fresh-runner rows: the image (and its cache tag) removed, the
    /// build cache pruned, then built with `cachefrom` the registry: once
    /// unchanged, once with the code and lock changed. None when skipped.
    async fn fresh_runner(&self, docker: &Docker, v: Variant) -> Result<Option<(f64, f64)>> {
        let Some(registry) = &self.registry else { return Ok(None) };
        let cache = vec![self.cache_ref(registry, v)];
        let mut seconds = Vec::new();
        for (change, what) in [(Change::None, "fresh, same"), (Change::CodeAndLock, "fresh, lock")] {
            for image in [self.tag(v), cache[0].clone()] {
                let options = bollard::query_parameters::RemoveImageOptionsBuilder::default().force(true).build();
                let _ = docker.remove_image(&image, Some(options), None).await;
            }
            docker
                .prune_build(Some(PruneBuildOptionsBuilder::default().all(true).build()))
                .await
                .context("cannot prune the build cache")?;
            seconds.push(self.build_from(docker, v, change, what, &cache).await?.seconds);
        }
        Ok(Some((seconds[0], seconds[1])))
    }

    /// A fresh container of the image, from start until the service's
    /// modules (and its command's module, e.g. uvicorn) are imported.
    fn startup(&self, sh: &Shell, v: Variant) -> Result<f64> {
        let tag = self.tag(v);
        let script = import_script(self.stack, self.service);
        let started = Instant::now();
        // Not `--rm`: through Podman 4.3's Docker API that always exits 0.
        let name = format!("pysvc-bench-startup-{}", std::process::id());
        let out = cmd!(sh, "docker run --name {name} -w /app --entrypoint python {tag} -c {script}")
            .quiet()
            .ignore_status()
            .output()?;
        let seconds = started.elapsed().as_secs_f64();
        let _ = cmd!(sh, "docker rm -f {name}").quiet().ignore_stderr().ignore_stdout().run();
        if !out.status.success() {
            bail!("{tag}: importing the service failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(seconds)
    }
}

/// The CLI's arguments for `spec`, built from the folder `dir`.
fn cli_args(spec: &engine::BuildSpec, dir: &Path) -> Vec<String> {
    let mut args = vec!["build".to_owned(), "--progress".to_owned(), "plain".to_owned()];
    args.extend(["-f".to_owned(), dir.join(&spec.dockerfile).display().to_string(), "-t".to_owned(), spec.tag.clone()]);
    for (k, v) in &spec.build_args {
        args.extend(["--build-arg".to_owned(), format!("{k}={v}")]);
    }
    for c in &spec.cache_from {
        args.extend(["--cache-from".to_owned(), c.clone()]);
    }
    args.push(dir.display().to_string());
    args
}

/// Steps, cached steps and the steps that ran, from `--progress plain`
/// output (`#N [stage i/n] …` opens a step, `#N CACHED` marks it cached).
fn cli_counts(log: &str) -> (usize, usize, Vec<String>) {
    let mut names: Vec<(String, String)> = Vec::new();
    let mut cached = std::collections::BTreeSet::new();
    for line in log.lines() {
        let Some((id, rest)) = line.strip_prefix('#').and_then(|l| l.split_once(' ')) else { continue };
        if rest == "CACHED" {
            cached.insert(id.to_owned());
        } else if rest.starts_with('[') && !rest.starts_with("[internal]") && !names.iter().any(|(i, _)| i == id) {
            names.push((id.to_owned(), rest.to_owned()));
        }
    }
    let hits = names.iter().filter(|(id, _)| cached.contains(id)).count();
    let ran = names
        .iter()
        .filter(|(id, name)| !cached.contains(id) && !name.contains("] FROM "))
        .map(|(_, name)| name.chars().take(70).collect())
        .collect();
    (names.len(), hits, ran)
}

/// A docker CLI that builds with BuildKit: (path, client version, has
/// buildx) for each one found; one with buildx, else one before 23 (its
/// BuildKit client is built in; from 23 on, `DOCKER_BUILDKIT=1` without
/// buildx is refused, and the legacy builder rejects `RUN --mount`).
fn choose_client(found: &[(String, String, bool)]) -> Option<String> {
    let major = |v: &str| v.split('.').next().and_then(|m| m.parse::<u32>().ok()).unwrap_or(u32::MAX);
    found
        .iter()
        .find(|(_, _, buildx)| *buildx)
        .or_else(|| found.iter().find(|(_, version, _)| major(version) < 23))
        .map(|(path, _, _)| path.clone())
}

/// The docker CLIs on this machine (`docker` on PATH, Debian's
/// /usr/bin/docker) and the one `--via docker-cli` uses.
fn cli_client(sh: &Shell) -> Result<String> {
    let mut found = Vec::new();
    for path in ["docker", "/usr/bin/docker", "/usr/local/bin/docker"] {
        let format = "{{.Client.Version}}";
        let Ok(version) = cmd!(sh, "{path} version --format {format}").quiet().ignore_stderr().read() else {
            continue;
        };
        let buildx = cmd!(sh, "{path} buildx version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
        found.push((path.to_owned(), version.trim().to_owned(), buildx));
    }
    choose_client(&found).with_context(|| {
        format!(
            "no docker CLI here builds with BuildKit (found {found:?}): install buildx, or Debian's docker.io client"
        )
    })
}

fn last(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or(path)
}

/// Python that imports every module of the service's and the shared
/// packages (except the `main` entry modules, which connect at import) and
/// the module its command runs, if that is a program like uvicorn.
fn import_script(stack: &Stack, service: &Service) -> String {
    let mut packages: Vec<String> = stack.manifest.shared.iter().map(|s| last(&s.path).to_owned()).collect();
    packages.extend(service.manifest.packages.iter().map(|p| last(p).to_owned()));
    let program = service.manifest.command.first().cloned().unwrap_or_default();
    let extra = if program.starts_with("python") { String::new() } else { format!("import {program}\n") };
    format!(
        "import importlib, pkgutil\n{extra}for name in {packages:?}:\n    pkg = importlib.import_module(name)\n    \
         for m in pkgutil.walk_packages(pkg.__path__, name + '.'):\n        \
         if m.name.rsplit('.', 1)[-1] not in ('main', '__main__'):\n            importlib.import_module(m.name)\n"
    )
}

/// Samples of each (variant, scenario), and each variant's image size.
type Samples = (BTreeMap<(Variant, &'static str), Vec<f64>>, BTreeMap<Variant, i64>);

async fn measure_all(p: &Prepared, service: &Service, variants: &[Variant], runs: usize, how: &How) -> Result<Results> {
    let (docker, stack) = (p.docker(), &p.stack);
    let args = images::base_args(stack, &p.env);
    let prefix = p.image_prefix();
    let slim_image = format!("{prefix}-bench/python-slim:{}", stack.manifest.python_version);
    let mut plan = Plan {
        stack,
        service,
        exports: &p.exports,
        args: args.clone(),
        ca: images::proxy_ca(&stack.root),
        prefix: prefix.clone(),
        slim_image: slim_image.clone(),
        uv_image: args["UV_IMAGE"].clone(),
        base: BaseImage {
            reference: args["BASE_IMAGE"].clone(),
            id: engine::image_id(docker, &args["BASE_IMAGE"]).await,
        },
        stamp: String::new(),
        json: how.json,
        via: how.via,
        cli: match how.via {
            Via::DockerCli => Some(cli_client(&p.sh)?),
            Via::EngineApi => None,
        },
        registry: registry_answering(&how.registry).await,
    };
    if let Some(cli) = &plan.cli {
        eprintln!("building through the docker CLI {cli} (DOCKER_BUILDKIT=1)");
    }
    build_slim_stand_in(docker, &slim_image, &args["BASE_IMAGE"]).await?;
    let (samples, sizes) = sample_variants(p, &mut plan, variants, runs).await?;
    let noop = noop_build_images(p, service, runs).await?;
    let rows: Vec<Row> = variants
        .iter()
        .map(|&v| Row {
            variant: v,
            label: v.label(),
            size_bytes: sizes.get(&v).copied().unwrap_or_default(),
            figures: SCENARIOS
                .iter()
                .map(|&s| (s, Figure::of(samples.get(&(v, s)).cloned().unwrap_or_default())))
                .collect(),
        })
        .collect();
    let version = docker.version().await.ok();
    let mut results = Results {
        service: service.name.clone(),
        runs,
        date: rfc3339_now(),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        engine: version.and_then(|v| v.version).unwrap_or_default(),
        base_image: args["BASE_IMAGE"].clone(),
        via: how.via,
        registry: plan.registry.clone(),
        rows,
        noop_build_images: Figure::of(noop),
        edit_to_serving: None,
        dependency_added: None,
        targets: Vec::new(),
    };
    results.targets = targets(&results);
    Ok(results)
}

/// `registry` when its API answers (the fresh-runner rows need it); else a
/// warning, and those rows are skipped.
async fn registry_answering(registry: &str) -> Option<String> {
    let port = registry.strip_prefix("127.0.0.1:").or_else(|| registry.strip_prefix("localhost:"));
    let answers = match port.and_then(|p| p.parse::<u16>().ok()) {
        Some(port) => crate::bench::http::http_ok(port, "/v2/").await,
        None => true, // A remote registry: the push says whether it works.
    };
    if !answers {
        eprintln!(
            "warning: no registry answers at {registry}: the fresh-runner rows are skipped \
             (start one with `cargo xtask setup --registry`, or pass --registry HOST:PORT)"
        );
    }
    answers.then(|| registry.to_owned())
}

/// The stand-in for the official slim image the notes build on.
async fn build_slim_stand_in(docker: &Docker, tag: &str, base_image: &str) -> Result<()> {
    let mut ctx = ContextTar::default();
    ctx.add_bytes("Dockerfile", 0o644, PYTHON_SLIM.as_bytes().to_vec());
    let bar = ProgressBar::hidden().with_prefix("python-slim stand-in");
    engine::build(
        docker,
        engine::BuildSpec {
            tag: tag.to_owned(),
            extra_tags: vec![],
            dockerfile: "Dockerfile".to_owned(),
            context: ctx.into_tar()?,
            build_args: BTreeMap::from([("BASE_IMAGE".to_owned(), base_image.to_owned())]),
            labels: Default::default(),
            no_cache: false,
            cache_from: vec![],
            cache_to: None,
        },
        &bar,
    )
    .await
    .context("cannot build the stand-in for python:3.11-slim")?;
    Ok(())
}

/// Every scenario of every variant, `runs` times.
async fn sample_variants(p: &Prepared, plan: &mut Plan<'_>, variants: &[Variant], runs: usize) -> Result<Samples> {
    let docker = p.docker();
    let mut samples: BTreeMap<(Variant, &'static str), Vec<f64>> = BTreeMap::new();
    let mut sizes: BTreeMap<Variant, i64> = BTreeMap::new();
    for run in 1..=runs {
        // Each run starts at another row, so no row always follows the same
        // one (a build can be slowed down by what the one before it left).
        for &v in variants.iter().cycle().skip(run - 1).take(variants.len()) {
            plan.stamp = format!("run {run}, {}", rfc3339_now());
            // Cold: no layer cache and empty cache mounts (they live in the build cache).
            docker
                .prune_build(Some(PruneBuildOptionsBuilder::default().all(true).build()))
                .await
                .context("cannot prune the build cache")?;
            let cold = plan.build(docker, v, Change::None, "cold").await?;
            sizes.insert(v, cold.size_bytes);
            plan.push_cache(docker, v).await?;
            let warm = plan.build(docker, v, Change::None, "warm").await?;
            let code = plan.build(docker, v, Change::Code, "code-only").await?;
            let lock = plan.build(docker, v, Change::CodeAndLock, "lock change").await?;
            let startup = plan.startup(&p.sh, v)?;
            if !plan.json {
                eprintln!("{:<22} {:<12} {startup:>6.2} s", v.key(), "start-up");
            }
            if let Some((same, changed)) = plan.fresh_runner(docker, v).await? {
                samples.entry((v, "fresh_unchanged")).or_default().push(same);
                samples.entry((v, "fresh_lock_change")).or_default().push(changed);
            }
            for (scenario, seconds) in [
                ("cold", cold.seconds),
                ("warm", warm.seconds),
                ("code_only", code.seconds),
                ("lock_change", lock.seconds),
                ("startup", startup),
            ] {
                samples.entry((v, scenario)).or_default().push(seconds);
            }
        }
    }
    Ok((samples, sizes))
}

/// `cargo xtask build-images` with nothing changed: the inputs hash matches
/// the image's label and nothing is sent to BuildKit.
async fn noop_build_images(p: &Prepared, service: &Service, runs: usize) -> Result<Vec<f64>> {
    let only = Select { services: vec![service.name.clone()], quiet: true, ..Default::default() };
    images::build_all(p, &only).await?;
    let mut noop = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        images::build_all(p, &only).await?;
        noop.push(started.elapsed().as_secs_f64());
    }
    Ok(noop)
}

/// "A dependency added to <other>" (see [`DependencyAdded`]); `None` for a
/// stack of one service. The measured service's image must be current
/// first (`noop_build_images` builds it).
async fn dependency_added(p: &Prepared, service: &Service, dependency: &str) -> Result<Option<DependencyAdded>> {
    let Some(other) = p.stack.services.iter().find(|s| s.name != service.name) else { return Ok(None) };
    let copy = p.stack.root.join("target/bench-build/dependency-added");
    workspace::copy_project_files(&p.stack.root, &copy)?;
    let mut after = p.exports.clone();
    let changed = workspace::add_to(&p.sh, &copy, other, dependency).and_then(|()| {
        for s in [service, other] {
            after.insert(&s.name, workspace::export(&p.sh, &copy, s)?);
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&copy);
    changed.with_context(|| format!("adding {dependency} to {} in a copy of the workspace failed", other.name))?;
    let select = Select { services: vec![service.name.clone(), other.name.clone()], quiet: true, ..Default::default() };
    let (before, after) = (images::plan(p, &select).await?, images::plan_with(p, &after, &select).await?);
    let job = |plan: &images::Plan, name: &str| {
        plan.jobs.iter().find(|j| j.service() == name).map(|j| (j.inputs().to_owned(), j.builds())).unwrap_or_default()
    };
    let ((inputs_before, _), (inputs_after, rebuilt)) = (job(&before, &service.name), job(&after, &service.name));
    Ok(Some(DependencyAdded {
        other: other.name.clone(),
        dependency: dependency.to_owned(),
        other_changed: job(&before, &other.name).0 != job(&after, &other.name).0,
        inputs_before,
        inputs_after,
        rebuilt,
    }))
}

/// Met when the measured service's inputs stayed the same and it would not
/// be rebuilt, while the other service's inputs changed.
fn dependency_target(service: &str, d: &DependencyAdded) -> Target {
    let same = d.inputs_before == d.inputs_after;
    let short = |h: &str| h.get(..12).unwrap_or(h).to_owned();
    Target {
        what: format!("a dependency added to {}: {service}'s image inputs and build", d.other),
        value: format!(
            "inputs {} ({}), {}; {}'s inputs {}",
            if same { "unchanged" } else { "changed" },
            short(&d.inputs_after),
            if d.rebuilt { "rebuilt" } else { "not rebuilt" },
            d.other,
            if d.other_changed { "changed" } else { "unchanged" }
        ),
        goal: "unchanged, not rebuilt".into(),
        met: same && !d.rebuilt && d.other_changed,
    }
}

/// The targets the project holds itself to, judged on this run's medians.
fn targets(r: &Results) -> Vec<Target> {
    let fig = |v: Variant, s: &str| {
        r.rows.iter().find(|row| row.variant == v).and_then(|row| row.figures.get(s)).map(|f| f.median)
    };
    let size = |v: Variant| r.rows.iter().find(|row| row.variant == v).map(|row| row.size_bytes).unwrap_or(0);
    let (Some(cold), Some(notes_cold)) = (fig(Variant::OursUv, "cold"), fig(Variant::NotesUv, "cold")) else {
        return Vec::new();
    };
    let ratio = |a: f64, b: f64| a / b;
    let lock = ratio(
        fig(Variant::NotesUv, "lock_change").unwrap_or(f64::NAN),
        fig(Variant::OursUv, "lock_change").unwrap_or(f64::NAN),
    );
    let code =
        (fig(Variant::OursUv, "code_only").unwrap_or(f64::NAN), fig(Variant::NotesUv, "code_only").unwrap_or(f64::NAN));
    let start = ratio(
        fig(Variant::OursUv, "startup").unwrap_or(f64::NAN),
        fig(Variant::NotesUv, "startup").unwrap_or(f64::NAN),
    );
    vec![
        Target {
            what: "cold build, generated uv / notes' ADR".into(),
            value: format!("{:.2}x", ratio(cold, notes_cold)),
            goal: "≤ 1.25x".into(),
            met: ratio(cold, notes_cold) <= 1.25,
        },
        Target {
            what: "lock-file change, notes' ADR / generated uv (how many times faster)".into(),
            value: format!("{lock:.2}x"),
            goal: "≥ 1.2x".into(),
            met: lock >= 1.2,
        },
        Target {
            what: "code-only change, generated uv vs notes' ADR".into(),
            value: format!("{:.2} s vs {:.2} s", code.0, code.1),
            goal: "≤".into(),
            met: code.0 <= code.1,
        },
        Target {
            what: "fresh container start-up, generated uv / notes' ADR".into(),
            value: format!("{start:.2}x"),
            goal: "≤ 0.7x".into(),
            met: start <= 0.7,
        },
        Target {
            what: "image size, generated uv vs notes' ADR".into(),
            value: format!(
                "{} vs {}",
                engine::human_size(size(Variant::OursUv)),
                engine::human_size(size(Variant::NotesUv))
            ),
            goal: "smaller".into(),
            met: size(Variant::OursUv) < size(Variant::NotesUv),
        },
        Target {
            what: "no-op `cargo xtask build-images`".into(),
            value: format!("{:.2} s", r.noop_build_images.median),
            goal: "≤ 1 s".into(),
            met: r.noop_build_images.median <= 1.0,
        },
    ]
    .into_iter()
    .chain(fresh_targets(r, notes_cold))
    .chain(build_packages_targets(r))
    .collect()
}

/// The build-packages row against the generated one-stage file (the image
/// must not grow: no build package reaches it) and the notes' multi-stage
/// file (a lock change), when those rows were measured.
fn build_packages_targets(r: &Results) -> Vec<Target> {
    let row = |v: Variant| r.rows.iter().find(|row| row.variant == v);
    let (Some(ours), Some(one_stage), Some(notes)) =
        (row(Variant::OursUvBuildPackages), row(Variant::OursUv), row(Variant::NotesMultistagePip))
    else {
        return Vec::new();
    };
    let lock = |row: &Row| row.figures.get("lock_change").map(|f| f.median).unwrap_or(f64::NAN);
    let ratio = lock(notes) / lock(ours);
    vec![
        Target {
            what: "image size, generated uv with `build_packages` vs without".into(),
            value: format!("{} vs {}", engine::human_size(ours.size_bytes), engine::human_size(one_stage.size_bytes)),
            goal: "≤ (+1 MB)".into(),
            met: ours.size_bytes <= one_stage.size_bytes + 1_000_000,
        },
        Target {
            what: "lock-file change, notes' multi-stage pip / generated uv with `build_packages`".into(),
            value: format!("{ratio:.2}x"),
            goal: "≥ 1.2x".into(),
            met: ratio >= 1.2,
        },
    ]
}

/// The fresh-runner rows against the notes' cold build (their file has no
/// cache to reuse on a fresh runner), when they were measured.
fn fresh_targets(r: &Results, notes_cold: f64) -> Vec<Target> {
    let fig = |s: &str| {
        r.rows
            .iter()
            .find(|row| row.variant == Variant::OursUv)
            .map(|row| &row.figures[s])
            .filter(|f| !f.samples.is_empty())
    };
    let mut out = Vec::new();
    for (scenario, what, limit) in [
        ("fresh_unchanged", "fresh runner, lock unchanged (registry cache), generated uv / notes' ADR cold", 0.5),
        ("fresh_lock_change", "fresh runner, lock changed (registry cache), generated uv / notes' ADR cold", 1.25),
    ] {
        if let Some(f) = fig(scenario) {
            let ratio = f.median / notes_cold;
            out.push(Target {
                what: what.into(),
                value: format!("{ratio:.2}x"),
                goal: format!("≤ {limit}x"),
                met: ratio <= limit,
            });
        }
    }
    out
}

/// Edit -> serving: a new file in the service's package (so every run is a
/// real code change), `build-images` for that service (only the code layer
/// is rebuilt), `docker compose up --no-deps` (only its container is
/// recreated), until the new container answers its health path with 200.
async fn edit_to_serving(p: &Prepared, service: &Service, runs: usize) -> Result<Figure> {
    let (sh, docker, stack) = (&p.sh, p.docker(), &p.stack);
    let port = service.manifest.host_port.context("edit -> serving needs an http service with a host port")?;
    let port: u16 =
        p.env.get(&format!("{}_HOST_PORT", service.env_name())).and_then(|p| p.parse().ok()).unwrap_or(port);
    let path = service.manifest.health.path.clone().unwrap_or_else(|| "/health".to_owned());
    images::build_all(p, &Select { quiet: true, ..Default::default() }).await?;
    stack::start_and_wait(sh, docker, stack, 180, true).await?;
    let only = Select { services: vec![service.name.clone()], quiet: true, ..Default::default() };
    // An up-to-date image is skipped without touching BuildKit, so its layers
    // may be gone from the build cache (the cold builds above pruned it): one
    // forced, untimed build puts them back, as a developer's last build would.
    images::build_all(p, &Select { force: true, ..only.clone() }).await?;
    let package = service.manifest.packages.first().context("a service has a package")?;
    let file = stack.root.join(&service.dir).join(package).join("_bench_edit.py");
    let name = service.name.clone();
    let mut samples = Vec::new();
    let outcome: Result<()> = async {
        for run in 1..=runs {
            let started = Instant::now();
            std::fs::write(&file, format!("# edit made by cargo xtask bench-build, run {run} at {}\n", rfc3339_now()))?;
            images::build_all(p, &only).await?;
            let image = engine::image_id(docker, &format!("{}/{name}:latest", p.image_prefix())).await;
            cmd!(sh, "docker compose up --detach --no-build --pull never --no-deps {name}")
                .quiet()
                .ignore_stderr()
                .run()?;
            loop {
                let current = stack::states(docker, &stack.manifest.project).await?;
                let fresh = match current.get(&name) {
                    Some(s) => docker.inspect_container(&s.container, None).await.ok().and_then(|c| c.image) == image,
                    None => false,
                };
                if fresh && http_ok(port, &path).await {
                    break;
                }
                anyhow::ensure!(started.elapsed().as_secs() < 60, "{name} did not serve the change within 60 s");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let seconds = started.elapsed().as_secs_f64();
            eprintln!("edit -> serving, run {run}: {seconds:.2} s");
            samples.push(seconds);
        }
        Ok(())
    }
    .await;
    // The edit is undone (and the image rebuilt without it) even on failure.
    std::fs::remove_file(&file).ok();
    images::build_all(p, &only).await?;
    cmd!(sh, "docker compose up --detach --no-build --pull never --no-deps {name}").quiet().ignore_stderr().run()?;
    outcome?;
    Ok(Figure::of(samples))
}

const SECTION_START: &str = "<!-- bench-build: start (written by `cargo xtask bench-build`, do not edit) -->";
const SECTION_END: &str = "<!-- bench-build: end -->";
/// The `--via docker-cli` run has a section (and a chart) of its own, so
/// both paths stand side by side.
const CLI_SECTION_START: &str =
    "<!-- bench-build --via docker-cli: start (written by `cargo xtask bench-build --via docker-cli`, do not edit) -->";
const CLI_SECTION_END: &str = "<!-- bench-build --via docker-cli: end -->";

/// The markers of the section a run writes.
fn markers(via: Via) -> (&'static str, &'static str) {
    match via {
        Via::EngineApi => (SECTION_START, SECTION_END),
        Via::DockerCli => (CLI_SECTION_START, CLI_SECTION_END),
    }
}

/// How the figures are taken, under the table.
const HOW_MEASURED: &str =
    "\nHow it is measured. *Cold* prunes the whole build cache first, so cache mounts (uv's cache, the \
         venv cache) are empty too; *warm no-op* rebuilds the same context; *code-only* adds a Python file to the \
         service's package; *lock-file change* then also appends a comment line to the service's exported \
         requirements (`docker/<service>.requirements.txt`, what its image installs), which re-runs every \
         install step (the notes' `--no-cache` install downloads everything again; ours syncs the cached venv, so \
         only what changed is installed and byte-compiled). Here the package index answers through a fast local \
         proxy, so a full re-download is cheap; on a real network the cached venv wins by far more. *Start-up* is \
         `docker run` of a fresh container until every module of the service and its shared packages (and the \
         command's module, uvicorn) is imported: the notes' images compile bytecode at that moment, ours ship it. \
         *Fresh runner*: after the cold build, its image (built with inline cache) is pushed to a local registry \
         as the build cache; then the image is removed and the whole build cache pruned (an empty engine but for \
         the base images, which a CI runner pulls) and the same context is built with that cache (`cachefrom`): \
         *lock unchanged* pulls every layer, *lock changed* pulls what precedes the install step and installs \
         with empty cache mounts (they are never exported). Its goals compare with the notes' cold build, since \
         their file has no cache to reuse on a fresh runner either.\n\n\
         The notes' Dockerfiles (`docker/bench/`) are built as written there, with two adaptations for a machine \
         behind a TLS-inspecting proxy and without a registry: the install step mounts the proxy CA, and \
         `python:3.11-slim` / `ghcr.io/astral-sh/uv:latest` become the selected base images (a stand-in for the \
         slim image adds pip and drops Debian's PEP 668 marker; uv is the pinned version). Their context is laid \
         out as they expect (`src/<service>/requirements.txt` is the same exported, hashed requirements file). The \
         multi-stage note's \
         snippet cannot build as printed (it never copies its requirements file): that copy is added.\n";

fn markdown(r: &Results, svg: &Path) -> String {
    let mut m = String::new();
    let title = match r.via {
        Via::EngineApi => "## Builds: generated Dockerfile vs the design notes' (`cargo xtask bench-build`)",
        Via::DockerCli => {
            "## Builds through the docker CLI: the same rows as `docker build` runs them (`cargo xtask bench-build --via docker-cli`)"
        }
    };
    let _ = writeln!(m, "{title}\n");
    let _ = writeln!(
        m,
        "`cargo xtask bench-build --service {} --runs {}{}{}`, {}. Machine: {} cores, Docker Engine {} (BuildKit built in), \
         base image `{}`. Every row builds the same hashed requirements of {} (exported from uv.lock) in the same \
         run; each figure is the median of {} runs (min–max in brackets).\n",
        r.service,
        r.runs,
        if r.edit_to_serving.is_some() { " --edit-to-serving" } else { "" },
        if r.via == Via::DockerCli { " --via docker-cli" } else { "" },
        r.date,
        r.cores,
        r.engine,
        r.base_image,
        r.service,
        r.runs
    );
    let _ = writeln!(m, "![build times, generated vs the design notes' Dockerfiles]({})\n", svg.display());
    m.push_str(
        "| Dockerfile | cold | warm no-op | code-only | lock-file change | image size | start-up \
         | fresh runner, lock unchanged | fresh runner, lock changed |\n",
    );
    m.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for row in &r.rows {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            row.figures["cold"].cell(),
            row.figures["warm"].cell(),
            row.figures["code_only"].cell(),
            row.figures["lock_change"].cell(),
            engine::human_size(row.size_bytes),
            row.figures["startup"].cell(),
            row.figures["fresh_unchanged"].cell(),
            row.figures["fresh_lock_change"].cell()
        );
    }
    let _ = writeln!(
        m,
        "\nNo-op `cargo xtask build-images {}` (inputs unchanged, nothing sent to BuildKit): {}.\n",
        r.service,
        r.noop_build_images.cell()
    );
    if let Some(d) = &r.dependency_added {
        m.push_str(&dependency_added_line(&r.service, d));
    }
    if let Some(f) = &r.edit_to_serving {
        let _ = writeln!(
            m,
            "Edit -> serving on the running stack (`--edit-to-serving`: a new file in {}'s package, `build-images` \
             rebuilds only the code layer, compose recreates only that container, until it answers its health path): {}.\n",
            r.service,
            f.cell()
        );
    }
    if let Some(floor) = bytecode_floor(r) {
        m.push_str(&floor);
    }
    m.push_str("| target | this run | goal | met |\n| --- | --- | --- | --- |\n");
    for t in &r.targets {
        let _ = writeln!(m, "| {} | {} | {} | {} |", t.what, t.value, t.goal, if t.met { "yes" } else { "**no**" });
    }
    m.push_str(HOW_MEASURED);
    let (start, end) = markers(r.via);
    format!("{start}\n{m}{end}\n")
}

/// The Markdown line of the row "a dependency added to <other>".
fn dependency_added_line(service: &str, d: &DependencyAdded) -> String {
    let t = dependency_target(service, d);
    format!(
        "A dependency added to {other} (`uv add --package {other} {dep}` in a copy of the workspace's pyprojects and \
         uv.lock, then the exports of that lock planned against this run's images, as `build-images` would): {service}: \
         {value}.\n\n",
        other = d.other,
        dep = d.dependency,
        value = t.value
    )
}

/// What byte-compiling costs and buys, from this run's medians: the
/// generated uv build with and without bytecode against the notes' ADR.
fn bytecode_floor(r: &Results) -> Option<String> {
    let fig = |v: Variant, s: &str| r.rows.iter().find(|row| row.variant == v).map(|row| row.figures[s].median);
    let (cold, bare_cold, notes_cold) =
        (fig(Variant::OursUv, "cold")?, fig(Variant::OursUvNoBytecode, "cold")?, fig(Variant::NotesUv, "cold")?);
    let (start, bare_start, notes_start) = (
        fig(Variant::OursUv, "startup")?,
        fig(Variant::OursUvNoBytecode, "startup")?,
        fig(Variant::NotesUv, "startup")?,
    );
    let mut text = format!(
        "Where the cold build's time goes, in this run: without bytecode (`bytecode: false`) the generated \
         Dockerfile builds cold in {bare_cold:.2} s ({:.2}x the ADR's) and a fresh container starts in \
         {bare_start:.2} s ({:.2}x). Byte-compiling the dependencies adds {:.2} s to the cold build (then \
         {:.2}x) and saves {:.2} s at every container start (then {:.2}x).",
        bare_cold / notes_cold,
        bare_start / notes_start,
        cold - bare_cold,
        cold / notes_cold,
        bare_start - start,
        start / notes_start,
    );
    let fresh = |v: Variant| fig(v, "fresh_lock_change");
    if let (Some(changed), Some(bare_changed), Some(notes_changed)) =
        (fresh(Variant::OursUv), fresh(Variant::OursUvNoBytecode), fresh(Variant::NotesUv))
    {
        let _ = write!(
            text,
            " A fresh runner whose lock changed installs cold as well (cache mounts are never part of a registry \
             cache): {changed:.2} s with bytecode ({:.2}x the ADR's cold build), {bare_changed:.2} s without ({:.2}x); \
             the ADR's file on the same fresh runner, a cold install too, took {notes_changed:.2} s (ours {:.2}x that).",
            changed / notes_cold,
            bare_changed / notes_cold,
            changed / notes_changed,
        );
    }
    if cold / notes_cold > 1.25 && bare_cold / notes_cold <= 1.25 {
        text.push_str(
            " Compiling is CPU work on the build machine's cores: here a cold build cannot both ship bytecode \
             and stay within 1.25x of an install that compiles nothing from a fast local index. The default keeps \
             the bytecode: a cold build is paid once per cache, a start at every restart, scale-out and deploy.",
        );
    }
    text.push_str("\n\n");
    Some(text)
}

/// `existing` with its build section replaced (or appended): the other
/// sections, written by other commands, stay as they are.
fn replace_section(existing: &str, section: &str, via: Via) -> String {
    let (start, end_marker) = markers(via);
    if let (Some(a), Some(b)) = (existing.find(start), existing.find(end_marker)) {
        let end = b + end_marker.len();
        let rest = existing[end..].strip_prefix('\n').unwrap_or(&existing[end..]);
        return format!("{}{section}{rest}", &existing[..a]);
    }
    let mut out = existing.trim_end().to_owned();
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(section);
    out
}

const COLORS: [&str; 7] = ["#1f77b4", "#6baed6", "#d62728", "#2ca02c", "#ff9896", "#9467bd", "#8c564b"];

/// A bar chart, one panel per scenario, one bar per Dockerfile (median) with
/// a min–max whisker. Plain SVG 1.1: renders in browsers and on GitHub.
fn chart(r: &Results) -> String {
    let panels = ["cold", "code_only", "lock_change", "startup"];
    // Labels are right-aligned before `left`: wide enough for the longest
    // (about 7 px a character at 12 px sans-serif).
    let longest = r.rows.iter().map(|row| escape(row.label).chars().count()).max().unwrap_or(10) as f64;
    let (left, bar_h, gap) = (longest * 7.0 + 20.0, 14.0, 4.0);
    let width = left + 500.0;
    let plot_w = width - left - 70.0;
    let panel_h = 28.0 + r.rows.len() as f64 * (bar_h + gap) + 12.0;
    let height = 40.0 + panels.len() as f64 * panel_h + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>");
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{} image: seconds, median of {} runs (whisker: min–max), {} cores, engine {}</text>",
        escape(&r.service),
        r.runs,
        r.cores,
        escape(&r.engine)
    );
    for (p, scenario) in panels.iter().enumerate() {
        let top = 40.0 + p as f64 * panel_h;
        let max = r.rows.iter().map(|row| row.figures[scenario].max).fold(0.0_f64, f64::max).max(0.01);
        let scale = plot_w / max;
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
            top + 16.0,
            escape(scenario_label(scenario))
        );
        for (i, row) in r.rows.iter().enumerate() {
            let f = &row.figures[scenario];
            let y = top + 26.0 + i as f64 * (bar_h + gap);
            let mid = y + bar_h / 2.0;
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                left - 8.0,
                mid + 4.0,
                escape(row.label)
            );
            let _ = writeln!(
                s,
                "<rect x=\"{left}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bar_h}\" fill=\"{}\"/>",
                (f.median * scale).max(0.5),
                COLORS[i % COLORS.len()]
            );
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" y1=\"{mid:.1}\" x2=\"{:.1}\" y2=\"{mid:.1}\" stroke=\"#333\" stroke-width=\"1.5\"/>",
                left + f.min * scale,
                left + f.max * scale
            );
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\">{:.2} s</text>",
                left + f.max.max(f.median) * scale + 6.0,
                mid + 4.0,
                f.median
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        let f = Figure::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((f.median, f.min, f.max), (2.0, 1.0, 3.0));
        assert_eq!(Figure::of(vec![1.0, 2.0, 4.0, 3.0]).median, 2.5);
        assert_eq!(f.cell(), "2.00 s (1.00–3.00)");
    }

    #[test]
    fn only_the_build_section_is_replaced() {
        let old = format!("# Benchmarks\n\n## Load\nkept\n\n{SECTION_START}\nold\n{SECTION_END}\n## After\nkept too\n");
        let new = replace_section(&old, &format!("{SECTION_START}\nnew\n{SECTION_END}\n"), Via::EngineApi);
        assert_eq!(
            new,
            format!("# Benchmarks\n\n## Load\nkept\n\n{SECTION_START}\nnew\n{SECTION_END}\n## After\nkept too\n")
        );
        let appended = replace_section("# Benchmarks\n", "S\n", Via::EngineApi);
        assert_eq!(appended, "# Benchmarks\n\nS\n");
    }

    #[test]
    fn the_cli_output_gives_steps_cache_hits_and_what_ran() {
        let log = "#1 [internal] load build definition from api-server.Dockerfile\n#1 DONE 0.1s\n\
                   #5 [runtime 1/6] FROM docker.io/pysvc/python:3.11-bookworm\n#5 DONE 0.0s\n\
                   #6 [runtime 2/6] WORKDIR /app\n#6 CACHED\n\
                   #9 [runtime 3/6] RUN --mount=type=cache,id=x uv pip sync\n#9 0.5 Installed 18 packages\n#9 DONE 1.9s\n\
                   #10 importing cache manifest from r/a:cache\n#10 ERROR: not found\n";
        let (steps, cached, ran) = cli_counts(log);
        assert_eq!((steps, cached), (3, 1));
        assert_eq!(ran, ["[runtime 3/6] RUN --mount=type=cache,id=x uv pip sync"]);
        let spec = engine::BuildSpec {
            tag: "t:1".into(),
            extra_tags: vec![],
            dockerfile: "docker/a.Dockerfile".into(),
            context: vec![],
            build_args: BTreeMap::from([("BASE_IMAGE".into(), "b".into())]),
            labels: BTreeMap::new(),
            no_cache: false,
            cache_from: vec!["r/a:cache".into()],
            cache_to: None,
        };
        let args = cli_args(&spec, Path::new("/ctx"));
        let want = "build --progress plain -f /ctx/docker/a.Dockerfile -t t:1 --build-arg BASE_IMAGE=b --cache-from r/a:cache /ctx";
        assert_eq!(args.join(" "), want);
    }

    #[test]
    fn the_cli_chosen_builds_with_buildkit() {
        let found = |list: &[(&str, &str, bool)]| -> Vec<(String, String, bool)> {
            list.iter().map(|(p, v, b)| (p.to_string(), v.to_string(), *b)).collect()
        };
        // Docker 28 without buildx refuses DOCKER_BUILDKIT=1; Debian's 20.10 client builds with it.
        let here = found(&[("docker", "28.2.2", false), ("/usr/bin/docker", "20.10.24+dfsg1", false)]);
        assert_eq!(choose_client(&here).as_deref(), Some("/usr/bin/docker"));
        let with_buildx = found(&[("docker", "28.2.2", true), ("/usr/bin/docker", "20.10.24", false)]);
        assert_eq!(choose_client(&with_buildx).as_deref(), Some("docker"));
        assert_eq!(choose_client(&found(&[("docker", "28.2.2", false)])), None);
    }

    #[test]
    fn chart_is_well_formed_svg() {
        let figure = Figure::of(vec![1.0, 2.0, 3.0]);
        let row = |v: Variant| Row {
            variant: v,
            label: v.label(),
            size_bytes: 1,
            figures: SCENARIOS.iter().map(|&s| (s, figure.clone())).collect(),
        };
        let r = Results {
            service: "api-server".into(),
            runs: 3,
            date: "d".into(),
            cores: 2,
            engine: "20.10".into(),
            base_image: "b".into(),
            via: Via::EngineApi,
            registry: Some("127.0.0.1:5000".into()),
            rows: VARIANTS.iter().map(|&v| row(v)).collect(),
            noop_build_images: figure.clone(),
            edit_to_serving: None,
            dependency_added: None,
            targets: Vec::new(),
        };
        let svg = chart(&r);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 1 + 4 * VARIANTS.len());
        assert!(!svg.contains('`') && svg.contains("design notes' ADR"), "labels are plain text: {svg}");
        let t = targets(&r);
        assert_eq!(t.len(), 10, "the fresh-runner and build-packages targets are there when measured");
        assert!(t[6].what.starts_with("fresh runner, lock unchanged") && t[6].value == "1.00x" && !t[6].met);
        assert!(t[7].goal == "≤ 1.25x" && t[7].met);
        assert!(t[8].what.contains("with `build_packages` vs without") && t[8].met, "same size: {:?}", t[8]);
        assert!(t[9].what.starts_with("lock-file change, notes' multi-stage") && t[9].value == "1.00x" && !t[9].met);
        let section = markdown(&r, Path::new("docs/bench-build.svg"));
        assert!(section.contains("| fresh runner, lock unchanged | fresh runner, lock changed |"), "{section}");
        let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(json["rows"][0]["variant"], "ours-uv");
        assert_eq!(json["rows"][2]["figures"]["cold"]["median"], 2.0);
    }

    #[test]
    fn a_dependency_added_elsewhere_is_met_only_when_nothing_of_this_service_changes() {
        let added = |after: &str, rebuilt: bool, other_changed: bool| DependencyAdded {
            other: "search-worker".into(),
            dependency: "six".into(),
            inputs_before: "a".repeat(64),
            inputs_after: after.to_owned(),
            rebuilt,
            other_changed,
        };
        let same = "a".repeat(64);
        let t = dependency_target("api-server", &added(&same, false, true));
        assert!(t.met, "{t:?}");
        assert_eq!(t.what, "a dependency added to search-worker: api-server's image inputs and build");
        assert_eq!(t.value, "inputs unchanged (aaaaaaaaaaaa), not rebuilt; search-worker's inputs changed");
        assert!(!dependency_target("api-server", &added(&"b".repeat(64), true, true)).met);
        assert!(!dependency_target("api-server", &added(&same, true, true)).met, "rebuilt with the same inputs");
        assert!(!dependency_target("api-server", &added(&same, false, false)).met, "the dependency changed nothing");
        let line = dependency_added_line("api-server", &added(&same, false, true));
        assert!(
            line.starts_with("A dependency added to search-worker (`uv add --package search-worker six`"),
            "{line}"
        );
        assert!(line.ends_with(
            "api-server: inputs unchanged (aaaaaaaaaaaa), not rebuilt; search-worker's inputs changed.\n\n"
        ));
    }
}
