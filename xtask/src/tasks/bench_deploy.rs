//! `cargo xtask bench-deploy`: the stack deployed to a Kubernetes context
//! (the local node by default), `--runs` times, each into a namespace of
//! its own from a scratch copy of the repository: applied to all Ready, a
//! rolling update of api-server to a new version while searches arrive
//! (time to the new version serving, searches lost), and the worker's pod
//! deleted with searches waiting (searches lost). Medians of the runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::bench::http::{post_search, Conn};
use crate::bench::stats::median;
use crate::engine;
use crate::kube::{Kubectl, LOCAL_CONTEXT};
use crate::prepared::Repo;
use crate::scratch::Scratch;

/// The api-server file whose version the rolling update changes.
const APP: &str = "services/api-server/api_server/app.py";

/// Deploy to a cluster: applied to all Ready, a rolling update and a deleted worker pod under searches.
#[derive(Args, Debug)]
pub struct BenchDeploy {
    /// Runs, each in a namespace of its own; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The kubeconfig context.
    #[arg(long, default_value = LOCAL_CONTEXT)]
    pub context: String,
}

#[derive(Debug, Serialize)]
struct Run {
    /// From applied to every workload ready (deploy's own watch).
    ready_seconds: f64,
    /// The whole first `deploy` (build, import, apply, rollout).
    deploy_seconds: f64,
    /// From `deploy` of the new version started to that version answering.
    update_seconds: f64,
    accepted_during_update: usize,
    refused_during_update: usize,
    lost_in_update: usize,
    lost_with_worker: usize,
}

impl BenchDeploy {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let kubectl = Kubectl::for_context(Some(&self.context))?;
        kubectl.reachable()?;
        let scratch = Scratch::create(&repo.root, "deploybench", &std::env::current_exe()?)?;
        let rt = engine::runtime()?;
        let mut runs = Vec::new();
        for i in 1..=self.runs.max(1) {
            let namespace = format!("{}-{i}", scratch.project);
            let _gone = Namespace(&kubectl, namespace.clone());
            let run = rt.block_on(self.once(&kubectl, &scratch, &namespace, i))?;
            eprintln!("run {i}: {run:?}");
            runs.push(run);
        }
        print!("{}", report(&self, &runs));
        Ok(())
    }

    async fn once(&self, kubectl: &Kubectl, scratch: &Scratch, namespace: &str, i: usize) -> Result<Run> {
        let started = Instant::now();
        let ready_seconds = deploy(scratch, &self.context, namespace).await?;
        let deploy_seconds = started.elapsed().as_secs_f64();
        let ip =
            kubectl.text(&["-n", namespace, "get", "service", "api-server", "-o", "jsonpath={.spec.clusterIP}"])?;
        let api = format!("{}:8000", ip.trim());
        let version = format!("bench-{i}");
        set_version(&scratch.dir, &version)?;
        let stop = Arc::new(AtomicBool::new(false));
        let poster = tokio::spawn(post_until(api.clone(), stop.clone()));
        let started = Instant::now();
        deploy(scratch, &self.context, namespace).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while served_version(&api).await.as_deref() != Some(version.as_str()) {
            anyhow::ensure!(Instant::now() < deadline, "version {version} did not serve within 120 s of its deploy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let update_seconds = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::SeqCst);
        let during = poster.await?.some("during the rolling update")?;
        let lost_in_update = unanswered(&api, &during.accepted, Duration::from_secs(120)).await;
        let mut waiting = Posted::default();
        for _ in 0..20 {
            waiting.add(post(&api).await);
        }
        let worker = ["-n", namespace, "delete", "pod", "-l", "app.kubernetes.io/name=search-worker", "--wait=false"];
        kubectl.text(&worker)?;
        for _ in 0..20 {
            waiting.add(post(&api).await);
        }
        let waiting = waiting.some("around the worker pod's deletion")?;
        let lost_with_worker = unanswered(&api, &waiting.accepted, Duration::from_secs(180)).await;
        Ok(Run {
            ready_seconds,
            deploy_seconds,
            update_seconds,
            accepted_during_update: during.accepted.len(),
            refused_during_update: during.refused,
            lost_in_update,
            lost_with_worker,
        })
    }
}

/// Deletes the namespace when dropped (without waiting).
struct Namespace<'a>(&'a Kubectl, String);

impl Drop for Namespace<'_> {
    fn drop(&mut self) {
        let _ = self.0.text(&["delete", "namespace", &self.1, "--wait=false"]);
    }
}

/// `cargo xtask deploy --json` in the scratch copy, on a blocking thread
/// (the runtime has one thread: the poster must go on meanwhile); seconds
/// from applied to the last workload ready.
async fn deploy(scratch: &Scratch, context: &str, namespace: &str) -> Result<f64> {
    let mut command = scratch.command(&["deploy", "--context", context, "--namespace", namespace, "--json"]);
    command.stderr(std::process::Stdio::inherit());
    let out =
        tokio::task::spawn_blocking(move || command.output()).await?.context("cannot run `cargo xtask deploy`")?;
    if !out.status.success() {
        bail!("`cargo xtask deploy` failed in {}", scratch.dir.display());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .with_context(|| format!("deploy --json printed no JSON: {text}"))?;
    let times = last["ready_after"].as_object().context("deploy --json has no ready_after")?;
    Ok(times.values().filter_map(serde_json::Value::as_f64).fold(0.0, f64::max))
}

fn set_version(dir: &std::path::Path, version: &str) -> Result<()> {
    let path = dir.join(APP);
    let text = std::fs::read_to_string(&path)?;
    let (before, rest) = text.split_once("version=\"").context("app.py names no version=\"…\"")?;
    let (_, after) = rest.split_once('"').context("app.py's version is not closed")?;
    std::fs::write(&path, format!("{before}version=\"{version}\"{after}"))?;
    Ok(())
}

async fn served_version(api: &str) -> Option<String> {
    let (status, body) = Conn::new(api).request("GET", "/openapi.json", b"").await.ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&body).ok().filter(|_| status == 200)?;
    doc["info"]["version"].as_str().map(str::to_owned)
}

/// POST /searches of one query.
async fn post(api: &str) -> Result<String, String> {
    post_search(api, "kafka").await
}

/// Searches accepted and refused, and the first refusal's reason.
#[derive(Default)]
struct Posted {
    accepted: Vec<String>,
    refused: usize,
    first_refusal: Option<String>,
}

impl Posted {
    fn add(&mut self, result: Result<String, String>) {
        match result {
            Ok(id) => self.accepted.push(id),
            Err(why) => {
                self.refused += 1;
                self.first_refusal.get_or_insert(why);
            }
        }
    }

    /// Fails when nothing was accepted: a count of lost searches over none
    /// would say nothing.
    fn some(self, what: &str) -> Result<Posted> {
        if self.accepted.is_empty() {
            let first = self.first_refusal.unwrap_or_default();
            bail!("no search was accepted {what} ({} refused; first: {first})", self.refused);
        }
        Ok(self)
    }
}

/// A search every 100 ms until `stop`.
async fn post_until(api: String, stop: Arc<AtomicBool>) -> Posted {
    let mut posted = Posted::default();
    while !stop.load(Ordering::SeqCst) {
        posted.add(post(&api).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    posted
}

/// How many of `ids` are still not answered after `timeout`.
async fn unanswered(api: &str, ids: &[String], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&String> = ids.iter().collect();
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for id in pending {
            let answer = Conn::new(api).request("GET", &format!("/searches/{id}"), b"").await;
            let done = answer.ok().and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if done.is_none_or(|d| d["status"] != "done") {
                still.push(id);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    pending.len()
}

fn report(bench: &BenchDeploy, runs: &[Run]) -> String {
    let m = |f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let all = |f: fn(&Run) -> f64| runs.iter().map(|r| format!("{:.1}", f(r))).collect::<Vec<_>>().join(" / ");
    let sum = |f: fn(&Run) -> usize| runs.iter().map(f).sum::<usize>();
    format!(
        "bench-deploy: {} runs on context {}, each in its own namespace\n\n| what | median | runs |\n|---|---|---|\n\
         | `deploy` applied -> every workload ready | {:.1} s | {} s |\n\
         | the whole first `deploy` (build, import, apply, rollout) | {:.1} s | {} s |\n\
         | rolling update: `deploy` of a new api-server version -> that version serving | {:.1} s | {} s |\n\n\
         Searches accepted during the rolling updates: {} (not accepted: {}); lost: {}. Lost with the worker's pod deleted (40 searches \
         per run): {}.\n",
        runs.len(),
        bench.context,
        m(|r| r.ready_seconds),
        all(|r| r.ready_seconds),
        m(|r| r.deploy_seconds),
        all(|r| r.deploy_seconds),
        m(|r| r.update_seconds),
        all(|r| r.update_seconds),
        sum(|r| r.accepted_during_update),
        sum(|r| r.refused_during_update),
        sum(|r| r.lost_in_update),
        sum(|r| r.lost_with_worker),
    )
}
