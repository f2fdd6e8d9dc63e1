//! `cargo xtask build-images`: builds every service image through the Docker
//! Engine API (bollard, BuildKit), in parallel, each from a minimal context
//! the xtask assembles itself. Images whose inputs are unchanged are skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::Docker;
use clap::Args;
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar};
use xshell::{cmd, Shell};

use crate::context::ContextTar;
use crate::dotenv::DotEnv;
use crate::engine;
use crate::engine::spinner_style;
use crate::gen::{self, PROXY_CA_DIR, PROXY_CA_FILE};
use crate::manifest::{self, Installer, Service, Stack};

pub const INPUTS_LABEL: &str = "pysvc.inputs";

/// Build every service image (BuildKit, through the Engine API) with progress and a size report.
#[derive(Args, Debug, Default, Clone)]
pub struct BuildImages {
    /// Only these services (default: all).
    pub services: Vec<String>,
    /// Rebuild even when the inputs are unchanged.
    #[arg(long)]
    pub force: bool,
    /// Do not use BuildKit's layer cache (cache mounts still apply).
    #[arg(long)]
    pub no_cache: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Push the tags to this registry (host:port) after building.
    #[arg(long, value_name = "REGISTRY")]
    pub push: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageResult {
    pub service: String,
    pub tags: Vec<String>,
    pub built: bool,
    pub seconds: f64,
    pub steps: usize,
    pub cached: usize,
    pub size_bytes: i64,
}

impl BuildImages {
    pub fn run(self, sh: &Shell, root: &Path) -> Result<()> {
        let stack = manifest::load(root)?;
        let rt = engine::runtime()?;
        // What `up` does first: engine (offering `setup`), `.env`, and the
        // base images it selects, pulled or, without a registry, built
        // locally. A first `build-images` on an air-gapped machine works.
        let docker = crate::stack::prepare(sh, root, &rt)?;
        rt.block_on(async {
            let results = build_all(sh, &docker, &stack, &self).await?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                print_table(&results);
            }
            if let Some(registry) = &self.push {
                push_all(&docker, registry, &results).await?;
            }
            Ok(())
        })
    }
}

/// Short git revision, with `-dirty` when the work tree has changes.
pub fn revision(sh: &Shell) -> (String, String) {
    let full = cmd!(sh, "git rev-parse HEAD").quiet().ignore_stderr().read().unwrap_or_else(|_| "unknown".to_owned());
    let short =
        cmd!(sh, "git rev-parse --short HEAD").quiet().ignore_stderr().read().unwrap_or_else(|_| "unknown".to_owned());
    let dirty = cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|s| !s.trim().is_empty())
        .unwrap_or(false);
    (full, if dirty { format!("{short}-dirty") } else { short })
}

/// The proxy CA bundle to hand the installers, if any: `PYSVC_PROXY_CA`,
/// then `docker/ca/proxy-ca.crt`, then the host's `SSL_CERT_FILE`/`PIP_CERT`.
pub fn proxy_ca(root: &Path) -> Option<Vec<u8>> {
    let candidates = [
        std::env::var("PYSVC_PROXY_CA").ok(),
        Some(root.join(PROXY_CA_FILE).to_string_lossy().into_owned()),
        std::env::var("SSL_CERT_FILE").ok(),
        std::env::var("PIP_CERT").ok(),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|p| std::fs::read(p).ok().filter(|d| !d.is_empty()))
        .map(crate::proxy_ca::with_public_roots)
}

/// The build arguments every service image gets, from `.env` or the upstream defaults.
pub fn base_args(stack: &Stack, env: &DotEnv) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "BASE_IMAGE".to_owned(),
            env.get("PYTHON_BASE_IMAGE").filter(|v| !v.is_empty()).unwrap_or_else(|| gen::upstream_python_image(stack)),
        ),
        (
            "UV_IMAGE".to_owned(),
            env.get("UV_IMAGE").filter(|v| !v.is_empty()).unwrap_or_else(|| gen::upstream_uv_image(stack)),
        ),
    ])
}

pub fn image_prefix(stack: &Stack, env: &DotEnv) -> String {
    env.get("IMAGE_PREFIX").filter(|v| !v.is_empty()).unwrap_or_else(|| stack.manifest.project.clone())
}

/// The context of one service image: its Dockerfile (as rendered for
/// `installer`), the allow-listed paths and the proxy-CA folder.
pub fn service_context(
    stack: &Stack,
    service: &Service,
    installer: Installer,
    ca: Option<&[u8]>,
) -> Result<ContextTar> {
    let root = &stack.root;
    let mut ctx = ContextTar::default();
    ctx.add_bytes(&service.dockerfile_path(), 0o644, gen::dockerfile(stack, service, installer).into_bytes());
    ctx.add_path(root, &format!("{PROXY_CA_DIR}/README.md"))?;
    for path in service.context_paths(&stack.manifest) {
        ctx.add_path(root, &path)?;
    }
    if let Some(ca) = ca {
        ctx.add_unhashed(PROXY_CA_FILE, ca.to_vec());
    }
    Ok(ctx)
}

pub async fn build_all(sh: &Shell, docker: &Docker, stack: &Stack, opts: &BuildImages) -> Result<Vec<ImageResult>> {
    for name in &opts.services {
        if !stack.services.iter().any(|s| &s.name == name) {
            bail!(
                "no service named {name:?}; services: {}",
                stack.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let env = DotEnv::load_or_create(&stack.root)?;
    let args = base_args(stack, &env);
    let mut ids = Vec::new();
    for (arg, image) in &args {
        match engine::image_id(docker, image).await {
            Some(id) => ids.push(format!("{arg}={image}@{id}")),
            None if image.starts_with("pysvc/") => bail!(
                "base image {image} is missing: run `cargo xtask base-images` (or `cargo xtask up`, which builds it)"
            ),
            None => ids.push(format!("{arg}={image}")),
        }
    }
    let (full_rev, short_rev) = revision(sh);
    let prefix = image_prefix(stack, &env);
    let ca = proxy_ca(&stack.root);
    let source = cmd!(sh, "git remote get-url origin")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_else(|_| stack.root.display().to_string());
    let created = rfc3339_now();
    let multi = MultiProgress::new();
    if opts.json {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }

    let mut jobs = Vec::new();
    for service in stack.services.iter().filter(|s| opts.services.is_empty() || opts.services.contains(&s.name)) {
        let mut ctx = service_context(stack, service, service.manifest.installer, ca.as_deref())?;
        let hash = ctx.hash(&ids);
        let latest = format!("{prefix}/{}:latest", service.name);
        let versioned = format!("{prefix}/{}:{short_rev}", service.name);
        let tags = vec![versioned.clone(), latest.clone()];
        let current = engine::image_label(docker, &latest, INPUTS_LABEL).await;
        if !opts.force && current.as_deref() == Some(hash.as_str()) {
            let (repo, tag) = versioned.rsplit_once(':').expect("tag has a colon");
            docker.tag_image(&latest, Some(TagImageOptionsBuilder::default().repo(repo).tag(tag).build())).await.ok();
            let size = docker.inspect_image(&latest).await.ok().and_then(|i| i.size).unwrap_or_default();
            if !opts.json {
                println!("{}: up to date (inputs {}), not rebuilt", service.name, &hash[..12]);
            }
            jobs.push(futures_util::future::Either::Left(std::future::ready(Ok(ImageResult {
                service: service.name.clone(),
                tags,
                built: false,
                seconds: 0.0,
                steps: 0,
                cached: 0,
                size_bytes: size,
            }))));
            continue;
        }
        let labels = BTreeMap::from([
            (INPUTS_LABEL.to_owned(), hash),
            ("org.opencontainers.image.source".to_owned(), source.clone()),
            ("org.opencontainers.image.revision".to_owned(), full_rev.clone()),
            ("org.opencontainers.image.created".to_owned(), created.clone()),
            ("org.opencontainers.image.version".to_owned(), short_rev.clone()),
        ]);
        let mut build_args = args.clone();
        if service.manifest.installer == Installer::Pip {
            build_args.remove("UV_IMAGE");
        }
        let spec = engine::BuildSpec {
            tag: latest,
            extra_tags: vec![versioned],
            dockerfile: service.dockerfile_path(),
            context: ctx.into_tar()?,
            build_args,
            labels,
            no_cache: opts.no_cache,
        };
        let bar = multi.add(ProgressBar::new_spinner().with_prefix(service.name.clone()));
        bar.set_style(spinner_style());
        bar.enable_steady_tick(Duration::from_millis(120));
        let docker = docker.clone();
        let name = service.name.clone();
        jobs.push(futures_util::future::Either::Right(async move {
            let report = engine::build(&docker, spec, &bar).await;
            match &report {
                Ok(r) => bar
                    .finish_with_message(format!("built in {:.1}s, {}/{} steps cached", r.seconds, r.cached, r.steps)),
                Err(_) => bar.finish_with_message("failed"),
            }
            let r = report?;
            Ok(ImageResult {
                service: name,
                tags,
                built: true,
                seconds: r.seconds,
                steps: r.steps,
                cached: r.cached,
                size_bytes: r.size_bytes,
            })
        }));
    }
    // Independent images build concurrently; BuildKit shares the base layers.
    let outcomes: Vec<Result<ImageResult>> = futures_util::future::join_all(jobs).await;
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(r) => results.push(r),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n\n"));
    }
    Ok(results)
}

pub fn print_table(results: &[ImageResult]) {
    println!("\n{:<16} {:<40} {:>10} {:>8} {:>8}", "SERVICE", "TAG", "SIZE", "TIME", "CACHED");
    for r in results {
        let time = if r.built { format!("{:.1}s", r.seconds) } else { "skipped".to_owned() };
        let cached = if r.built { format!("{}/{}", r.cached, r.steps) } else { "-".to_owned() };
        println!(
            "{:<16} {:<40} {:>10} {:>8} {:>8}",
            r.service,
            r.tags[0],
            engine::human_size(r.size_bytes),
            time,
            cached
        );
    }
}

async fn push_all(docker: &Docker, registry: &str, results: &[ImageResult]) -> Result<()> {
    for r in results {
        for tag in &r.tags {
            let remote = format!("{registry}/{tag}");
            let (repo, version) = remote.rsplit_once(':').expect("tag has a colon");
            docker
                .tag_image(tag, Some(TagImageOptionsBuilder::default().repo(repo).tag(version).build()))
                .await
                .with_context(|| format!("cannot tag {tag} as {remote}"))?;
            let mut stream =
                docker.push_image(repo, Some(PushImageOptionsBuilder::default().tag(version).build()), None);
            while let Some(item) = stream.next().await {
                let info =
                    item.with_context(|| format!("pushing {remote} failed: is the registry at {registry} running?"))?;
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    bail!("pushing {remote} failed: {err}");
                }
            }
            println!("pushed {remote}");
        }
    }
    Ok(())
}

/// Current UTC time as RFC 3339, without a date crate.
pub fn rfc3339_now() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
