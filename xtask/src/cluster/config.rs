//! The node's configuration files and the command lines of its
//! components, rendered from the layout and the node's address: pure
//! functions, tested in `tests.rs`.

use std::path::Path;

use super::{
    Layout, Node, API_PORT, BRIDGE, CNI_NETWORK, DNS_READY, DNS_SERVICE_IP, ETCD_CLIENT, ETCD_PEER, NODE, PAUSE_IMAGE,
    POD_CIDR, POD_SUBNET, PROXY_HEALTHZ, SERVICE_CIDR,
};

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// containerd 2's configuration (version 3): its own root, state, sockets
/// and runc root; the CRI with cgroupfs (no systemd here), the local pause
/// image, the node's CNI folder, network namespaces and shim sockets under
/// its own state (the shims' default is the system containerd's
/// /run/containerd/s); NRI off (its socket path is shared machine-wide). Without
/// CAP_SYS_RESOURCE (a container or a sandboxed VM) no process may lower its
/// OOM score, and runc fails every sandbox the kubelet asks to get -998:
/// `restrict_oom_score_adj` then keeps scores at containerd's own.
pub fn containerd(layout: &Layout, can_lower_oom_score: bool) -> String {
    let restrict_oom = !can_lower_oom_score;
    let root = p(&layout.state.join("containerd"));
    let state = p(&layout.run.join("containerd"));
    let socket = p(&layout.containerd_socket());
    let runc_root = p(&layout.run.join("runc"));
    let cni_conf = p(&layout.state.join("cni/net.d"));
    let shim_sockets = p(&layout.run.join("s"));
    format!(
        r#"# written by `cargo xtask cluster up`
version = 3
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins.'io.containerd.shim.v1.manager']
  socket_dir = "{shim_sockets}"

[plugins.'io.containerd.internal.v1.opt']
  path = "{root}/opt"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = {restrict_oom}

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  Root = "{runc_root}"
  SystemdCgroup = false

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "{cni_conf}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
"#
    )
}

/// The CNI network: one bridge, addresses from host-local (its leases in
/// the node's state, not the machine-wide /var/lib/cni), no masquerade and
/// no port maps (`phases::firewall` adds one NAT rule for the whole pod
/// network in a chain of its own, so CNI writes no iptables rule).
pub fn cni(layout: &Layout) -> String {
    let ipam_dir = p(&layout.state.join("cni/ipam"));
    serde_json::to_string_pretty(&serde_json::json!({
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": ipam_dir,
                "ranges": [[{"subnet": POD_SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }]
    }))
    .expect("static JSON")
}

/// A kubeconfig whose user is the certificate `<who>.crt` of the node's PKI.
pub fn kubeconfig(node: &Node, who: &str) -> String {
    let pki = node.layout.pki();
    format!(
        "# written by `cargo xtask cluster up`\napiVersion: v1\nkind: Config\nclusters:\n- name: {ctx}\n  cluster:\n    \
         server: https://{ip}:{API_PORT}\n    certificate-authority: {ca}\nusers:\n- name: {who}\n  user:\n    \
         client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: {ctx}\n  context:\n    cluster: {ctx}\n    \
         user: {who}\ncurrent-context: {ctx}\n",
        ctx = super::CONTEXT,
        ip = node.ip,
        ca = p(&pki.join("ca.crt")),
        crt = p(&pki.join(format!("{who}.crt"))),
        key = p(&pki.join(format!("{who}.key"))),
    )
}

/// The kubelet's configuration: cgroup v1 allowed (`failCgroupV1: false`),
/// cgroupfs, no swap checks, webhook authorization, the local DNS, pod logs
/// under the node's state, eviction thresholds for a development VM.
pub fn kubelet(node: &Node) -> String {
    let pki = node.layout.pki();
    format!(
        r#"# written by `cargo xtask cluster up`
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
address: {ip}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
tlsCertFile: {pki}/kubelet-server.crt
tlsPrivateKeyFile: {pki}/kubelet-server.key
clusterDomain: cluster.local
clusterDNS:
- {DNS_SERVICE_IP}
resolvConf: /etc/resolv.conf
podLogsDir: {logs}
serializeImagePulls: false
rotateCertificates: false
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  nodefs.inodesFree: 2%
  imagefs.available: 2%
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
"#,
        socket = p(&node.layout.containerd_socket()),
        ip = node.ip,
        ca = p(&pki.join("ca.crt")),
        pki = p(&pki),
        logs = p(&node.layout.state.join("pod-logs")),
    )
}

/// kube-proxy's configuration: iptables, the pod network for masquerading,
/// conntrack sysctls left as they are, health and metrics on loopback.
pub fn kube_proxy(node: &Node) -> String {
    format!(
        "# written by `cargo xtask cluster up`\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: \
         KubeProxyConfiguration\nmode: iptables\nclusterCIDR: {POD_CIDR}\nhostnameOverride: {NODE}\nnodePortAddresses: [primary]\n\
         healthzBindAddress: {PROXY_HEALTHZ}\nmetricsBindAddress: 127.0.0.1:10249\nclientConnection:\n  kubeconfig: \
         {kubeconfig}\nconntrack:\n  maxPerCore: 0\n  tcpEstablishedTimeout: 0s\n  tcpCloseWaitTimeout: 0s\n",
        kubeconfig = p(&node.layout.kubeconfig("kube-proxy")),
    )
}

/// CoreDNS on the node's address (kube-proxy sends the DNS Service's
/// traffic there): cluster names from the API, the rest forwarded to the
/// machine's resolvers.
pub fn corefile(node: &Node) -> String {
    format!(
        ".:53 {{\n    bind {ip}\n    errors\n    ready {DNS_READY}\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        \
         kubeconfig {kubeconfig} {ctx}\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n    }}\n    \
         cache 30\n    forward . /etc/resolv.conf\n}}\n",
        ip = node.ip,
        kubeconfig = p(&node.layout.kubeconfig("coredns")),
        ctx = super::CONTEXT,
    )
}

/// The objects the DNS phase applies: CoreDNS's read-only role, the
/// `kube-dns` Service on the tenth service address with an EndpointSlice
/// naming the node (CoreDNS runs on it, not in a pod), and the default
/// StorageClass with a few hostPath volumes for claims.
pub fn cluster_objects(node_ip: &str, volumes: &Path) -> String {
    let mut docs = vec![dns_objects(node_ip), STORAGE_CLASS.to_owned()];
    for n in 1..=VOLUMES {
        docs.push(format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: pysvc-local-{n}\nspec:\n  storageClassName: \
             pysvc-local\n  capacity:\n    storage: 20Gi\n  accessModes: [ReadWriteOnce]\n  \
             persistentVolumeReclaimPolicy: Retain\n  hostPath:\n    path: {}\n    type: Directory",
            p(&volumes.join(format!("pv-{n}")))
        ));
    }
    docs.join("\n---\n") + "\n"
}

/// The default StorageClass: claims bind to the node's hostPath volumes when their pod is scheduled.
const STORAGE_CLASS: &str = r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: pysvc-local
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain"#;

fn dns_objects(node_ip: &str) -> String {
    format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: pysvc:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: pysvc:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: pysvc:coredns
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: system:pysvc-coredns
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  clusterIP: {DNS_SERVICE_IP}
  ports:
  - name: dns
    port: 53
    protocol: UDP
  - name: dns-tcp
    port: 53
    protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: pysvc-cluster
addressType: IPv4
endpoints:
- addresses: [{node_ip}]
  conditions:
    ready: true
ports:
- name: dns
  port: 53
  protocol: UDP
- name: dns-tcp
  port: 53
  protocol: TCP"#
    )
}

/// How many hostPath volumes the node offers (each a folder any uid may write: pods run as uid 10001).
pub const VOLUMES: u32 = 16;

/// The command line of each long-running component, as (log and pid name, program, arguments).
pub fn command(node: &Node, component: &str) -> Vec<String> {
    let pki = p(&node.layout.pki());
    let kc = |who: &str| p(&node.layout.kubeconfig(who));
    let v: Vec<String> = match component {
        "etcd" => etcd_args(&node.layout),
        "containerd" => vec![format!("--config={}", p(&node.layout.state.join("containerd.toml")))],
        "kube-apiserver" => apiserver_args(node),
        "kube-controller-manager" => vec![
            format!("--kubeconfig={}", kc("controller-manager")),
            format!("--authentication-kubeconfig={}", kc("controller-manager")),
            format!("--authorization-kubeconfig={}", kc("controller-manager")),
            format!("--service-account-private-key-file={pki}/sa.key"),
            format!("--root-ca-file={pki}/ca.crt"),
            format!("--cluster-signing-cert-file={pki}/ca.crt"),
            format!("--cluster-signing-key-file={pki}/ca.key"),
            "--use-service-account-credentials=true".into(),
            format!("--cluster-cidr={POD_CIDR}"),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
        ],
        "kube-scheduler" => vec![
            format!("--kubeconfig={}", kc("scheduler")),
            format!("--authentication-kubeconfig={}", kc("scheduler")),
            format!("--authorization-kubeconfig={}", kc("scheduler")),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
        ],
        "kubelet" => vec![
            format!("--config={}", p(&node.layout.state.join("kubelet.yaml"))),
            format!("--kubeconfig={}", kc("kubelet")),
            format!("--root-dir={}", p(&node.layout.state.join("kubelet"))),
            format!("--hostname-override={NODE}"),
            format!("--node-ip={}", node.ip),
        ],
        "kube-proxy" => vec![format!("--config={}", p(&node.layout.state.join("kube-proxy.yaml")))],
        "coredns" => vec!["-conf".into(), p(&node.layout.state.join("Corefile"))],
        other => unreachable!("no component {other}"),
    };
    v
}

fn etcd_args(layout: &Layout) -> Vec<String> {
    vec![
        "--name=pysvc-node".into(),
        format!("--data-dir={}", p(&layout.state.join("etcd"))),
        format!("--listen-client-urls=http://{ETCD_CLIENT}"),
        format!("--advertise-client-urls=http://{ETCD_CLIENT}"),
        format!("--listen-peer-urls=http://{ETCD_PEER}"),
        format!("--initial-advertise-peer-urls=http://{ETCD_PEER}"),
        format!("--initial-cluster=pysvc-node=http://{ETCD_PEER}"),
        "--quota-backend-bytes=2147483648".into(),
    ]
}

fn apiserver_args(node: &Node) -> Vec<String> {
    let pki = p(&node.layout.pki());
    vec![
        format!("--etcd-servers=http://{ETCD_CLIENT}"),
        format!("--bind-address={}", node.ip),
        format!("--advertise-address={}", node.ip),
        format!("--secure-port={API_PORT}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        format!("--tls-cert-file={pki}/apiserver.crt"),
        format!("--tls-private-key-file={pki}/apiserver.key"),
        format!("--client-ca-file={pki}/ca.crt"),
        format!("--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt"),
        format!("--kubelet-client-key={pki}/apiserver-kubelet-client.key"),
        format!("--kubelet-certificate-authority={pki}/ca.crt"),
        "--kubelet-preferred-address-types=InternalIP".into(),
        format!("--service-account-key-file={pki}/sa.pub"),
        format!("--service-account-signing-key-file={pki}/sa.key"),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
    ]
}
