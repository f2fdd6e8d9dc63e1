//! `cargo xtask deploy`: the stack on a Kubernetes cluster, in phases:
//! the context (named or current, and answering), the overlay rendered, the
//! images built where stale and made available to the cluster (imported
//! into the local node's containerd, or pushed to `--registry`), applied,
//! and every rollout waited for with a live line per workload. A failure
//! shows the events, the failing probes and the log tails of what failed.
//!
//! Images are referenced by content (`<name>:id-<image id>`), so an
//! unchanged image is the same reference and a second deploy with nothing
//! changed changes nothing, while a rebuilt one rolls out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar};
use serde_json::Value as Json;

use crate::images::{self, Select};
use crate::kube::rollout::{self, State, Workload};
use crate::kube::{self, Kubectl};
use crate::prepared::{Prepared, Repo};
use crate::{cluster, engine, gen};

/// How long the API may stop answering while a rollout is watched.
const API_GONE_AFTER: Duration = Duration::from_secs(30);
/// Where the overlays are, from the repository root.
const OVERLAYS: &str = "deploy/k8s/overlays";

/// Deploy the stack to a Kubernetes cluster and wait until every workload is ready.
#[derive(Args, Debug)]
pub struct Deploy {
    /// The kustomize overlay under deploy/k8s/overlays.
    #[arg(long, default_value = "dev")]
    pub overlay: String,
    /// The kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Deploy into this namespace instead of the overlay's (a second copy
    /// of the stack beside the first: the tests use their own).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Push the images to this registry (host:port) the cluster pulls from,
    /// instead of importing them into the local node.
    #[arg(long)]
    pub registry: Option<String>,
    /// Seconds to wait for every workload to become ready.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Do not build images (use what the engine has).
    #[arg(long)]
    pub no_build: bool,
    /// Print the outcome as JSON on stdout (objects changed, each
    /// workload's seconds from applied to ready).
    #[arg(long)]
    pub json: bool,
}

impl Deploy {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let kubectl = Kubectl::for_context(self.context.as_deref())?;
        let version = kubectl.reachable()?;
        // With --json, stdout holds the JSON line alone; what is said goes to stderr.
        let say = |line: String| if self.json { eprintln!("{line}") } else { println!("{line}") };
        say(format!("context {}: Kubernetes {version} at {}", kubectl.context(), kubectl.server()));
        let mut docs = kube::documents(&kube::render(&repo.root.join(OVERLAYS), &self.overlay)?)?;
        if let Some(ns) = &self.namespace {
            kube::set_namespace(&mut docs, ns);
        }
        let namespaces = kube::namespaces(&docs);
        let namespace = namespaces.iter().next().cloned().context("the overlay puts nothing in a namespace")?;
        let p = repo.prepare()?;
        let delivery = Delivery::for_context(&kubectl, self.registry.as_deref())?;
        let map = p.block_on(self.images(&p, &delivery, &mut docs))?;
        kube::rewrite_images(&mut docs, &map, delivery.pull_policy());
        if let Delivery::Node(_) = delivery {
            cluster::offer_released_volumes(&repo.sh, &cluster::Layout::system())?;
        }
        let applied = kubectl.apply(&kube::to_yaml(&docs)?)?;
        let changed: Vec<&(String, String)> = applied.iter().filter(|(_, a)| a != "unchanged").collect();
        say(format!(
            "applied {} objects: {} changed, {} unchanged",
            applied.len(),
            changed.len(),
            applied.len() - changed.len()
        ));
        for (object, action) in &changed {
            say(format!("  {object} {action}"));
        }
        let ready_at = wait(&kubectl, &namespace, Duration::from_secs(self.timeout))?;
        if self.json {
            let changed = changed.len();
            println!(
                "{}",
                serde_json::json!({"namespace": namespace, "applied": applied.len(), "changed": changed, "ready_after": ready_at})
            );
            return Ok(());
        }
        println!("\n{:<36} {:>12}", "WORKLOAD", "READY AFTER");
        for (key, t) in &ready_at {
            println!("{key:<36} {t:>11.1}s");
        }
        println!(
            "all {} workloads ready. The API: `kubectl --context {} -n {namespace} port-forward service/api-server \
             8000:8000`, then http://127.0.0.1:8000/docs",
            ready_at.len(),
            kubectl.context()
        );
        Ok(())
    }

    /// Builds what is stale, then maps each image the overlay names to the
    /// reference the cluster will run, made available to it.
    async fn images(&self, p: &Prepared, delivery: &Delivery, docs: &mut [Json]) -> Result<BTreeMap<String, String>> {
        if !self.no_build {
            let results = images::build_all(p, &Select::default()).await?;
            if results.iter().any(|r| r.built) {
                images::print_table(&results);
            }
        }
        let mut local: BTreeMap<String, String> = BTreeMap::new();
        for s in &p.stack.services {
            let generated = format!("{}/{}:latest", p.stack.manifest.project, s.name);
            local.insert(generated, format!("{}/{}:latest", p.image_prefix(), s.name));
        }
        for infra in gen::infra(&p.stack) {
            let chosen = p.env.get(infra.image_var).filter(|v| !v.is_empty()).unwrap_or_else(|| infra.image.to_owned());
            local.insert(infra.image.to_owned(), chosen);
        }
        let mut map = BTreeMap::new();
        for image in kube::images(docs) {
            let Some(source) = local.get(&image) else { continue };
            let id = engine::image_id(p.docker(), source).await.with_context(|| {
                format!(
                    "the engine has no image {source} (for {image}): run `cargo xtask build-images` (or `base-images`)"
                )
            })?;
            let short = id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
            let name = source.rsplit_once(':').map(|(n, _)| n).unwrap_or(source);
            let target = delivery.reference(&format!("{name}:id-{short}"));
            delivery.deliver(p, source, &target).await?;
            map.insert(image, target);
        }
        Ok(map)
    }
}

/// How images reach the cluster.
enum Delivery {
    /// Imported into the local node's containerd (`cluster up`).
    Node(kube::NodeStore),
    /// Pushed to a registry the cluster pulls from.
    Registry(String),
}

impl Delivery {
    fn for_context(kubectl: &Kubectl, registry: Option<&str>) -> Result<Delivery> {
        if let Some(r) = registry {
            return Ok(Delivery::Registry(r.trim_end_matches('/').to_owned()));
        }
        if kubectl.context() == kube::LOCAL_CONTEXT {
            return cluster::image_store().map(Delivery::Node).context(
                "the local node's image store (its containerd and ctr) is not there, so its images cannot be \
                 imported.\n  fix: `cargo xtask cluster up` (`cargo xtask cluster status` says what runs)",
            );
        }
        bail!(
            "context {:?} is not the local node, so its nodes cannot see this machine's images.\n  fix: push them to \
             a registry the cluster pulls from with `--registry HOST:PORT` (e.g. your cloud's registry, after \
             `docker login`)",
            kubectl.context()
        )
    }

    fn reference(&self, image: &str) -> String {
        match self {
            Delivery::Node(_) => image.to_owned(),
            Delivery::Registry(r) => format!("{r}/{image}"),
        }
    }

    /// Imported images are referenced by content and never pulled; pushed
    /// ones are pulled as the generated manifests say (`Always`).
    fn pull_policy(&self) -> Option<&'static str> {
        match self {
            Delivery::Node(_) => Some("IfNotPresent"),
            Delivery::Registry(_) => None,
        }
    }

    async fn deliver(&self, p: &Prepared, source: &str, target: &str) -> Result<()> {
        let (repo, tag) = target.rsplit_once(':').expect("a reference with a tag");
        let options = bollard::query_parameters::TagImageOptionsBuilder::default().repo(repo).tag(tag).build();
        p.docker()
            .tag_image(source, Some(options))
            .await
            .with_context(|| format!("cannot tag {source} as {target}"))?;
        match self {
            Delivery::Registry(_) => images::push(p.docker(), target, target).await,
            Delivery::Node(store) => {
                if store.has(target) {
                    return Ok(());
                }
                let started = Instant::now();
                store.import(p.docker(), target).await?;
                eprintln!("{target}: imported into the node in {:.1}s", started.elapsed().as_secs_f64());
                Ok(())
            }
        }
    }
}

/// Polls the namespace's workloads every second, one live line each, until
/// all are ready (their times since the start), one fails, or `timeout`.
fn wait(kubectl: &Kubectl, namespace: &str, timeout: Duration) -> Result<BTreeMap<String, f64>> {
    let started = Instant::now();
    let multi = MultiProgress::new();
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut ready_at: BTreeMap<String, f64> = BTreeMap::new();
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let list = match kubectl.json(&["-n", namespace, "get", "deployments,statefulsets,jobs", "-o", "json"]) {
            Ok(list) => list,
            // The API may blink (a restart of the control plane): tolerated
            // for up to 30 s, then a clear failure.
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= API_GONE_AFTER || started.elapsed() >= timeout {
                    bars.values().for_each(ProgressBar::finish);
                    return Err(e.context(format!(
                        "the API server stopped answering while the rollout was watched (for {} s); `cargo xtask \
                         cluster status` (local node) or your cluster's own status says why",
                        since.elapsed().as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        unreachable_since = None;
        let workloads = rollout::workloads(&list);
        for w in &workloads {
            let bar = bars.entry(w.key.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new_spinner().with_prefix(format!("{:<34}", w.key)));
                bar.set_style(engine::spinner_style());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            if w.state == State::Ready {
                ready_at.entry(w.key.clone()).or_insert_with(|| started.elapsed().as_secs_f64());
            }
            let message = match (&w.state, ready_at.get(&w.key)) {
                (State::Ready, Some(t)) => format!("ready after {t:.1}s"),
                (State::Waiting(why), _) | (State::Failed(why), _) => why.clone(),
                (State::Ready, None) => "ready".to_owned(),
            };
            engine::progress(bar, message);
        }
        let failed: Vec<&Workload> = workloads.iter().filter(|w| matches!(w.state, State::Failed(_))).collect();
        let all_ready = !workloads.is_empty() && workloads.iter().all(|w| w.state == State::Ready);
        if all_ready || !failed.is_empty() || started.elapsed() >= timeout {
            bars.values().for_each(ProgressBar::finish);
            if all_ready {
                return Ok(ready_at);
            }
            let waiting: Vec<&Workload> = workloads.iter().filter(|w| w.state != State::Ready).collect();
            bail!("{}", failure_report(kubectl, namespace, &waiting, timeout, failed.is_empty()));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// What a newcomer needs when the rollout did not finish: which workloads,
/// the pods' problems (with the fix for an image the node cannot pull),
/// the namespace's warning events, and the log tails of the failing pods.
fn failure_report(
    kubectl: &Kubectl,
    namespace: &str,
    waiting: &[&Workload],
    timeout: Duration,
    timed_out: bool,
) -> String {
    let mut out = match timed_out {
        true => format!("not every workload was ready after {} s (raise --timeout?):", timeout.as_secs()),
        false => "a workload failed:".to_owned(),
    };
    for w in waiting {
        let state = match &w.state {
            State::Waiting(why) | State::Failed(why) => why.as_str(),
            State::Ready => "ready",
        };
        out.push_str(&format!("\n  {}: {state}", w.key));
    }
    let pods = kubectl.json(&["-n", namespace, "get", "pods", "-o", "json"]).unwrap_or_default();
    let problems = rollout::pod_problems(&pods);
    for p in &problems {
        out.push_str(&format!("\n  {p}"));
    }
    if problems.iter().any(|p| rollout::is_pull_failure(p)) {
        out.push_str(
            "\n  fix: the node cannot pull that image. For the local node `deploy` imports the images itself (is \
             `cargo xtask cluster status` healthy?); for another cluster pass `--registry HOST:PORT` it can pull from",
        );
    }
    let events = ["-n", namespace, "get", "events", "--field-selector", "type=Warning", "--sort-by", ".lastTimestamp"];
    if let Ok(text) = kubectl.text(&events) {
        let lines: Vec<&str> = text.lines().collect();
        out.push_str("\nwarning events (last 15):");
        for line in &lines[lines.len().saturating_sub(15)..] {
            out.push_str(&format!("\n  {line}"));
        }
    }
    for name in failing_pods(&pods) {
        let logs =
            kubectl.text(&["-n", namespace, "logs", &name, "--all-containers", "--tail", "15"]).unwrap_or_default();
        out.push_str(&format!("\nlog of pod {name} (last 15 lines):\n{}", logs.trim_end()));
    }
    out
}

/// Pods that are not Ready (at most three), by name.
fn failing_pods(pods: &Json) -> Vec<String> {
    let items = pods["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    let ready = |p: &Json| {
        p["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    };
    let finished = |p: &Json| p["status"]["phase"] == "Succeeded";
    items
        .iter()
        .filter(|p| !ready(p) && !finished(p))
        .filter_map(|p| p["metadata"]["name"].as_str())
        .take(3)
        .map(str::to_owned)
        .collect()
}
