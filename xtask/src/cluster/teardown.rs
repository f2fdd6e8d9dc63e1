//! `down`: the pods first (so CNI tears their networks down), then every
//! component, whatever containerd's shims still hold, the mounts under the
//! node's folders, the bridge, kube-proxy's chains and ours, the cgroups,
//! the node's state and its context in the user's kubeconfig. Each step
//! tolerates what an earlier failed `up` or `down` left half done. And the
//! two iptables chains the node owns.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::phases::{admin_kubectl, COMPONENTS};
use super::process::{self, running};
use super::{kubectl, user_kubeconfig, Layout, BRIDGE, CONTEXT, CRI_NAMESPACE, KUBELET_HOST_DIRS, POD_CIDR};

/// The node's own chains: masquerade of pod traffic leaving the pod
/// network (nat), and forwarding to and from its bridge past Docker's
/// FORWARD policy of DROP (filter).
const NAT_CHAIN: &str = "PYSVC-CLUSTER-MASQ";
const FORWARD_CHAIN: &str = "PYSVC-CLUSTER-FWD";
const COMMENT: &str = "pysvc-cluster";

pub fn add_firewall(sh: &Shell) -> Result<()> {
    let rules: [&[&str]; 8] = [
        &["-t", "nat", "-N", NAT_CHAIN],
        &["-t", "nat", "-A", NAT_CHAIN, "-d", POD_CIDR, "-j", "RETURN"],
        &["-t", "nat", "-A", NAT_CHAIN, "-j", "MASQUERADE"],
        &["-t", "nat", "-A", "POSTROUTING", "-s", POD_CIDR, "-m", "comment", "--comment", COMMENT, "-j", NAT_CHAIN],
        &["-t", "filter", "-N", FORWARD_CHAIN],
        &["-t", "filter", "-A", FORWARD_CHAIN, "-i", BRIDGE, "-j", "ACCEPT"],
        &["-t", "filter", "-A", FORWARD_CHAIN, "-o", BRIDGE, "-j", "ACCEPT"],
        &["-t", "filter", "-I", "FORWARD", "1", "-m", "comment", "--comment", COMMENT, "-j", FORWARD_CHAIN],
    ];
    for rule in rules {
        cmd!(sh, "iptables -w {rule...}")
            .quiet()
            .run()
            .with_context(|| format!("iptables {} failed", rule.join(" ")))?;
    }
    Ok(())
}

/// Removes the node's two chains and the rules that jump to them; nothing else.
pub fn remove_firewall(sh: &Shell) {
    let jumps: [(&str, &str, &[&str]); 2] = [
        ("nat", "POSTROUTING", &["-s", POD_CIDR, "-m", "comment", "--comment", COMMENT, "-j", NAT_CHAIN]),
        ("filter", "FORWARD", &["-m", "comment", "--comment", COMMENT, "-j", FORWARD_CHAIN]),
    ];
    for (table, chain, rule) in jumps {
        while cmd!(sh, "iptables -w -t {table} -D {chain} {rule...}").quiet().ignore_stderr().run().is_ok() {}
    }
    for (table, chain) in [("nat", NAT_CHAIN), ("filter", FORWARD_CHAIN)] {
        let _ = cmd!(sh, "iptables -w -t {table} -F {chain}").quiet().ignore_stderr().run();
        let _ = cmd!(sh, "iptables -w -t {table} -X {chain}").quiet().ignore_stderr().run();
    }
}

/// Removes the node: no process, mount, interface, iptables rule or state of it stays.
pub fn down(sh: &Shell, layout: &Layout) -> Result<()> {
    let bin = layout.bin_dir();
    if let Some(bin) = &bin {
        delete_pods(sh, layout, bin);
    }
    for name in COMPONENTS.iter().rev() {
        let grace = if *name == "containerd" { 10 } else { 5 };
        if *name == "containerd" {
            kill_containers(layout);
        }
        if process::stop(layout, name, Duration::from_secs(grace)) {
            eprintln!("  stopped {name}");
        }
    }
    kill_containers(layout);
    unmount_below(sh, &[&layout.run, &layout.state])?;
    let _ = cmd!(sh, "ip link del {BRIDGE}").quiet().ignore_stderr().run();
    if let Some(bin) = &bin {
        let proxy = bin.join("kube-proxy");
        let _ = cmd!(sh, "{proxy} --cleanup").quiet().ignore_stdout().ignore_stderr().run();
    }
    remove_firewall(sh);
    for tool in ["iptables", "ip6tables"] {
        remove_kube_chains(sh, tool);
    }
    remove_cgroups();
    remove_kubelet_host_files(layout);
    for dir in [&layout.run, &layout.state] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    remove_context(sh, bin.as_deref())?;
    let left = leftovers(sh, layout, bin.as_deref());
    anyhow::ensure!(left.is_empty(), "cluster down left behind:\n  {}", left.join("\n  "));
    println!(
        "cluster down: no process, mount, bridge, veth or iptables chain of the node is left; logs kept in {}",
        layout.logs.display()
    );
    Ok(())
}

/// What of the node is still there: processes of its binaries or shims,
/// mounts below its folders, its bridge or a veth on it, `KUBE-*` or
/// `PYSVC-*` chains. Empty after a clean `down`.
fn leftovers(sh: &Shell, layout: &Layout, bin: Option<&Path>) -> Vec<String> {
    let mut left = Vec::new();
    let socket = layout.containerd_socket().display().to_string();
    for pid in process::all_pids() {
        let line = process::cmdline(pid);
        let ours = bin.is_some_and(|b| line.starts_with(&b.display().to_string())) || line.contains(&socket);
        if ours && process::alive(pid) {
            left.push(format!("process {pid}: {line}"));
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in info.lines().filter_map(|l| l.split_whitespace().nth(4)) {
        if Path::new(point).starts_with(&layout.run) || Path::new(point).starts_with(&layout.state) {
            left.push(format!("mount {point}"));
        }
    }
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        left.push(format!("interface {BRIDGE}"));
    }
    for tool in ["iptables-save", "ip6tables-save"] {
        let text = cmd!(sh, "{tool}").quiet().ignore_stderr().read().unwrap_or_default();
        let chains: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(':')?.split_whitespace().next())
            .filter(|c| c.starts_with("KUBE-") || c.starts_with("PYSVC-"))
            .collect();
        if !chains.is_empty() {
            left.push(format!("{tool}: chains {}", chains.join(", ")));
        }
    }
    left
}

/// Stops the controllers (nothing recreates pods), force-deletes every
/// pod and waits up to 60 s for the kubelet to stop their sandboxes (CNI
/// releases each address and veth). What is still running after that is
/// killed with the shims.
fn delete_pods(sh: &Shell, layout: &Layout, bin: &Path) {
    if running(layout, "kube-apiserver").is_none() || running(layout, "kubelet").is_none() {
        return;
    }
    for name in ["kube-controller-manager", "kube-scheduler"] {
        process::stop(layout, name, Duration::from_secs(5));
    }
    let args = ["delete", "pods", "--all", "--all-namespaces", "--grace-period=0", "--force", "--wait=false"];
    if admin_kubectl(sh, layout, bin, &args).is_err() {
        return;
    }
    let ctr = bin.join("ctr");
    let socket = layout.containerd_socket();
    let none_left = || {
        cmd!(sh, "{ctr} --address {socket} -n {CRI_NAMESPACE} tasks ls -q")
            .quiet()
            .ignore_stderr()
            .read()
            .is_ok_and(|o| o.trim().is_empty())
    };
    let log = layout.log("kubelet");
    if process::wait_until("pods stopped by the kubelet", Duration::from_secs(60), &log, none_left).is_err() {
        eprintln!("warning: pods still running after 60 s; killing them");
    }
}

/// Kills every process a shim of the node's containerd holds, then the shims.
fn kill_containers(layout: &Layout) {
    let address = layout.containerd_socket().display().to_string();
    let shims: Vec<u32> = process::all_pids()
        .into_iter()
        .filter(|p| {
            let line = process::cmdline(*p);
            line.contains("containerd-shim-runc-v2") && line.contains(&address)
        })
        .collect();
    for shim in shims {
        let mut children = process::descendants(shim);
        children.reverse();
        for child in children {
            process::signal(child, "KILL");
        }
        process::stop_pid(shim, Duration::from_secs(2));
    }
}

/// Unmounts every mount point below the given folders, deepest first (lazily when busy).
fn unmount_below(sh: &Shell, dirs: &[&Path]) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| dirs.iter().any(|d| Path::new(p).starts_with(d)))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for point in points {
        if cmd!(sh, "umount {point}").quiet().ignore_stderr().run().is_err() {
            cmd!(sh, "umount -l {point}").quiet().run().with_context(|| format!("cannot unmount {point}"))?;
        }
    }
    Ok(())
}

/// The kubelet's cgroups (`kubepods` under each v1 controller), deepest first; only empty ones go.
fn remove_cgroups() {
    let roots: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.flatten().map(|e| e.path().join("kubepods")).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    for root in roots {
        let mut dirs: Vec<_> =
            walkdir::WalkDir::new(&root).into_iter().flatten().filter(|e| e.file_type().is_dir()).collect();
        dirs.sort_by_key(|e| std::cmp::Reverse(e.depth()));
        for d in dirs {
            let _ = std::fs::remove_dir(d.path());
        }
    }
}

/// What the kubelet put outside the node's folders: its container log links
/// in /var/log/containers (ours point into the node's state), its
/// device-plugin socket; then the folders it made there, if empty.
fn remove_kubelet_host_files(layout: &Layout) {
    for entry in std::fs::read_dir("/var/log/containers").into_iter().flatten().flatten() {
        if std::fs::read_link(entry.path()).is_ok_and(|t| t.starts_with(&layout.state)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_file("/var/lib/kubelet/device-plugins/kubelet.sock");
    let made = std::fs::read_to_string(layout.host_dirs_made()).unwrap_or_default();
    let mut dirs: Vec<&str> = made.lines().filter(|d| KUBELET_HOST_DIRS.contains(d)).collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
    for dir in dirs {
        let _ = std::fs::remove_dir(dir);
    }
}

/// The context, cluster and user `pysvc-local` out of the user's kubeconfig (current-context unset if it was ours).
fn remove_context(sh: &Shell, bin: Option<&Path>) -> Result<()> {
    let (kubectl, file) = (kubectl(bin), user_kubeconfig());
    if !file.exists() {
        return Ok(());
    }
    let current = cmd!(sh, "{kubectl} config --kubeconfig {file} current-context").quiet().ignore_stderr().read();
    if current.is_ok_and(|c| c.trim() == CONTEXT) {
        let _ = cmd!(sh, "{kubectl} config --kubeconfig {file} unset current-context").quiet().ignore_stdout().run();
    }
    let _ = cmd!(sh, "{kubectl} config --kubeconfig {file} delete-context {CONTEXT}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
    let _ = cmd!(sh, "{kubectl} config --kubeconfig {file} delete-cluster {CONTEXT}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
    let _ = cmd!(sh, "{kubectl} config --kubeconfig {file} delete-user {CONTEXT}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
    Ok(())
}

/// A rule as `-D` takes it, with its table.
pub type TableRule = (String, Vec<String>);

/// What `iptables-save` shows of Kubernetes: the rules of other chains that
/// jump to a `KUBE-*` chain (as `-D` arguments, per table), and the `KUBE-*`
/// chains. kube-proxy's and the kubelet's (`KUBE-FIREWALL`, the canaries)
/// alike; the node is the only Kubernetes on the machine.
pub fn kube_rules(save: &str) -> (Vec<TableRule>, Vec<(String, String)>) {
    let (mut jumps, mut chains, mut table) = (Vec::new(), Vec::new(), String::new());
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_owned();
        } else if let Some(chain) = line.strip_prefix(':').and_then(|c| c.split_whitespace().next()) {
            if chain.starts_with("KUBE-") {
                chains.push((table.clone(), chain.to_owned()));
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let words = split_quoted(rule);
            let jumps_to_kube = words.windows(2).any(|w| (w[0] == "-j" || w[0] == "-g") && w[1].starts_with("KUBE-"));
            if jumps_to_kube && !words[0].starts_with("KUBE-") {
                jumps.push((table.clone(), words));
            }
        }
    }
    (jumps, chains)
}

/// Words of an `iptables-save` rule, double-quoted ones as one word without the quotes.
fn split_quoted(rule: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in rule.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            _ => word.push(c),
        }
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    words
}

/// Removes every `KUBE-*` chain of `tool` (iptables or ip6tables) and the rules that jump to them.
fn remove_kube_chains(sh: &Shell, tool: &str) {
    let save = format!("{tool}-save");
    let Ok(text) = cmd!(sh, "{save}").quiet().ignore_stderr().read() else { return };
    let (jumps, chains) = kube_rules(&text);
    for (table, rule) in jumps {
        let _ = cmd!(sh, "{tool} -w -t {table} -D {rule...}").quiet().ignore_stderr().run();
    }
    for (table, chain) in &chains {
        let _ = cmd!(sh, "{tool} -w -t {table} -F {chain}").quiet().ignore_stderr().run();
    }
    for (table, chain) in &chains {
        let _ = cmd!(sh, "{tool} -w -t {table} -X {chain}").quiet().ignore_stderr().run();
    }
}
