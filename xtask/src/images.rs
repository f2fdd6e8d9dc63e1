//! Building the service images, shared by `build-images`, `up` and the
//! benches: first a plan (what to build, from which context and with which
//! labels, and what is up to date), then its effects (tags and builds,
//! independent images in parallel through the Engine API with BuildKit).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bollard::query_parameters::TagImageOptionsBuilder;
use bollard::Docker;
use indicatif::{MultiProgress, ProgressBar};
use xshell::{cmd, Shell};

use crate::buildhint;
use crate::context::ContextTar;
use crate::dotenv::DotEnv;
use crate::engine::caps::RegistryCache;
use crate::engine::{self, spinner_style};
use crate::gen::{self, PROXY_CA_DIR, PROXY_CA_FILE};
use crate::manifest::{self, Installer, Service, Stack};
use crate::prepared::Prepared;
use crate::provision;
use crate::util::rfc3339_now;
use crate::workspace::Exports;

pub const INPUTS_LABEL: &str = "pysvc.inputs";

/// Which images to build, and how.
#[derive(Debug, Default, Clone)]
pub struct Select {
    /// Only these services (default: all).
    pub services: Vec<String>,
    /// Rebuild even when the inputs are unchanged.
    pub force: bool,
    /// Do not use BuildKit's layer cache (cache mounts still apply).
    pub no_cache: bool,
    /// No progress bars and no per-image lines (for `--json` and the benches).
    pub quiet: bool,
    /// Cache repositories (`<registry>/<path>`) whose `<service>:cache` images
    /// BuildKit may reuse layers from.
    pub cache_from: Vec<String>,
    /// The cache repository to fill. With BuildKit's inline cache the built
    /// images are pushed there afterwards (`push_cache`); with buildah's
    /// layer cache the build itself pushes each step there, so every
    /// selected image is built (from its local cache when unchanged).
    pub cache_to: Option<String>,
}

/// The tag of a service's cache image in a cache repository.
pub const CACHE_TAG: &str = "cache";

/// The cache image of `service` in the cache repository `repo`
/// (`--cache-from`/`--cache-to`): `<repo>/<service>:cache`.
pub fn cache_ref(repo: &str, service: &str) -> String {
    format!("{}/{service}:{CACHE_TAG}", repo.trim_end_matches('/'))
}

/// buildah's layer cache of `service` in the cache repository `repo`: a
/// repository whose tags are the steps' cache keys.
pub fn layer_cache_repo(repo: &str, service: &str) -> String {
    format!("{}/{service}", repo.trim_end_matches('/'))
}

/// What a build is told to reuse from the cache repository `repo`.
fn cache_source(mode: RegistryCache, repo: &str, service: &str) -> String {
    match mode {
        RegistryCache::Layers => layer_cache_repo(repo, service),
        _ => cache_ref(repo, service),
    }
}

/// Checks a `--cache-from`/`--cache-to` value: an image repository, no tag.
pub fn check_cache_repo(repo: &str) -> Result<()> {
    let probe = cache_ref(repo, "service");
    if let Err(e) = crate::manifest::validate::image_reference(&probe) {
        bail!("{repo:?} is not a cache repository (write it like 127.0.0.1:5000/pysvc): {e}");
    }
    Ok(())
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
    /// The Dockerfile steps that ran (the others came from a cache).
    pub ran: Vec<String>,
    /// The image's SBOM (CycloneDX JSON), also inside the image at `sbom_in_image`.
    pub sbom: String,
    pub sbom_in_image: String,
}

/// Where `build-images` writes each image's SBOM (the same bytes the image holds).
pub const SBOM_DIR: &str = "target/sbom";

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

/// The commit's time (RFC 3339): the image's `created` label, so the same
/// commit gives the same labels. Outside git, the current time.
pub fn commit_time(sh: &Shell) -> String {
    cmd!(sh, "git show -s --format=%cI HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(rfc3339_now)
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

/// The context of one service image: its Dockerfile (as rendered for
/// `installer`), its exported requirements (as rendered from `exports`) and
/// its SBOM (from the same export, for `base`, the image it is really built
/// on), the allow-listed code and the proxy-CA folder. Neither `uv.lock` nor
/// any pyproject is in it: another service's dependencies are not an input.
pub fn service_context(
    stack: &Stack,
    service: &Service,
    installer: Installer,
    exports: &Exports,
    base: &gen::BaseImage,
    ca: Option<&[u8]>,
) -> Result<ContextTar> {
    let root = &stack.root;
    let mut ctx = ContextTar::default();
    ctx.add_bytes(&service.dockerfile_path(), 0o644, gen::dockerfile(stack, service, installer).into_bytes());
    ctx.add_bytes(&service.requirements_path(), 0o644, gen::requirements(service, exports).into_bytes());
    ctx.add_bytes(&gen::sbom_path(service), 0o644, service_sbom(stack, service, exports, base)?.into_bytes());
    ctx.add_path(root, &format!("{PROXY_CA_DIR}/README.md"))?;
    for path in service.context_paths(&stack.manifest).iter().filter(|p| **p != service.requirements_path()) {
        ctx.add_path(root, path)?;
    }
    if let Some(ca) = ca {
        ctx.add_unhashed(PROXY_CA_FILE, ca.to_vec());
    }
    Ok(ctx)
}

/// The SBOM of a service image built on `base`, from its export of the
/// lock; an export that does not parse is an error naming its line.
pub fn service_sbom(stack: &Stack, service: &Service, exports: &Exports, base: &gen::BaseImage) -> Result<String> {
    let path = service.requirements_path();
    let requirements = gen::parse_requirements(exports.get(&service.name))
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))
        .context("cannot make the SBOM")?;
    Ok(gen::sbom(stack, service, &requirements, base))
}

/// One service image in a [`Plan`].
pub enum Job {
    /// Inputs unchanged: the image is only tagged with this revision too.
    UpToDate { service: String, tags: Vec<String>, hash: String, sbom: Sbom },
    /// Inputs changed (or `force`): built from `spec`.
    Build { service: String, tags: Vec<String>, spec: engine::BuildSpec, sbom: Sbom },
}

/// A service image's SBOM: its text, and where it goes next to the build
/// output and inside the image.
pub struct Sbom {
    pub text: String,
    pub file: std::path::PathBuf,
    pub in_image: String,
}

impl Sbom {
    /// Writes it next to the build output; its path, for the report.
    fn write(&self) -> Result<String> {
        crate::util::write_atomic(&self.file, &self.text)?;
        Ok(self.file.display().to_string())
    }
}

impl Job {
    pub fn service(&self) -> &str {
        match self {
            Job::UpToDate { service, .. } | Job::Build { service, .. } => service,
        }
    }

    /// The image's inputs hash (its `pysvc.inputs` label once built).
    pub fn inputs(&self) -> &str {
        match self {
            Job::UpToDate { hash, .. } => hash,
            Job::Build { spec, .. } => spec.labels.get(INPUTS_LABEL).map(String::as_str).unwrap_or_default(),
        }
    }

    pub fn builds(&self) -> bool {
        matches!(self, Job::Build { .. })
    }
}

/// What building the selected images will do, decided before anything is
/// tagged or built.
pub struct Plan {
    pub jobs: Vec<Job>,
    no_cache: bool,
    quiet: bool,
}

/// The values every image of one run shares.
struct Common {
    args: BTreeMap<String, String>,
    /// `ARG=image@id` of every base image: part of each inputs hash.
    base_ids: Vec<String>,
    full_rev: String,
    short_rev: String,
    prefix: String,
    ca: Option<Vec<u8>>,
    source: String,
    created: String,
    /// The Python base image as the SBOMs name it (reference and id).
    base: gen::BaseImage,
    registry_cache: RegistryCache,
}

/// Plans the builds of `select` (read-only: it asks the engine what exists).
pub async fn plan(p: &Prepared, select: &Select) -> Result<Plan> {
    plan_with(p, &p.exports, select).await
}

/// [`plan`] with other exports than the prepared ones (a bench's "what if
/// this dependency were added"): nothing is built or written.
pub async fn plan_with(p: &Prepared, exports: &Exports, select: &Select) -> Result<Plan> {
    let stack = &p.stack;
    for name in &select.services {
        if !stack.services.iter().any(|s| &s.name == name) {
            bail!(
                "no service named {name:?}; services: {}",
                stack.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    for repo in select.cache_from.iter().chain(&select.cache_to) {
        check_cache_repo(repo)?;
    }
    let common = common(p).await?;
    if common.registry_cache == RegistryCache::Unsupported
        && (!select.cache_from.is_empty() || select.cache_to.is_some())
    {
        bail!(
            "this engine has no registry build cache (Podman before 4.3 ignores --cache-from and --cache-to): \
             build without them, or use Docker or Podman 4.3 or later"
        );
    }
    let mut jobs = Vec::new();
    for service in stack.services.iter().filter(|s| select.services.is_empty() || select.services.contains(&s.name)) {
        jobs.push(job(p, &common, exports, service, select).await?);
    }
    Ok(Plan { jobs, no_cache: select.no_cache, quiet: select.quiet })
}

async fn common(p: &Prepared) -> Result<Common> {
    let args = base_args(&p.stack, &p.env);
    // Images built before inline cache was written carry no cache
    // metadata: this entry makes them stale once.
    let mut base_ids = vec![format!("{}=1", engine::INLINE_CACHE_ARG)];
    for (arg, image) in &args {
        match engine::image_id(p.docker(), image).await {
            Some(id) => base_ids.push(format!("{arg}={image}@{id}")),
            None if image.starts_with("pysvc/") => bail!(
                "base image {image} is missing: run `cargo xtask base-images` (or `cargo xtask up`, which builds it)"
            ),
            None => base_ids.push(format!("{arg}={image}")),
        }
    }
    let (full_rev, short_rev) = revision(&p.sh);
    let base_ref = args["BASE_IMAGE"].clone();
    let base = gen::BaseImage { id: engine::image_id(p.docker(), &base_ref).await, reference: base_ref };
    let source = cmd!(p.sh, "git remote get-url origin")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_else(|_| p.stack.root.display().to_string());
    Ok(Common {
        args,
        base_ids,
        full_rev,
        short_rev,
        prefix: p.image_prefix(),
        ca: proxy_ca(&p.stack.root),
        registry_cache: engine::caps::of(p.docker()).await?.registry_cache(),
        source,
        created: commit_time(&p.sh),
        base,
    })
}

async fn job(p: &Prepared, c: &Common, exports: &Exports, service: &Service, select: &Select) -> Result<Job> {
    let mut ctx = service_context(&p.stack, service, service.manifest.installer, exports, &c.base, c.ca.as_deref())?;
    let hash = ctx.hash(&c.base_ids);
    let latest = format!("{}/{}:latest", c.prefix, service.name);
    let versioned = format!("{}/{}:{}", c.prefix, service.name, c.short_rev);
    let tags = vec![versioned.clone(), latest.clone()];
    let sbom = Sbom {
        text: service_sbom(&p.stack, service, exports, &c.base)?,
        file: p.stack.root.join(SBOM_DIR).join(format!("{}.cdx.json", service.name)),
        in_image: gen::sbom_in_image(service),
    };
    let current = engine::image_label(p.docker(), &latest, INPUTS_LABEL).await;
    let layer_cache = c.registry_cache == RegistryCache::Layers;
    let fill_cache = layer_cache && select.cache_to.is_some();
    if !select.force && !fill_cache && current.as_deref() == Some(hash.as_str()) {
        return Ok(Job::UpToDate { service: service.name.clone(), tags, hash, sbom });
    }
    let labels = BTreeMap::from([
        (INPUTS_LABEL.to_owned(), hash),
        ("org.opencontainers.image.source".to_owned(), c.source.clone()),
        ("org.opencontainers.image.revision".to_owned(), c.full_rev.clone()),
        ("org.opencontainers.image.created".to_owned(), c.created.clone()),
        ("org.opencontainers.image.version".to_owned(), c.short_rev.clone()),
    ]);
    let mut build_args = c.args.clone();
    if service.manifest.installer == Installer::Pip {
        build_args.remove("UV_IMAGE");
    }
    build_args.insert(engine::INLINE_CACHE_ARG.to_owned(), "1".to_owned());
    let spec = engine::BuildSpec {
        tag: latest,
        extra_tags: vec![versioned],
        dockerfile: service.dockerfile_path(),
        context: ctx.into_tar()?,
        build_args,
        labels,
        no_cache: false,
        cache_from: select.cache_from.iter().map(|r| cache_source(c.registry_cache, r, &service.name)).collect(),
        cache_to: select.cache_to.as_ref().filter(|_| layer_cache).map(|r| layer_cache_repo(r, &service.name)),
    };
    Ok(Job::Build { service: service.name.clone(), tags, spec, sbom })
}

/// Carries out a plan: tags the up-to-date images, builds the others
/// concurrently (BuildKit shares their base layers) with one progress line
/// each. Every failure is reported, not only the first.
pub async fn execute(docker: &Docker, plan: Plan) -> Result<Vec<ImageResult>> {
    let multi = MultiProgress::new();
    if plan.quiet {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut jobs = Vec::new();
    for job in plan.jobs {
        match job {
            Job::UpToDate { service, tags, hash, sbom } => {
                let result = retag(docker, service, tags, &hash, plan.quiet).await;
                let result =
                    sbom.write().map(|file| ImageResult { sbom: file, sbom_in_image: sbom.in_image, ..result });
                jobs.push(futures_util::future::Either::Left(std::future::ready(result)));
            }
            Job::Build { service, tags, mut spec, sbom } => {
                spec.no_cache = plan.no_cache;
                let bar = multi.add(ProgressBar::new_spinner().with_prefix(service.clone()));
                bar.set_style(spinner_style());
                bar.enable_steady_tick(Duration::from_millis(120));
                let quiet = plan.quiet;
                jobs.push(futures_util::future::Either::Right(async move {
                    let result = build_one(docker, service, tags, spec, bar, quiet).await?;
                    Ok(ImageResult { sbom: sbom.write()?, sbom_in_image: sbom.in_image, ..result })
                }));
            }
        }
    }
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

/// Plans and builds: what `build-images`, `up` and the benches call.
pub async fn build_all(p: &Prepared, select: &Select) -> Result<Vec<ImageResult>> {
    let plan = plan(p, select).await?;
    execute(p.docker(), plan).await
}

async fn retag(docker: &Docker, service: String, tags: Vec<String>, hash: &str, quiet: bool) -> ImageResult {
    let (versioned, latest) = (&tags[0], &tags[1]);
    let (repo, tag) = versioned.rsplit_once(':').expect("tag has a colon");
    docker.tag_image(latest, Some(TagImageOptionsBuilder::default().repo(repo).tag(tag).build())).await.ok();
    let size = docker.inspect_image(latest).await.ok().and_then(|i| i.size).unwrap_or_default();
    if !quiet {
        println!("{service}: up to date (inputs {}), not rebuilt", &hash[..12]);
    }
    ImageResult {
        service,
        tags,
        built: false,
        seconds: 0.0,
        steps: 0,
        cached: 0,
        size_bytes: size,
        ran: Vec::new(),
        sbom: String::new(),
        sbom_in_image: String::new(),
    }
}

async fn build_one(
    docker: &Docker,
    service: String,
    tags: Vec<String>,
    spec: engine::BuildSpec,
    bar: ProgressBar,
    quiet: bool,
) -> Result<ImageResult> {
    let debian_python = spec.build_args.get("BASE_IMAGE").is_some_and(|b| b == provision::base_images::PYTHON_IMAGE);
    let report = engine::build(docker, spec, &bar).await;
    for warning in report.iter().flat_map(|r| &r.warnings) {
        let line = format!("warning: {service}: {warning}: built without that cache");
        if quiet {
            eprintln!("{line}");
        } else {
            bar.suspend(|| eprintln!("{line}"));
        }
    }
    match &report {
        Ok(r) => bar.finish_with_message(format!("built in {:.1}s, {}/{} steps cached", r.seconds, r.cached, r.steps)),
        Err(_) => bar.finish_with_message("failed"),
    }
    let r = report.map_err(|e| with_build_hint(e, &service, debian_python))?;
    Ok(ImageResult {
        service,
        tags,
        built: true,
        seconds: r.seconds,
        steps: r.steps,
        cached: r.cached,
        size_bytes: r.size_bytes,
        ran: r.ran,
        sbom: String::new(),
        sbom_in_image: String::new(),
    })
}

/// A failed build whose log says a dependency had to be compiled gets the
/// hint of `buildhint` under it: the package, `build_packages` in the
/// service's manifest, the wheel alternative. `debian_python`: built on the
/// local Python base image (Debian's python3, no headers).
fn with_build_hint(error: anyhow::Error, service: &str, debian_python: bool) -> anyhow::Error {
    let text = format!("{error:#}");
    match buildhint::recognize(&text) {
        Some(hint) => {
            let manifest = format!("{}/{service}/{}", manifest::SERVICES_DIR, manifest::SERVICE_FILE);
            anyhow::anyhow!("{text}\n{}", hint.message(&manifest, debian_python))
        }
        None => error,
    }
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

pub async fn push_all(docker: &Docker, registry: &str, results: &[ImageResult]) -> Result<()> {
    for r in results {
        for tag in &r.tags {
            let remote = format!("{registry}/{tag}");
            push(docker, tag, &remote).await?;
            println!("pushed {remote}");
        }
    }
    Ok(())
}

/// `--cache-to`: each image (it carries its inline cache) pushed as
/// `<repo>/<service>:cache`. The images are built: a push that fails is a
/// warning, and the next build elsewhere simply runs without that cache.
/// With buildah's layer cache the builds have pushed it already.
pub async fn push_cache(docker: &Docker, repo: &str, results: &[ImageResult]) -> Result<()> {
    check_cache_repo(repo)?;
    if engine::caps::of(docker).await?.registry_cache() == RegistryCache::Layers {
        for r in results {
            eprintln!("the build pushed its layer cache to {}", layer_cache_repo(repo, &r.service));
        }
        return Ok(());
    }
    for r in results {
        let remote = cache_ref(repo, &r.service);
        match push(docker, &r.tags[1], &remote).await {
            Ok(()) => eprintln!("pushed the build cache {remote}"),
            Err(e) => eprintln!("warning: the build cache of {} was not pushed: {e:#}", r.service),
        }
    }
    Ok(())
}

/// Tags `local` as `remote` and pushes it, with the credentials `docker
/// login` stored for its registry, if any.
pub async fn push(docker: &Docker, local: &str, remote: &str) -> Result<()> {
    let (repo, version) = remote.rsplit_once(':').expect("tag has a colon");
    docker
        .tag_image(local, Some(TagImageOptionsBuilder::default().repo(repo).tag(version).build()))
        .await
        .with_context(|| format!("cannot tag {local} as {remote}"))?;
    let registry = repo.split('/').next().unwrap_or(repo);
    engine::push_image(repo, version)
        .await
        .with_context(|| format!("pushing {remote} failed (is the registry at {registry} running?)"))
}
