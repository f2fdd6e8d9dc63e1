//! The Docker Engine: connecting, and building an image through BuildKit
//! with live progress. Every image this xtask makes goes through `build`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bollard::query_parameters::TagImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

mod http;
mod trace;

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
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BuildReport {
    pub image_id: String,
    pub seconds: f64,
    pub steps: usize,
    pub cached: usize,
    pub size_bytes: i64,
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
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

/// Builds through the engine's BuildKit; `bar` shows the current step.
///
/// The request is the Engine API's `POST /build?version=2` with the context
/// as the tar body, sent directly: BuildKit needs no client session for a
/// tar context, cache and bind mounts, only a session id no other build has
/// used. Its progress comes back as protobuf traces ([`trace`]).
pub async fn build(docker: &Docker, spec: BuildSpec, bar: &ProgressBar) -> Result<BuildReport> {
    let started = Instant::now();
    // A fresh session id per build: BuildKit silently drops a reused one.
    // Process id and clock tell runs apart; the counter tells apart the
    // builds one run starts together.
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let session = format!("xtask-{}-{}-{n}", std::process::id(), nanos_now());
    let mut query = vec![
        ("version", "2".to_owned()),
        ("session", session),
        ("dockerfile", spec.dockerfile.clone()),
        ("t", spec.tag.clone()),
        ("rm", "1".to_owned()),
        ("buildargs", serde_json::to_string(&spec.build_args)?),
        ("labels", serde_json::to_string(&spec.labels)?),
    ];
    if spec.no_cache {
        query.push(("nocache", "1".to_owned()));
    }
    let mut lines = http::post_lines("/build", &query, spec.context).await?;
    let mut steps: BTreeMap<String, Step> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut failure: Option<String> = None;
    let mut stream_error: Option<String> = None;
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                stream_error = Some(format!("{e:#}"));
                break;
            }
        };
        let Ok(line) = serde_json::from_slice::<BuildLine>(&line) else { continue };
        if let Some(detail) = line.error_detail.and_then(|d| d.message).or(line.error) {
            failure = Some(detail);
        }
        let aux = line.aux.as_ref().and_then(|a| a.as_str());
        let (Some("moby.buildkit.trace"), Some(aux)) = (line.id.as_deref(), aux) else { continue };
        let status = trace::decode(aux).context("cannot read the engine's build progress")?;
        for v in status.vertexes {
            if !steps.contains_key(&v.digest) {
                order.push(v.digest.clone());
            }
            let step = steps.entry(v.digest.clone()).or_default();
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
            let step = steps.entry(log.vertex).or_default();
            for line in String::from_utf8_lossy(&log.msg).lines() {
                step.log.push(line.to_owned());
            }
            let excess = step.log.len().saturating_sub(40);
            step.log.drain(..excess);
        }
    }
    let failed_step = order.iter().filter_map(|d| steps.get(d)).find(|s| !s.error.is_empty());
    if failure.is_some() || failed_step.is_some() {
        let mut message = format!("building {} failed", spec.tag);
        if let Some(step) = failed_step {
            message.push_str(&format!("\nstep: {}\nerror: {}", step.name, step.error));
            let tail: Vec<&String> = step.log.iter().rev().take(15).collect();
            if !tail.is_empty() {
                message.push_str("\nlast log lines:");
                for line in tail.into_iter().rev() {
                    message.push_str("\n  | ");
                    message.push_str(line);
                }
            }
        } else if let Some(f) = failure {
            message.push_str(&format!(": {f}"));
        }
        bail!(message);
    }
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
    let relevant: Vec<&Step> = steps.values().filter(|s| !s.name.starts_with("[internal]")).collect();
    Ok(BuildReport {
        image_id: image.id.unwrap_or_default(),
        seconds: started.elapsed().as_secs_f64(),
        steps: relevant.len(),
        cached: relevant.iter().filter(|s| s.cached).count(),
        size_bytes: image.size.unwrap_or_default(),
    })
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
    let have = image.config.as_ref().and_then(|c| c.labels.as_ref());
    wanted.iter().all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
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
