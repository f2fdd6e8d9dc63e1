use std::path::{Path, PathBuf};

use super::*;

fn node() -> Node {
    Node { layout: Layout::system(), bin: PathBuf::from("/cache/bin"), ip: "192.0.2.2".into() }
}

#[test]
fn containerd_is_a_separate_instance_with_cgroupfs_and_the_local_pause_image() {
    let text = config::containerd(&Layout::system(), true);
    assert!(text.contains("restrict_oom_score_adj = false"));
    assert!(config::containerd(&Layout::system(), false).contains("restrict_oom_score_adj = true"));
    assert!(text.contains("address = \"/run/pysvc-cluster/containerd/containerd.sock\""));
    assert!(text.contains("root = \"/var/lib/pysvc-cluster/containerd\""));
    assert!(text.contains("Root = \"/run/pysvc-cluster/runc\""));
    assert!(text.contains("SystemdCgroup = false"));
    assert!(text.contains(&format!("sandbox = \"{PAUSE_IMAGE}\"")));
    assert!(text.contains("conf_dir = \"/var/lib/pysvc-cluster/cni/net.d\""));
    assert!(text.contains("io.containerd.nri.v1.nri"), "NRI's socket is machine-wide: off");
    assert!(
        !text.contains("/run/containerd/") && !text.contains("/etc/containerd"),
        "never the system containerd's paths"
    );
}

#[test]
fn the_cni_network_has_its_own_bridge_subnet_and_leases_and_no_iptables_plugin() {
    let v: serde_json::Value = serde_json::from_str(&config::cni(&Layout::system())).unwrap();
    let bridge = &v["plugins"][0];
    assert_eq!(bridge["bridge"], BRIDGE);
    assert_eq!(bridge["ipMasq"], false);
    assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], POD_SUBNET);
    assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/pysvc-cluster/cni/ipam");
    assert_eq!(v["plugins"].as_array().unwrap().len(), 1, "no portmap/firewall: they write shared CNI-* chains");
    for taken in ["172.17.", "172.18.", "172.30."] {
        assert!(!POD_SUBNET.starts_with(taken) && !SERVICE_CIDR.starts_with(taken));
    }
}

#[test]
fn the_kubelet_runs_on_cgroup_v1_with_cgroupfs_and_the_local_dns() {
    let text = config::kubelet(&node());
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(v["failCgroupV1"], serde_yaml::Value::Bool(false));
    assert_eq!(v["cgroupDriver"], "cgroupfs");
    assert_eq!(v["clusterDNS"][0], DNS_SERVICE_IP);
    assert_eq!(v["containerRuntimeEndpoint"], "unix:///run/pysvc-cluster/containerd/containerd.sock");
    assert_eq!(v["authentication"]["anonymous"]["enabled"], serde_yaml::Value::Bool(false));
}

#[test]
fn every_component_has_a_command_line_naming_only_node_paths() {
    let n = node();
    for name in phases::COMPONENTS {
        let args = config::command(&n, name);
        assert!(!args.is_empty(), "{name}");
        for a in &args {
            assert!(!a.contains("/etc/kubernetes") && !a.contains("/var/lib/kubelet"), "{name}: {a}");
        }
    }
    let api = config::command(&n, "kube-apiserver").join(" ");
    assert!(api.contains("--etcd-servers=http://127.0.0.1:23790"));
    assert!(api.contains("--authorization-mode=Node,RBAC"));
    assert!(api.contains(&format!("--service-cluster-ip-range={SERVICE_CIDR}")));
}

#[test]
fn kubeconfigs_and_objects_parse() {
    let n = node();
    let kc: serde_yaml::Value = serde_yaml::from_str(&config::kubeconfig(&n, "kubelet")).unwrap();
    assert_eq!(kc["clusters"][0]["cluster"]["server"], "https://192.0.2.2:6443");
    assert_eq!(kc["users"][0]["user"]["client-key"], "/var/lib/pysvc-cluster/pki/kubelet.key");
    let objects = config::cluster_objects("192.0.2.2", Path::new("/v"));
    let docs: Vec<serde_yaml::Value> =
        serde_yaml::Deserializer::from_str(&objects).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect();
    assert_eq!(docs.len(), 5 + config::VOLUMES as usize);
    assert!(docs.iter().all(|d| d["apiVersion"].is_string() && d["kind"].is_string()));
    assert!(config::corefile(&n).contains("bind 192.0.2.2"));
}

#[test]
fn certificates_name_the_users_rbac_binds() {
    let leaves = pki::leaves("192.0.2.2");
    let subject = |n: &str| leaves.iter().find(|l| l.name == n).unwrap().subject.clone();
    assert_eq!(subject("kubelet"), format!("/O=system:nodes/CN=system:node:{NODE}"));
    assert_eq!(subject("kube-proxy"), "/CN=system:kube-proxy");
    let api = leaves.iter().find(|l| l.name == "apiserver").unwrap();
    let ext = pki::extensions(api);
    assert!(ext.contains("IP:10.96.0.1") && ext.contains("IP:192.0.2.2") && ext.contains("serverAuth"));
    assert!(pki::extensions(&leaves[3]).contains("CA:FALSE"));
}

#[test]
fn the_pause_archive_is_an_oci_layout_with_one_named_manifest() {
    let archive = binaries::pause_image(b"\x7fELF fake", "pysvc.local/pause:1");
    let mut names = Vec::new();
    let mut index = String::new();
    for entry in tar::Archive::new(archive.as_slice()).entries().unwrap() {
        let mut e = entry.unwrap();
        let path = e.path().unwrap().display().to_string();
        if path == "index.json" {
            std::io::Read::read_to_string(&mut e, &mut index).unwrap();
        }
        names.push(path);
    }
    assert_eq!(names.iter().filter(|n| n.starts_with("blobs/sha256/")).count(), 3);
    assert!(names.contains(&"oci-layout".to_owned()));
    let v: serde_json::Value = serde_json::from_str(&index).unwrap();
    assert_eq!(v["manifests"][0]["annotations"]["io.containerd.image.name"], "pysvc.local/pause:1");
    assert_eq!(archive, binaries::pause_image(b"\x7fELF fake", "pysvc.local/pause:1"), "reproducible");
}

#[test]
fn the_binary_key_follows_the_module_files() {
    let dir = std::env::temp_dir().join(format!("pysvc-cluster-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("go.sum"), "a").unwrap();
    let one = binaries::key(&dir, "go1.26").unwrap();
    assert_eq!(one, binaries::key(&dir, "go1.26").unwrap());
    assert_ne!(one, binaries::key(&dir, "go1.27").unwrap());
    std::fs::write(dir.join("go.sum"), "b").unwrap();
    assert_ne!(one, binaries::key(&dir, "go1.26").unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_kubernetes_chains_and_the_jumps_to_them_are_found_and_nothing_else() {
    let save = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-FIREWALL - [0:0]\n:DOCKER-USER - [0:0]\n\
        -A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n\
        -A INPUT -j KUBE-FIREWALL\n-A KUBE-FIREWALL -j DROP\n-A FORWARD -j DOCKER-USER\nCOMMIT\n\
        *nat\n:KUBE-SERVICES - [0:0]\n-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n";
    let (jumps, chains) = teardown::kube_rules(save);
    assert_eq!(
        chains,
        [("filter".to_owned(), "KUBE-FIREWALL".to_owned()), ("nat".to_owned(), "KUBE-SERVICES".to_owned())]
    );
    assert_eq!(jumps.len(), 3);
    assert_eq!(
        jumps[0].1,
        ["INPUT", "-m", "comment", "--comment", "kubernetes health check service ports", "-j", "KUBE-NODEPORTS"]
    );
    assert_eq!(jumps[2].0, "nat");
}
