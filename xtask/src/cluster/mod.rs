//! A single-node Kubernetes on this machine, built from source and run as
//! plain processes: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, a containerd of its own with the CRI, the kubelet,
//! kube-proxy (iptables) and CoreDNS, on a CNI bridge. `up` runs named
//! phases (like kubeadm's), each bounded in time and idempotent; `down`
//! removes every process, mount, interface and iptables chain it made, and
//! its context from the user's kubeconfig. docs/decisions.md, section 16,
//! says how the node is built and what it is not.
//!
//! Nothing here touches the machine's Docker engine or its containerd: the
//! node's containerd has its own config, root, state, socket, runc root and
//! CNI directories, and its bridge its own name and subnets.

pub mod binaries;
mod config;
mod phases;
mod pki;
mod process;
mod teardown;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

pub use phases::{offer_released_volumes, status, up, PhaseTimes};
pub use teardown::down;

/// The kubeconfig context, cluster and user `up` adds (and `down` removes).
pub const CONTEXT: &str = "pysvc-local";
/// The node's name (its kubelet client certificate says `system:node:<NODE>`).
pub const NODE: &str = "pysvc-node";
/// The pods' network and the part of it this node's bridge hands out.
const POD_CIDR: &str = "10.244.0.0/16";
const POD_SUBNET: &str = "10.244.0.0/24";
/// Services' virtual IPs; the API's is the first, DNS's the tenth, as kubeadm has them.
const SERVICE_CIDR: &str = "10.96.0.0/16";
const API_SERVICE_IP: &str = "10.96.0.1";
const DNS_SERVICE_IP: &str = "10.96.0.10";
/// The CNI bridge and network name, unlike Docker's (`docker0`, `br-*`) and Podman's (`cni-podman*`, `podman*`).
const BRIDGE: &str = "pysvc0";
const CNI_NETWORK: &str = "pysvc-cluster";
/// etcd listens on loopback only, on ports no other etcd takes by default.
const ETCD_CLIENT: &str = "127.0.0.1:23790";
const ETCD_PEER: &str = "127.0.0.1:23800";
const API_PORT: u16 = 6443;
/// CoreDNS's `ready` endpoint.
const DNS_READY: &str = "127.0.0.1:10054";
/// kube-proxy's health endpoint.
const PROXY_HEALTHZ: &str = "127.0.0.1:10256";
/// The pause image every pod's sandbox runs, imported at each `up`.
const PAUSE_IMAGE: &str = "pysvc.local/pause:1";
/// The containerd namespace the CRI uses: images imported there are the kubelet's.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// Where the node keeps things. Everything but the binaries (`bin`, cached
/// per source hash) and the logs is removed by `down`.
#[derive(Debug, Clone)]
pub struct Layout {
    /// etcd's data, the PKI, kubeconfigs, kubelet and containerd roots, CNI.
    pub state: PathBuf,
    /// containerd's state and socket, runc's root (a tmpfs: gone at reboot).
    pub run: PathBuf,
    /// One log per component, truncated at each start, kept by `down`.
    pub logs: PathBuf,
}

impl Layout {
    pub fn system() -> Layout {
        Layout {
            state: PathBuf::from("/var/lib/pysvc-cluster"),
            run: PathBuf::from("/run/pysvc-cluster"),
            logs: PathBuf::from("/var/log/pysvc-cluster"),
        }
    }

    fn pki(&self) -> PathBuf {
        self.state.join("pki")
    }

    fn kubeconfig(&self, who: &str) -> PathBuf {
        self.state.join("kubeconfig").join(format!("{who}.conf"))
    }

    /// The containerd socket: `ctr --address <this> -n k8s.io images import` reaches the node's image store.
    pub fn containerd_socket(&self) -> PathBuf {
        self.run.join("containerd/containerd.sock")
    }

    fn pids(&self) -> PathBuf {
        self.run.join("pids")
    }

    fn log(&self, component: &str) -> PathBuf {
        self.logs.join(format!("{component}.log"))
    }

    /// The file naming the binaries' folder of the running node (written by `up`, read by `status` and `down`).
    fn bin_marker(&self) -> PathBuf {
        self.state.join("bin-dir")
    }

    /// The list of `KUBELET_HOST_DIRS` that did not exist before the node's first kubelet.
    fn host_dirs_made(&self) -> PathBuf {
        self.state.join("host-dirs-made")
    }

    /// The binaries the node was started with, if it was.
    fn bin_dir(&self) -> Option<PathBuf> {
        let text = std::fs::read_to_string(self.bin_marker()).ok()?;
        let dir = PathBuf::from(text.trim());
        dir.is_dir().then_some(dir)
    }
}

/// Folders outside the layout the kubelet makes whatever its `--root-dir`
/// (its device-plugin socket and container log links are fixed paths).
/// `up` records those it made (`Layout::host_dirs_made`); `down` removes
/// what it put there and those folders if then empty.
const KUBELET_HOST_DIRS: [&str; 3] = ["/var/log/containers", "/var/lib/kubelet", "/var/lib/kubelet/device-plugins"];

/// The running node's image store (its containerd and `ctr`), where
/// `deploy` imports the stack's images; None when no node runs.
pub fn image_store() -> Option<crate::kube::NodeStore> {
    let layout = Layout::system();
    let ctr = layout.bin_dir()?.join("ctr");
    crate::kube::NodeStore::at(layout.containerd_socket(), ctr)
}

/// What a component is started with, besides the layout.
#[derive(Debug, Clone)]
struct Node {
    layout: Layout,
    bin: PathBuf,
    /// The address of the interface of the default route: the API server and the kubelet listen on it.
    ip: String,
}

/// The address the machine reaches its default route from.
fn node_ip(sh: &Shell) -> Result<String> {
    let route = cmd!(sh, "ip -4 route get 1.1.1.1").quiet().read().context("`ip -4 route get 1.1.1.1` failed")?;
    route
        .split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
        .map(str::to_owned)
        .context("no source address in `ip -4 route get 1.1.1.1`: the node needs a default route")
}

/// The user's kubeconfig: the first file of `$KUBECONFIG`, else `~/.kube/config` (as kubectl writes it).
fn user_kubeconfig() -> PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG").and_then(|v| std::env::split_paths(&v).next()) {
        if !first.as_os_str().is_empty() {
            return first;
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".kube/config")
}

/// A kubectl for editing kubeconfigs and applying objects: the node's own (its version) when built, else the PATH's.
fn kubectl(bin: Option<&Path>) -> PathBuf {
    bin.map(|b| b.join("kubectl")).filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("kubectl"))
}

#[cfg(test)]
mod tests;
