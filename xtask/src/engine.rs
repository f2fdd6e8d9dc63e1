//! The Docker Engine: connecting, and building an image through BuildKit
//! with live progress. Every image this xtask makes goes through `build`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bollard::query_parameters::{ListImagesOptionsBuilder, RemoveImageOptions, TagImageOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

mod buildx;
pub mod caps;
mod http;
mod textprogress;
mod trace;

pub use caps::Capabilities;

pub const ENGINE_HELP: &str =
    "start it with `cargo xtask setup --yes` (installs and starts Docker Engine on Debian/Ubuntu), \
or point DOCKER_HOST at a running engine";

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

/// Connects (honouring DOCKER_HOST) and checks the engine answers.
pub async fn connect() -> Result<Docker> {
    let where_ = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
    let docker = Docker::connect_with_defaults()
        .map_err(|e| anyhow!("cannot reach the Docker engine at {where_} ({e}): {ENGINE_HELP}"))?;
    match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(e)) => bail!("cannot reach the Docker engine at {where_} ({e}): {ENGINE_HELP}"),
        Err(_) => bail!("the Docker engine at {where_} did not answer within 5 s: {ENGINE_HELP}"),
    }
}

/// One image to build.
pub struct BuildSpec {
    pub tag: String,
    pub extra_tags: Vec<String>,
    /// Path of the Dockerfile inside the context tar.
    pub dockerfile: String,
    pub context: Vec<u8>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// Images whose inline cache BuildKit may reuse layers from (`cachefrom`):
    /// looked up in the local image store first, then in their registry. A
    /// missing or unreachable one is a warning, never a failure.
    pub cache_from: Vec<String>,
    /// buildah's layer cache (`caps::RegistryCache::Layers`): the repository
    /// each step's layer is pushed to during the build. `cache_from` then
    /// names repositories too (the first is used).
    pub cache_to: Option<String>,
}

/// The build argument that makes BuildKit write its cache metadata into the
/// image's config (inline cache): an image pushed with it serves as
/// `cachefrom` for a build elsewhere. Engine 20.10 and current engines.
pub const INLINE_CACHE_ARG: &str = "BUILDKIT_INLINE_CACHE";

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BuildReport {
    pub image_id: String,
    pub seconds: f64,
    pub steps: usize,
    pub cached: usize,
    pub size_bytes: i64,
    /// Cache images that could not be used (missing, unreachable).
    pub warnings: Vec<String>,
    /// The Dockerfile steps that ran (neither cached nor a `FROM`).
    pub ran: Vec<String>,
}

#[derive(Default)]
struct Step {
    name: String,
    cached: bool,
    completed: bool,
    error: String,
    log: Vec<String>,
}

/// One line of the `/build` answer: a BuildKit trace, an error, or neither.
#[derive(serde::Deserialize)]
struct BuildLine {
    id: Option<String>,
    aux: Option<serde_json::Value>,
    #[serde(rename = "errorDetail")]
    error_detail: Option<ErrorDetail>,
    error: Option<String>,
    /// Plain text: buildah's steps behind Podman's `/build`.
    stream: Option<String>,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

/// Builds `spec` on the engine; `bar` shows the current step.
///
/// Where the engine takes a tar body (Docker with a graph-driver store,
/// Podman), the request is the Engine API's `POST /build?version=2` with the
/// context as the body, sent directly: BuildKit needs no client session for
/// a tar context, cache and bind mounts, only a session id no other build
/// has used; its progress comes back as protobuf traces ([`trace`]), or as
/// buildah's text on Podman. Docker's containerd image store cannot take a
/// tar body, so there the build goes through `docker buildx build`
/// ([`buildx`]). Either way the same [`BuildTrace`] judges it.
pub async fn build(docker: &Docker, mut spec: BuildSpec, bar: &ProgressBar) -> Result<BuildReport> {
    let started = Instant::now();
    let caps = caps::of(docker).await?;
    let (trace, stream_error) = if caps.builds_from_tar() {
        tar_body(&mut spec, caps.registry_cache(), bar).await?
    } else {
        buildx::build(&spec, session_id(), bar.clone()).await?
    };
    if let Some(message) = trace.failure_message(&spec.tag) {
        bail!(message);
    }
    let report = finish(docker, &spec, &trace, stream_error, started, caps.registry_cache()).await?;
    if caps.keeps_stage_images() {
        remove_stage_images(docker, &spec, &report.image_id).await;
    }
    Ok(report)
}

/// Removes the untagged images that carry exactly this build's labels
/// other than the image built: the stages buildah committed on the way
/// (the `uv` stage the install step mounts gets the build's labels, so a
/// new one each build). Best effort: one in use stays.
async fn remove_stage_images(docker: &Docker, spec: &BuildSpec, built: &str) {
    // One label filter: Podman 4.3's API finds nothing when given several;
    // all of them are compared here.
    let Some((key, value)) = spec.labels.iter().next() else { return };
    let filters = std::collections::HashMap::from([
        ("label", vec![format!("{key}={value}")]),
        ("dangling", vec!["true".to_owned()]),
    ]);
    let options = ListImagesOptionsBuilder::default().all(true).filters(&filters).build();
    let Ok(images) = docker.list_images(Some(options)).await else { return };
    let ours = images.into_iter().filter(|i| {
        i.id != built && i.repo_tags.iter().all(|t| t == "<none>:<none>") && carries(Some(&i.labels), &spec.labels)
    });
    for image in ours {
        let _ = docker.remove_image(&image.id, None::<RemoveImageOptions>, None).await;
    }
}

/// `POST /build?version=2` with the context as the body.
async fn tar_body(
    spec: &mut BuildSpec,
    cache: caps::RegistryCache,
    bar: &ProgressBar,
) -> Result<(BuildTrace, Option<String>)> {
    let query = build_query(spec, cache)?;
    let mut lines = http::post_lines("/build", &query, std::mem::take(&mut spec.context)).await?;
    let mut trace = BuildTrace::default();
    let stream_error = loop {
        match lines.next_line().await {
            Ok(Some(line)) => trace.read_line(&line, bar)?,
            Ok(None) => break None,
            Err(e) => break Some(format!("{e:#}")),
        }
    };
    Ok((trace, stream_error))
}

/// A fresh session id per build: BuildKit silently drops a reused one.
/// Process id and clock tell runs apart; the counter tells apart the
/// builds one run starts together.
fn session_id() -> String {
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("xtask-{}-{}-{n}", std::process::id(), nanos_now())
}

/// The query string of the `/build` request.
fn build_query(spec: &BuildSpec, cache: caps::RegistryCache) -> Result<Vec<(&'static str, String)>> {
    let mut query = vec![
        ("version", "2".to_owned()),
        ("session", session_id()),
        ("dockerfile", spec.dockerfile.clone()),
        ("t", spec.tag.clone()),
        ("rm", "1".to_owned()),
        // buildah keeps the working container of a stage a step mounts
        // (`from=uv`) unless told to remove them all, also on success.
        ("forcerm", "1".to_owned()),
        ("buildargs", serde_json::to_string(&spec.build_args)?),
        ("labels", serde_json::to_string(&spec.labels)?),
    ];
    if spec.no_cache {
        query.push(("nocache", "1".to_owned()));
    }
    if cache == caps::RegistryCache::Layers {
        // buildah: one repository each way, every step kept as a layer.
        query.extend(spec.cache_from.first().map(|repo| ("cachefrom", repo.clone())));
        query.extend(spec.cache_to.as_ref().map(|repo| ("cacheto", repo.clone())));
        query.push(("layers", "1".to_owned()));
        if spec.cache_from.iter().chain(&spec.cache_to).any(|r| loopback_registry(r)) {
            query.push(("tlsVerify", "false".to_owned()));
        }
    } else if !spec.cache_from.is_empty() {
        query.push(("cachefrom", serde_json::to_string(&spec.cache_from)?));
    }
    Ok(query)
}

/// What the `/build` answer has told so far: each step (by digest, and in
/// the order they first showed up) and the engine's last error.
#[derive(Default)]
struct BuildTrace {
    steps: BTreeMap<String, Step>,
    order: Vec<String>,
    failure: Option<String>,
    buildah: textprogress::Buildah,
}

impl BuildTrace {
    /// Takes one line of the answer; a line that is not JSON is skipped.
    fn read_line(&mut self, line: &[u8], bar: &ProgressBar) -> Result<()> {
        let Ok(line) = serde_json::from_slice::<BuildLine>(line) else { return Ok(()) };
        for text in line.stream.as_deref().unwrap_or_default().lines() {
            if let Some(status) = self.buildah.line(text) {
                self.record(status, bar);
            }
        }
        if let Some(detail) = line.error_detail.and_then(|d| d.message).or(line.error) {
            if let Some(status) = self.buildah.fail(&detail) {
                self.record(status, bar);
            }
            self.failure = Some(detail);
        }
        let aux = line.aux.as_ref().and_then(|a| a.as_str());
        let (Some("moby.buildkit.trace"), Some(aux)) = (line.id.as_deref(), aux) else { return Ok(()) };
        let status = trace::decode(aux).context("cannot read the engine's build progress")?;
        self.record(status, bar);
        Ok(())
    }

    /// Merges one BuildKit status into the steps, keeping each step's last
    /// 40 log lines, and shows a step on `bar` when it starts.
    fn record(&mut self, status: trace::Status, bar: &ProgressBar) {
        for v in status.vertexes {
            if !self.steps.contains_key(&v.digest) {
                self.order.push(v.digest.clone());
            }
            let step = self.steps.entry(v.digest.clone()).or_default();
            step.name = v.name;
            step.cached |= v.cached;
            step.completed |= v.completed;
            if !v.error.is_empty() {
                step.error = v.error;
            }
            if v.started && !v.completed {
                let msg = format!("{}{}", short(&step.name), if step.cached { " (cached)" } else { "" });
                progress(bar, msg);
            }
        }
        for log in status.logs {
            let step = self.steps.entry(log.vertex).or_default();
            for line in String::from_utf8_lossy(&log.msg).lines() {
                step.log.push(line.to_owned());
            }
            let excess = step.log.len().saturating_sub(40);
            step.log.drain(..excess);
        }
    }

    /// Why building `tag` failed, if it did: the first failed step with the
    /// end of its log, or else the engine's error.
    fn failure_message(&self, tag: &str) -> Option<String> {
        let failed_step = self
            .order
            .iter()
            .filter_map(|d| self.steps.get(d))
            .find(|s| !s.error.is_empty() && !is_cache_import(&s.name));
        if self.failure.is_none() && failed_step.is_none() {
            return None;
        }
        let mut message = format!("building {tag} failed");
        if let Some(step) = failed_step {
            message.push_str(&format!("\nstep: {}\nerror: {}", step.name, step.error));
            // 30 lines: enough for a compiler's or setup.py's whole message
            // (what `buildhint` reads), however the engine chunked the log.
            let tail: Vec<&String> = step.log.iter().rev().take(30).collect();
            if !tail.is_empty() {
                message.push_str("\nlast log lines:");
                for line in tail.into_iter().rev() {
                    message.push_str("\n  | ");
                    message.push_str(line);
                }
            }
        } else if let Some(f) = &self.failure {
            message.push_str(&format!(": {f}"));
        }
        Some(message)
    }

    /// Cache images BuildKit could not import: it builds without them.
    fn cache_warnings(&self) -> Vec<String> {
        self.order
            .iter()
            .filter_map(|d| self.steps.get(d))
            .filter(|s| is_cache_import(&s.name) && !s.error.is_empty())
            .map(|s| {
                let image = s.name.trim_start_matches("importing cache manifest from ");
                let error = s.error.trim_start_matches(image).trim_start_matches(": ");
                format!("cache {image}: {error}")
            })
            .collect()
    }

    /// The Dockerfile steps (`[stage n/m] ...`) that ran: not cached, not a `FROM`.
    fn ran(&self) -> Vec<String> {
        self.order
            .iter()
            .filter_map(|d| self.steps.get(d))
            .filter(|s| s.name.starts_with('[') && !s.name.starts_with("[internal]") && !s.name.contains("] FROM "))
            .filter(|s| !s.cached)
            .map(|s| short(&s.name))
            .collect()
    }

    /// The steps of the Dockerfile (not BuildKit's internal ones, nor cache
    /// imports), and how many of them came from the cache.
    fn counts(&self) -> (usize, usize) {
        let relevant: Vec<&Step> =
            self.steps.values().filter(|s| !s.name.starts_with("[internal]") && !is_cache_import(&s.name)).collect();
        (relevant.len(), relevant.iter().filter(|s| s.cached).count())
    }
}

/// After a build without a failed step: checks the image is there, adds the
/// extra tags and reports.
async fn finish(
    docker: &Docker,
    spec: &BuildSpec,
    trace: &BuildTrace,
    stream_error: Option<String>,
    started: Instant,
    cache: caps::RegistryCache,
) -> Result<BuildReport> {
    // The image being there with our labels is the real verdict: a stream
    // that broke after the export must not fail a finished build.
    let image = docker.inspect_image(&spec.tag).await;
    let image = match (image, stream_error) {
        (Ok(img), _) if labels_match(&img, &spec.labels) => img,
        (_, Some(err)) => bail!("building {} failed: the engine stream broke ({err})", spec.tag),
        (_, None) => bail!("building {} finished but the engine has no such image", spec.tag),
    };
    for extra in &spec.extra_tags {
        let (repo, tag) = extra.rsplit_once(':').unwrap_or((extra, "latest"));
        docker
            .tag_image(&spec.tag, Some(TagImageOptionsBuilder::default().repo(repo).tag(tag).build()))
            .await
            .with_context(|| format!("cannot tag {} as {extra}", spec.tag))?;
    }
    let (steps, cached) = trace.counts();
    Ok(BuildReport {
        image_id: image.id.unwrap_or_default(),
        seconds: started.elapsed().as_secs_f64(),
        steps,
        cached,
        size_bytes: image.size.unwrap_or_default(),
        warnings: trace.cache_warnings().into_iter().chain(layer_cache_warning(spec, trace, cache)).collect(),
        ran: trace.ran(),
    })
}

/// buildah says nothing when a `cachefrom` repository is missing or does
/// not answer: where steps ran although one was named, say it here.
fn layer_cache_warning(spec: &BuildSpec, trace: &BuildTrace, cache: caps::RegistryCache) -> Option<String> {
    if cache != caps::RegistryCache::Layers {
        return None;
    }
    let repo = spec.cache_from.first()?;
    let ran = trace.ran().len();
    (ran > 0).then(|| format!("cache {repo}: {ran} steps were not in it, or it did not answer"))
}

/// Shows `msg` on a progress line; where no terminal draws the bars (CI
/// logs), prints each change as a plain line instead.
pub fn progress(bar: &ProgressBar, msg: String) {
    if bar.is_hidden() && bar.message() != msg {
        eprintln!("{}: {msg}", bar.prefix().trim());
    }
    bar.set_message(msg);
}

pub fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}").expect("valid template")
}

fn labels_match(image: &bollard::models::ImageInspect, wanted: &BTreeMap<String, String>) -> bool {
    carries(image.config.as_ref().and_then(|c| c.labels.as_ref()), wanted)
}

/// Whether the labels `have` hold every one of `wanted`, with its value.
fn carries(have: Option<&std::collections::HashMap<String, String>>, wanted: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
}

/// BuildKit's vertex for a `cachefrom` image ("importing cache manifest from <ref>").
fn is_cache_import(name: &str) -> bool {
    name.starts_with("importing cache manifest from ")
}

fn nanos_now() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

fn short(name: &str) -> String {
    let name = name.replace('\n', " ");
    if name.chars().count() > 70 {
        format!("{}…", name.chars().take(69).collect::<String>())
    } else {
        name
    }
}

/// The label of an existing image, if the image exists.
pub async fn image_label(docker: &Docker, image: &str, label: &str) -> Option<String> {
    let inspect = docker.inspect_image(image).await.ok()?;
    inspect.config?.labels?.get(label).cloned()
}

pub async fn image_id(docker: &Docker, image: &str) -> Option<String> {
    docker.inspect_image(image).await.ok()?.id
}

/// Before a benchmark: running containers (other than `except`'s project)
/// share the cores with what is measured, so say which, once.
pub async fn warn_if_busy(docker: &Docker, except: Option<&str>) {
    let Ok(running) = docker.list_containers(None::<bollard::query_parameters::ListContainersOptions>).await else {
        return;
    };
    let mut projects: Vec<String> = running
        .iter()
        .map(|c| {
            let labels = c.labels.clone().unwrap_or_default();
            labels.get("com.docker.compose.project").cloned().unwrap_or_else(|| {
                c.names
                    .clone()
                    .unwrap_or_default()
                    .first()
                    .cloned()
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned()
            })
        })
        .filter(|p| Some(p.as_str()) != except)
        .collect();
    projects.sort();
    projects.dedup();
    if !projects.is_empty() {
        eprintln!(
            "warning: containers are running on this engine ({}): their healthchecks and work share the cores \
             with what is measured, so the figures may be slower and noisier. Stop them (`cargo xtask down` for \
             this project) for numbers to publish.",
            projects.join(", ")
        );
    }
}

pub fn human_size(bytes: i64) -> String {
    let mb = bytes as f64 / 1_000_000.0;
    if mb >= 1000.0 {
        format!("{:.2} GB", mb / 1000.0)
    } else {
        format!("{mb:.1} MB")
    }
}

/// The credentials `docker login` stored for `registry` in the client's
/// config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`,
/// the `auths` entry; credential helpers are not asked). None for an
/// anonymous registry.
pub fn registry_credentials(registry: &str) -> Option<bollard::auth::DockerCredentials> {
    use base64::Engine as _;
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))?;
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.iter().find(|(k, _)| k.trim_start_matches("https://").trim_end_matches('/') == registry)?.1;
    let decoded = base64::engine::general_purpose::STANDARD.decode(entry.get("auth")?.as_str()?).ok()?;
    let (user, pass) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some(bollard::auth::DockerCredentials {
        username: Some(user),
        password: Some(pass),
        serveraddress: Some(registry.to_owned()),
        ..Default::default()
    })
}

/// Whether `reference`'s registry is on this machine (`localhost`,
/// 127.0.0.0/8, `[::1]`): Docker talks plain HTTP to those by default;
/// Podman only when told (`tlsVerify=false`), which the xtask then does.
pub fn loopback_registry(reference: &str) -> bool {
    let host = reference.split('/').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host == "::1" || host.split('.').next() == Some("127") && host.split('.').count() == 4
}

/// Pushes the local image `repo:tag` to its registry, with the credentials
/// `docker login` stored for it, if any (Engine API `POST
/// /images/{name}/push`; `tlsVerify=false` for a registry on this machine,
/// which Docker ignores and Podman needs).
pub async fn push_image(repo: &str, tag: &str) -> Result<()> {
    use base64::Engine as _;
    let registry = repo.split('/').next().unwrap_or(repo);
    let auth = serde_json::to_vec(&registry_credentials(registry).unwrap_or_default())?;
    let headers = [("X-Registry-Auth", base64::engine::general_purpose::URL_SAFE.encode(auth))];
    let mut query = vec![("tag", tag.to_owned())];
    if loopback_registry(repo) {
        query.push(("tlsVerify", "false".to_owned()));
    }
    let mut lines = http::post(&format!("/images/{repo}/push"), &query, &headers, Vec::new()).await?;
    while let Some(line) = lines.next_line().await? {
        let Ok(info) = serde_json::from_slice::<serde_json::Value>(&line) else { continue };
        if let Some(message) = info["errorDetail"]["message"].as_str().or(info["error"].as_str()) {
            bail!("{message}");
        }
    }
    Ok(())
}

/// Pulls `image` from its registry; fails fast on a machine without one.
pub async fn pull(docker: &Docker, image: &str) -> Result<()> {
    let (repo, tag) = match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (image, "latest"),
    };
    let options = bollard::query_parameters::CreateImageOptionsBuilder::default().from_image(repo).tag(tag).build();
    let mut stream = docker.create_image(Some(options), None, None);
    while let Some(item) = stream.next().await {
        let info = item.with_context(|| format!("pulling {image} failed"))?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            bail!("pulling {image} failed: {err}");
        }
    }
    Ok(())
}

/// Runs a container's healthcheck once on Podman (its libpod API; the
/// health state it records is what `inspect` and Compose then see) and
/// returns the status it reports (`healthy`, `unhealthy`, `starting`).
/// For engines without health timers (`Capabilities::runs_healthchecks`).
pub async fn run_healthcheck(container: &str) -> Result<String> {
    let answer = http::get_json(&format!("/v4.0.0/libpod/containers/{container}/healthcheck")).await?;
    Ok(answer.get("Status").and_then(|s| s.as_str()).unwrap_or_default().to_owned())
}

/// A container as `GET /containers/json` lists it: id, labels and state.
pub struct Container {
    pub id: String,
    pub labels: std::collections::HashMap<String, String>,
    /// As the engine says it: Podman also says `stopped`, which bollard's
    /// typed listing refuses to read.
    pub state: String,
}

/// Every container (running or not) with `label`, read as plain JSON.
pub async fn containers_with_label(label: &str) -> Result<Vec<Container>> {
    let filters = serde_json::json!({ "label": [label] }).to_string();
    let path =
        format!("/containers/json?all=1&filters={}", http::query_string(&[("", filters)]).trim_start_matches('='));
    let list = http::get_json(&path).await.context("cannot list containers")?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    Ok(list
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| Container {
            id: text(&c["Id"]),
            labels: c["Labels"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default(),
            state: text(&c["State"]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::trace::{Log, Status, Vertex};
    use super::*;

    fn vertex(digest: &str, name: &str, cached: bool, error: &str) -> Vertex {
        let (digest, name, error) = (digest.to_owned(), name.to_owned(), error.to_owned());
        Vertex { digest, name, cached, started: true, completed: true, error }
    }

    #[test]
    fn an_engine_error_without_a_failed_step_is_the_message() {
        let mut trace = BuildTrace::default();
        let bar = ProgressBar::hidden();
        trace.read_line(b"not json", &bar).unwrap();
        assert_eq!(trace.failure_message("demo/web:latest"), None);
        trace.read_line(br#"{"errorDetail":{"message":"no space left"},"error":"ignored"}"#, &bar).unwrap();
        assert_eq!(trace.failure_message("demo/web:latest").unwrap(), "building demo/web:latest failed: no space left");
    }

    #[test]
    fn a_failed_step_is_named_with_the_end_of_its_log() {
        let mut trace = BuildTrace::default();
        let log = (1..=50).map(|i| format!("line {i}\n")).collect::<String>().into_bytes();
        let status = Status {
            vertexes: vec![
                vertex("a", "[internal] load build context", true, ""),
                vertex("b", "[runtime 1/4] WORKDIR /app", true, ""),
                vertex("c", "[runtime 2/4] RUN pip install", false, "exit code: 1"),
                vertex("d", "[runtime 3/4] RUN false", false, "exit code: 2"),
            ],
            logs: vec![Log { vertex: "c".to_owned(), msg: log }],
        };
        trace.record(status, &ProgressBar::hidden());
        trace.failure = Some("the engine's error".to_owned());
        assert_eq!(trace.steps["c"].log.len(), 40, "a step keeps its last 40 log lines");
        let tail: String = (21..=50).map(|i| format!("\n  | line {i}")).collect();
        let want = format!(
            "building demo/web:latest failed\nstep: [runtime 2/4] RUN pip install\nerror: exit code: 1\nlast log lines:{tail}"
        );
        assert_eq!(trace.failure_message("demo/web:latest").unwrap(), want);
        assert_eq!(trace.counts(), (3, 1), "internal steps are not counted");
        assert_eq!(trace.ran(), ["[runtime 2/4] RUN pip install", "[runtime 3/4] RUN false"]);
    }

    #[test]
    fn a_cache_image_that_cannot_be_imported_is_a_warning() {
        let mut trace = BuildTrace::default();
        let missing = "importing cache manifest from 127.0.0.1:5000/pysvc/api-server:cache";
        let status = Status {
            vertexes: vec![
                vertex("a", missing, false, "127.0.0.1:5000/pysvc/api-server:cache: not found"),
                vertex("b", "[runtime 2/4] WORKDIR /app", true, ""),
            ],
            logs: vec![],
        };
        trace.record(status, &ProgressBar::hidden());
        assert_eq!(trace.failure_message("demo/web:latest"), None);
        assert_eq!(trace.cache_warnings(), ["cache 127.0.0.1:5000/pysvc/api-server:cache: not found"]);
        assert_eq!(trace.counts(), (1, 1), "a cache import is not a step");
        assert_eq!(trace.ran(), Vec::<String>::new());
        let spec = BuildSpec {
            tag: "t".into(),
            extra_tags: vec![],
            dockerfile: "Dockerfile".into(),
            context: vec![],
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            no_cache: false,
            cache_from: vec!["r:5000/a:cache".into()],
            cache_to: None,
        };
        let query = build_query(&spec, caps::RegistryCache::Inline).unwrap();
        assert!(query.contains(&("cachefrom", r#"["r:5000/a:cache"]"#.to_owned())), "{query:?}");
        // buildah's layer cache: repositories, each step a layer, plain HTTP
        // only to a registry on this machine.
        let layers = BuildSpec {
            cache_from: vec!["127.0.0.1:5000/c/api".into()],
            cache_to: Some("127.0.0.1:5000/c/api".into()),
            ..spec
        };
        let query = build_query(&layers, caps::RegistryCache::Layers).unwrap();
        for pair in [("cachefrom", "127.0.0.1:5000/c/api"), ("cacheto", "127.0.0.1:5000/c/api"), ("tlsVerify", "false")]
        {
            assert!(query.contains(&(pair.0, pair.1.to_owned())), "{pair:?} in {query:?}");
        }
        let remote = BuildSpec { cache_from: vec!["registry.example.com/c/api".into()], cache_to: None, ..layers };
        let query = build_query(&remote, caps::RegistryCache::Layers).unwrap();
        assert!(!query.iter().any(|(k, _)| *k == "tlsVerify" || *k == "cacheto"), "{query:?}");
    }

    #[test]
    fn registries_on_this_machine_are_told_apart() {
        for local in ["localhost:5000/a", "127.0.0.1:41234/p/a", "127.1.2.3/a", "[::1]:5000/a"] {
            assert!(loopback_registry(local), "{local}");
        }
        for remote in ["registry.example.com/a", "127.example.com/a", "10.0.0.1:5000/a", "ghcr.io/o/a"] {
            assert!(!loopback_registry(remote), "{remote}");
        }
    }
}
