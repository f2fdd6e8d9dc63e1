//! `up` as named phases, in order, each idempotent (what runs is left
//! running, what exists is kept) and bounded in time, its failure naming
//! the phase and the log to read; and `status`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::process::{self, http_get, listening, running, wait_until};
use super::{
    binaries, config, kubectl, node_ip, pki, teardown, user_kubeconfig, Layout, Node, API_PORT, CONTEXT, CRI_NAMESPACE,
    DNS_READY, ETCD_CLIENT, KUBELET_HOST_DIRS, NODE, PAUSE_IMAGE, PROXY_HEALTHZ,
};

/// The components, in start order (and stopped in reverse).
pub const COMPONENTS: [&str; 8] = [
    "etcd",
    "containerd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "coredns",
];

/// The seconds each phase of an `up` took, in order.
pub type PhaseTimes = Vec<(&'static str, f64)>;

/// Runs one phase: its name, then its time, or its error under its name.
fn phase(times: &mut PhaseTimes, name: &'static str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let started = Instant::now();
    eprintln!("[{name}]");
    f().with_context(|| format!("cluster up: phase `{name}` failed"))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("[{name}] done in {secs:.1}s");
    times.push((name, secs));
    Ok(())
}

/// Brings the node up (or finishes bringing it up) and makes `pysvc-local` the current context.
pub fn up(sh: &Shell, root: &Path, layout: &Layout) -> Result<PhaseTimes> {
    let started = Instant::now();
    let mut t = PhaseTimes::new();
    let ip = node_ip(sh)?;
    phase(&mut t, "preflight", || preflight(sh, layout, &ip))?;
    let mut bin = PathBuf::new();
    phase(&mut t, "binaries", || {
        bin = binaries::ensure(sh, root)?;
        std::fs::create_dir_all(&layout.state)?;
        std::fs::write(layout.bin_marker(), bin.display().to_string())?;
        Ok(())
    })?;
    let node = Node { layout: layout.clone(), bin, ip };
    phase(&mut t, "certs", || {
        std::fs::write(layout.state.join("node-ip"), &node.ip)?;
        pki::ensure(sh, &node)
    })?;
    phase(&mut t, "kubeconfig", || write_kubeconfigs(&node))?;
    phase(&mut t, "etcd", || etcd(&node))?;
    phase(&mut t, "containerd", || containerd(sh, &node))?;
    phase(&mut t, "control-plane", || control_plane(sh, &node))?;
    phase(&mut t, "kubelet", || kubelet(sh, &node))?;
    phase(&mut t, "proxy", || proxy(sh, &node))?;
    phase(&mut t, "dns", || dns(sh, &node))?;
    phase(&mut t, "storage", || recycle_volumes(sh, &node))?;
    phase(&mut t, "context", || add_context(sh, &node))?;
    phase(&mut t, "wait-ready", || wait_ready(sh, &node))?;
    println!(
        "cluster up in {:.1}s: node {NODE} Ready, Kubernetes {}, context `{CONTEXT}` is current\n\
         kubectl of the node's version: {bin}/kubectl get nodes\n\
         images for the node: docker save IMAGE | {bin}/ctr --address {} -n {CRI_NAMESPACE} images import -",
        started.elapsed().as_secs_f64(),
        binaries::KUBERNETES,
        layout.containerd_socket().display(),
        bin = node.bin.display(),
    );
    Ok(t)
}

/// Root, cgroups, programs, kernel settings, free ports.
fn preflight(sh: &Shell, layout: &Layout, ip: &str) -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    anyhow::ensure!(root, "the node runs as root (it mounts, makes cgroups, bridges and iptables rules): run as root");
    let cgroups = ["cpu", "cpuacct", "cpuset", "memory", "pids"];
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let recorded = std::fs::read_to_string(layout.state.join("node-ip")).unwrap_or_default();
    if !recorded.is_empty() && recorded.trim() != ip {
        bail!(
            "the node was made for the address {} and the machine now has {ip} (its certificates name the old one): \
             cargo xtask cluster down, then up",
            recorded.trim()
        );
    }
    if let Some(missing) = cgroups.iter().find(|c| !v2 && !Path::new("/sys/fs/cgroup").join(c).exists()) {
        bail!("the cgroup controller `{missing}` is not mounted under /sys/fs/cgroup; the kubelet needs it");
    }
    let needed = [
        ("/usr/bin/openssl", "openssl"),
        ("/usr/sbin/iptables", "iptables"),
        ("/usr/sbin/ip", "iproute2"),
        ("/usr/sbin/runc", "runc"),
        ("/usr/lib/cni/bridge", "containernetworking-plugins"),
        ("/usr/lib/cni/host-local", "containernetworking-plugins"),
        ("/usr/lib/cni/loopback", "containernetworking-plugins"),
    ];
    let mut missing: Vec<&str> = needed.iter().filter(|(f, _)| !Path::new(f).exists()).map(|(_, p)| *p).collect();
    missing.dedup();
    anyhow::ensure!(missing.is_empty(), "missing programs: apt-get install -y {}", missing.join(" "));
    if !Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        cmd!(sh, "modprobe br_netfilter").quiet().run().context("Service traffic between pods needs br_netfilter")?;
    }
    for (key, want) in [("net/bridge/bridge-nf-call-iptables", "1"), ("net/ipv4/ip_forward", "1")] {
        let path = Path::new("/proc/sys").join(key);
        if std::fs::read_to_string(&path).unwrap_or_default().trim() != want {
            eprintln!("  sysctl {} = {want}", key.replace('/', "."));
            std::fs::write(&path, want).with_context(|| format!("cannot set {}", path.display()))?;
        }
    }
    let ports = [
        ("etcd", ETCD_CLIENT.to_owned()),
        ("kube-apiserver", format!("{ip}:{API_PORT}")),
        ("kubelet", format!("{ip}:10250")),
        ("kube-proxy", PROXY_HEALTHZ.to_owned()),
        ("coredns", DNS_READY.to_owned()),
    ];
    for (component, addr) in ports {
        if running(layout, component).is_none() && listening(&addr) {
            bail!("{addr} is taken by another program ({component} of the node listens there): stop it, then retry");
        }
    }
    Ok(())
}

/// Writes the kubeconfig of every component that talks to the API.
fn write_kubeconfigs(node: &Node) -> Result<()> {
    for who in ["admin", "controller-manager", "scheduler", "kubelet", "kube-proxy", "coredns"] {
        crate::util::write_atomic(&node.layout.kubeconfig(who), &config::kubeconfig(node, who))?;
    }
    Ok(())
}

/// Starts `name` unless it runs, with its command line from `config::command`.
fn start(node: &Node, name: &str, env: &[(&str, String)]) -> Result<()> {
    if let Some(pid) = running(&node.layout, name) {
        eprintln!("  {name} runs (pid {pid})");
        return Ok(());
    }
    process::spawn(&node.layout, &node.bin, name, &config::command(node, name), env)?;
    Ok(())
}

/// Waits for `ready`, failing early when the component exited (with its log's tail).
fn await_component(node: &Node, name: &str, what: &str, secs: u64, mut ready: impl FnMut() -> bool) -> Result<()> {
    let log = node.layout.log(name);
    let mut exited = false;
    let outcome = wait_until(what, Duration::from_secs(secs), &log, || {
        // Not `running`: while setsid execs the program its command line reads empty for an instant.
        exited = !process::pid_file(&node.layout, name).is_some_and(process::alive);
        exited || ready()
    });
    if exited {
        bail!("{name} exited; the end of {}:\n{}", log.display(), process::tail(&log, 15));
    }
    outcome
}

fn etcd(node: &Node) -> Result<()> {
    start(node, "etcd", &[])?;
    await_component(node, "etcd", "etcd /health", 60, || {
        http_get(ETCD_CLIENT, "/health").is_some_and(|(code, body)| code == 200 && body.contains("true"))
    })
}

/// containerd with its configuration and the CNI network, then the pause image.
fn containerd(sh: &Shell, node: &Node) -> Result<()> {
    let layout = &node.layout;
    crate::util::write_atomic(&layout.state.join("containerd.toml"), &config::containerd(layout, has_sys_resource()))?;
    crate::util::write_atomic(&layout.state.join("cni/net.d/10-pysvc.conflist"), &config::cni(layout))?;
    std::fs::create_dir_all(layout.run.join("containerd"))?;
    let path = format!("{}:{}", node.bin.display(), std::env::var("PATH").unwrap_or_default());
    start(node, "containerd", &[("PATH", path)])?;
    let ctr = node.bin.join("ctr");
    let socket = layout.containerd_socket();
    await_component(node, "containerd", "containerd's socket", 30, || {
        cmd!(sh, "{ctr} --address {socket} version").quiet().ignore_stdout().ignore_stderr().run().is_ok()
    })?;
    let images = cmd!(sh, "{ctr} --address {socket} -n {CRI_NAMESPACE} images ls -q").quiet().ignore_stderr().read()?;
    if !images.lines().any(|l| l == PAUSE_IMAGE) {
        let tar = node.bin.join("pause.tar");
        cmd!(sh, "{ctr} --address {socket} -n {CRI_NAMESPACE} images import {tar}")
            .quiet()
            .ignore_stdout()
            .run()
            .context("importing the pause image into the node's containerd failed")?;
    }
    Ok(())
}

/// Whether this process has CAP_SYS_RESOURCE (bit 24 of its effective set).
fn has_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim).unwrap_or("0");
    u64::from_str_radix(eff, 16).is_ok_and(|bits| bits & (1 << 24) != 0)
}

/// `kubectl --kubeconfig <admin>` with the node's kubectl.
pub fn admin_kubectl(sh: &Shell, layout: &Layout, bin: &Path, args: &[&str]) -> Result<String> {
    let (kubectl, kubeconfig) = (kubectl(Some(bin)), layout.kubeconfig("admin"));
    cmd!(sh, "{kubectl} --kubeconfig {kubeconfig} --request-timeout=5s {args...}")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| format!("kubectl {} failed", args.join(" ")))
}

fn control_plane(sh: &Shell, node: &Node) -> Result<()> {
    start(node, "kube-apiserver", &[])?;
    await_component(node, "kube-apiserver", "the API server's /readyz", 120, || {
        admin_kubectl(sh, &node.layout, &node.bin, &["get", "--raw", "/readyz"]).is_ok_and(|o| o.trim() == "ok")
    })?;
    start(node, "kube-controller-manager", &[])?;
    start(node, "kube-scheduler", &[])?;
    await_component(node, "kube-controller-manager", "kube-controller-manager on 127.0.0.1:10257", 60, || {
        listening("127.0.0.1:10257")
    })?;
    await_component(node, "kube-scheduler", "kube-scheduler on 127.0.0.1:10259", 60, || listening("127.0.0.1:10259"))
}

fn kubelet(sh: &Shell, node: &Node) -> Result<()> {
    if running(&node.layout, "kubelet").is_none() {
        let made = node.layout.host_dirs_made();
        let mut list = std::fs::read_to_string(&made).unwrap_or_default();
        for dir in KUBELET_HOST_DIRS.iter().filter(|d| !Path::new(d).exists()) {
            list.push_str(&format!("{dir}\n"));
        }
        std::fs::write(&made, list)?;
    }
    crate::util::write_atomic(&node.layout.state.join("kubelet.yaml"), &config::kubelet(node))?;
    std::fs::create_dir_all(node.layout.state.join("pod-logs"))?;
    start(node, "kubelet", &[])?;
    await_component(node, "kubelet", "the node registered by the kubelet", 90, || {
        admin_kubectl(sh, &node.layout, &node.bin, &["get", "node", NODE, "-o", "name"]).is_ok()
    })
}

fn proxy(sh: &Shell, node: &Node) -> Result<()> {
    teardown::remove_firewall(sh);
    teardown::add_firewall(sh)?;
    crate::util::write_atomic(&node.layout.state.join("kube-proxy.yaml"), &config::kube_proxy(node))?;
    start(node, "kube-proxy", &[])?;
    await_component(node, "kube-proxy", "kube-proxy's /healthz", 60, || {
        http_get(PROXY_HEALTHZ, "/healthz").is_some_and(|(code, _)| code == 200)
    })
}

/// CoreDNS's role, the `kube-dns` Service and its EndpointSlice, the
/// storage class and volumes; then CoreDNS on the node.
fn dns(sh: &Shell, node: &Node) -> Result<()> {
    let volumes = node.layout.state.join("volumes");
    for n in 1..=config::VOLUMES {
        let dir = volumes.join(format!("pv-{n}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    }
    let objects = node.layout.state.join("objects.yaml");
    crate::util::write_atomic(&objects, &config::cluster_objects(&node.ip, &volumes))?;
    let file = objects.display().to_string();
    let mut last = String::new();
    wait_until("applying the DNS Service and the storage class", Duration::from_secs(30), &objects, || {
        match admin_kubectl(sh, &node.layout, &node.bin, &["apply", "-f", &file]) {
            Ok(_) => true,
            Err(e) => {
                last = format!("{e:#}");
                false
            }
        }
    })
    .with_context(|| last.clone())?;
    crate::util::write_atomic(&node.layout.state.join("Corefile"), &config::corefile(node))?;
    start(node, "coredns", &[])?;
    await_component(node, "coredns", "CoreDNS's /ready", 60, || {
        http_get(DNS_READY, "/ready").is_some_and(|(code, _)| code == 200)
    })
}

/// Offers the volumes of deleted claims again (their phase is `Released`:
/// the class keeps data, so no claim gets it by chance): each folder
/// emptied, then the claim reference dropped. `up` on a running node does
/// it, so a test that deletes its namespace gets fresh volumes next time.
fn recycle_volumes(sh: &Shell, node: &Node) -> Result<()> {
    let jsonpath = "-o=jsonpath={range .items[?(@.status.phase==\"Released\")]}{.metadata.name}{\"\\n\"}{end}";
    let released = admin_kubectl(sh, &node.layout, &node.bin, &["get", "pv", jsonpath])?;
    for name in released.lines().filter_map(|n| n.strip_prefix("pysvc-local-")) {
        let dir = node.layout.state.join("volumes").join(format!("pv-{name}"));
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        let pv = format!("pysvc-local-{name}");
        let patch = r#"[{"op":"remove","path":"/spec/claimRef"}]"#;
        admin_kubectl(sh, &node.layout, &node.bin, &["patch", "pv", &pv, "--type=json", "-p", patch])?;
        eprintln!("  {pv}: released by its claim, emptied and offered again");
    }
    Ok(())
}

/// For `deploy` to the running node: the volumes of claims deleted since
/// `up` (a test's or a bench's namespace) offered again first, so that
/// deploys do not use up the node's volumes.
pub fn offer_released_volumes(sh: &Shell, layout: &Layout) -> Result<()> {
    let bin = layout.bin_dir().context("no local node runs: `cargo xtask cluster up`")?;
    recycle_volumes(sh, &Node { layout: layout.clone(), bin, ip: String::new() })
}

/// The context in the user's kubeconfig (certificates embedded), made current.
fn add_context(sh: &Shell, node: &Node) -> Result<()> {
    let (kubectl, file) = (kubectl(Some(&node.bin)), user_kubeconfig());
    let pki = node.layout.pki();
    let (ca, crt, key) = (pki.join("ca.crt"), pki.join("admin.crt"), pki.join("admin.key"));
    let server = format!("https://{}:{API_PORT}", node.ip);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let k = |args: &[&str]| {
        cmd!(sh, "{kubectl} config --kubeconfig {file} {args...}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("kubectl config {} on {} failed", args.join(" "), file.display()))
    };
    let (ca, crt, key) = (format!("--certificate-authority={}", ca.display()), crt.display(), key.display());
    k(&["set-cluster", CONTEXT, &format!("--server={server}"), &ca, "--embed-certs=true"])?;
    let (crt, key) = (format!("--client-certificate={crt}"), format!("--client-key={key}"));
    k(&["set-credentials", CONTEXT, &crt, &key, "--embed-certs=true"])?;
    k(&["set-context", CONTEXT, &format!("--cluster={CONTEXT}"), &format!("--user={CONTEXT}")])?;
    k(&["use-context", CONTEXT])?;
    eprintln!("  context {CONTEXT} in {} (current)", file.display());
    Ok(())
}

/// The node Ready and the controllers at work (the default ServiceAccount exists).
fn wait_ready(sh: &Shell, node: &Node) -> Result<()> {
    let jsonpath = "-o=jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    await_component(node, "kubelet", "the node's Ready condition", 120, || {
        admin_kubectl(sh, &node.layout, &node.bin, &["get", "node", NODE, jsonpath]).is_ok_and(|s| s.trim() == "True")
    })?;
    await_component(node, "kube-controller-manager", "the default ServiceAccount", 60, || {
        admin_kubectl(sh, &node.layout, &node.bin, &["get", "serviceaccount", "default", "-o", "name"]).is_ok()
    })
}

/// What runs, whether the API answers and the node is Ready, and the context.
pub fn status(sh: &Shell, layout: &Layout) -> Result<()> {
    println!("{:<26} {:<10} PID", "COMPONENT", "STATE");
    let mut any = false;
    for name in COMPONENTS {
        match running(layout, name) {
            Some(pid) => {
                any = true;
                println!("{name:<26} {:<10} {pid}", "running");
            }
            None => println!("{name:<26} {:<10} -", "stopped"),
        }
    }
    let Some(bin) = layout.bin_dir().filter(|_| any) else {
        println!("no node runs here (cargo xtask cluster up starts one)");
        return Ok(());
    };
    let api = admin_kubectl(sh, layout, &bin, &["get", "--raw", "/readyz"]).map(|o| o.trim() == "ok").unwrap_or(false);
    let jsonpath = "-o=jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    let ready = admin_kubectl(sh, layout, &bin, &["get", "node", NODE, jsonpath]).unwrap_or_default();
    println!("API server: {}", if api { "ready" } else { "not answering /readyz" });
    println!("node {NODE}: {}", if ready.trim() == "True" { "Ready" } else { "not Ready" });
    let (kubectl, file) = (kubectl(Some(&bin)), user_kubeconfig());
    let contexts = cmd!(sh, "{kubectl} config --kubeconfig {file} get-contexts -o name")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    let has = contexts.lines().any(|c| c == CONTEXT);
    println!("context {CONTEXT}: {}", if has { "in the kubeconfig" } else { "absent" });
    println!("containerd socket: {}", layout.containerd_socket().display());
    Ok(())
}
