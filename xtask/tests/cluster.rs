//! The stack on a real Kubernetes node: `cargo xtask cluster up` (the
//! machine's local node, started if it is not running), then `cargo xtask
//! deploy` of a scratch copy into a namespace of its own, removed with its
//! images when the test ends, also when it fails. Ignored by a plain `cargo
//! test`: `cargo xtask test --cluster` runs it (README: Kubernetes).

mod common;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const CONTEXT: &str = "pysvc-local";

fn kubectl_out(args: &[&str]) -> Output {
    Command::new("kubectl")
        .args(["--context", CONTEXT, "--request-timeout=20s"])
        .args(args)
        .output()
        .expect("kubectl runs")
}

fn kubectl(args: &[&str]) -> String {
    let out = kubectl_out(args);
    assert!(out.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A scratch copy deployed into its own namespace; dropping it deletes the
/// namespace (its PVCs with it) and the images it imported into the node.
struct Deployed {
    stack: TestStack,
    namespace: String,
}

impl Deployed {
    fn deploy(&self) -> String {
        self.stack.ok(&["deploy", "--context", CONTEXT, "--namespace", &self.namespace, "--timeout", "600"])
    }

    fn get(&self, args: &[&str]) -> String {
        kubectl(&[&["-n", &self.namespace], args].concat())
    }

    /// The api-server through its Service's cluster IP (kube-proxy routes
    /// this machine's own connections too), so a rolling update is seen as
    /// a client of the Service sees it.
    fn api(&self) -> String {
        format!("{}:8000", self.get(&["get", "service", "api-server", "-o", "jsonpath={.spec.clusterIP}"]))
    }

    fn pod_uids(&self) -> String {
        self.get(&["get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.uid} {end}"])
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let _ = kubectl_out(&["delete", "namespace", &self.namespace, "--wait=false"]);
        let Ok(bin) = std::fs::read_to_string("/var/lib/pysvc-cluster/bin-dir") else { return };
        let ctr = std::path::Path::new(bin.trim()).join("ctr");
        let sock = "/run/pysvc-cluster/containerd/containerd.sock";
        let list = Command::new(&ctr).args(["--address", sock, "-n", "k8s.io", "images", "list", "-q"]).output();
        let prefix = format!("docker.io/{}/", self.stack.project);
        let mine: Vec<String> = list
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.starts_with(&prefix))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if !mine.is_empty() {
            let _ = Command::new(&ctr).args(["--address", sock, "-n", "k8s.io", "images", "rm"]).args(&mine).output();
        }
    }
}

/// Posts a search every 100 ms until stopped; the ids accepted (202).
fn post_while(addr: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Vec<String>, usize)> {
    std::thread::spawn(move || {
        let (mut accepted, mut refused) = (Vec::new(), 0);
        while !stop.load(Ordering::SeqCst) {
            match http_at(&addr, "POST", "/searches", Some(b"{\"query\": \"kafka\"}")) {
                Ok((202, body)) => accepted.push(json(&body)["id"].as_str().unwrap_or_default().to_owned()),
                _ => refused += 1,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (accepted, refused)
    })
}

#[test]
#[ignore = "needs the local Kubernetes node: run by `cargo xtask test --cluster`"]
fn the_stack_runs_on_a_real_node_through_a_rolling_update_and_a_lost_worker() {
    let _guard = serial();
    expect_ok("cargo xtask cluster up", xtask(&["cluster", "up"]));
    let stack = TestStack::new("deploy");
    let namespace = stack.project.clone();
    let d = Deployed { stack, namespace };
    // A rollout that cannot finish in time fails with what is waiting and why.
    let short = d.stack.run(&["deploy", "--context", CONTEXT, "--namespace", &d.namespace, "--timeout", "3"]);
    let said = String::from_utf8_lossy(&short.stderr);
    assert!(!short.status.success() && said.contains("not every workload was ready after 3 s"), "{said}");
    assert!(said.contains("deployment/api-server") && said.contains("warning events"), "{said}");
    let first = d.deploy();
    assert!(first.contains("workloads ready"), "{first}");

    // Pod Security `restricted` is enforced, not only labelled: a
    // privileged pod is refused in that namespace.
    let enforce = r"jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}";
    assert_eq!(kubectl(&["get", "namespace", &d.namespace, "-o", enforce]), "restricted");
    let privileged = kubectl_out(&[
        "-n",
        &d.namespace,
        "run",
        "privileged",
        "--image=pysvc.local/pause:1",
        "--privileged",
        "--restart=Never",
    ]);
    let said = String::from_utf8_lossy(&privileged.stderr);
    assert!(!privileged.status.success() && said.contains("PodSecurity"), "{said}");

    // Every pod Ready (the topics Job done), PostgreSQL and the broker on bound PVCs.
    let phases = d.get(&["get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}"]);
    assert!(phases.split_whitespace().all(|p| p.ends_with("=Running") || p.ends_with("=Succeeded")), "{phases}");
    let claims = d.get(&["get", "pvc", "-o", "jsonpath={range .items[*]}{.status.phase} {end}"]);
    assert!(!claims.is_empty() && claims.split_whitespace().all(|p| p == "Bound"), "PVCs: {claims:?}");

    // A search through the Service is answered.
    let api = d.api();
    let id = post_search_at(&api, "healthcheck");
    let done = answered_at(&api, &id, Duration::from_secs(120));
    assert_eq!(done["results"][0]["title"], "Healthchecks that fail", "{done}");

    // A second deploy with nothing changed changes nothing.
    let uids = d.pod_uids();
    let again = d.deploy();
    assert!(again.contains(" 0 changed"), "{again}");
    assert_eq!(d.pod_uids(), uids, "a deploy with nothing changed restarted pods");

    // A new api-server version rolls out while searches arrive: none lost.
    edit_file(&d.stack.dir, "services/api-server/api_server/app.py", "version=\"1\"", "version=\"2\"");
    let stop = Arc::new(AtomicBool::new(false));
    let posting = post_while(api.clone(), stop.clone());
    let rolled = d.deploy();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let (accepted, refused) = posting.join().unwrap();
    assert!(rolled.contains("deployment.apps/api-server configured"), "{rolled}");
    let (_, openapi) = http_at(&api, "GET", "/openapi.json", None).unwrap();
    assert_eq!(json(&openapi)["info"]["version"], "2", "the new version serves");
    assert!(accepted.len() > 10, "only {} searches accepted during the rollout ({refused} refused)", accepted.len());
    for id in &accepted {
        answered_at(&api, id, Duration::from_secs(120));
    }
    eprintln!("rolling update: {} accepted, {refused} not accepted, all answered", accepted.len());

    // The worker's pod deleted with searches waiting: none lost.
    let ids: Vec<String> = (0..20).map(|_| post_search_at(&api, "cache")).collect();
    let worker = d.get(&["get", "pods", "-l", "app.kubernetes.io/name=search-worker", "-o", "name"]);
    assert!(!worker.is_empty(), "no search-worker pod");
    d.get(&["delete", worker.lines().next().unwrap(), "--wait=false"]);
    let more: Vec<String> = (0..20).map(|_| post_search_at(&api, "proxy")).collect();
    let answered = Mutex::new(0usize);
    for id in ids.iter().chain(&more) {
        answered_at(&api, id, Duration::from_secs(180));
        *answered.lock().unwrap() += 1;
    }
    assert_eq!(*answered.lock().unwrap(), 40);
}

#[test]
#[ignore = "needs the local Kubernetes node: run by `cargo xtask test --cluster`"]
fn deploy_explains_bad_input() {
    let _guard = serial();
    expect_ok("cargo xtask cluster up", xtask(&["cluster", "up"]));
    // A context whose server does not answer.
    let config = std::env::temp_dir().join(format!("pysvct-kubeconfig-{}", std::process::id()));
    let dead = "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster: {server: 'https://127.0.0.1:1'}\n\
                contexts:\n- name: dead\n  context: {cluster: dead, user: nobody}\ncurrent-context: dead\n\
                users:\n- name: nobody\n  user: {}\n";
    std::fs::write(&config, dead).unwrap();
    let out = xtask_env(&["deploy"], &[("KUBECONFIG", config.to_str().unwrap())]);
    std::fs::remove_file(&config).ok();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("does not answer at https://127.0.0.1:1"), "{text}");
    assert!(text.contains("cargo xtask cluster up"), "{text}");
    let out = xtask(&["deploy", "--context", "no-such-context"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("no kubeconfig context named \"no-such-context\""), "{text}");
    assert!(text.contains(CONTEXT) && text.contains("fix:"), "{text}");
    let out = xtask(&["deploy", "--context", CONTEXT, "--overlay", "nope"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("no overlay \"nope\"") && text.contains("dev"), "{text}");
}
