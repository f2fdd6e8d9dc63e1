//! The node's PKI, made with the `openssl` command (Debian ships it on
//! every machine; a Rust X.509 crate would add a crypto backend to the
//! xtask's cold compile for a dozen certificates). One CA signs every
//! certificate, ECDSA P-256 keys; the service-account key pair signs the
//! pods' tokens. Files that exist are kept (`up` twice changes nothing);
//! `down` removes them with the rest of the node's state.

use std::path::Path;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::{Node, API_SERVICE_IP, NODE};

/// One certificate the CA signs: file stem, subject, extended key usage, subject alternative names.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub name: &'static str,
    pub subject: String,
    pub usage: &'static str,
    pub sans: Vec<String>,
}

/// Every certificate of the node. Groups (`O=`) are what RBAC binds:
/// `system:masters` for the admin and the API server's calls to the kubelet,
/// `system:nodes` for the kubelet; the controller manager, the scheduler and
/// kube-proxy have default bindings for their user names; CoreDNS gets the
/// read-only role the DNS phase applies.
pub fn leaves(node_ip: &str) -> Vec<Leaf> {
    let client = |name, subject: &str| Leaf { name, subject: subject.to_owned(), usage: "clientAuth", sans: vec![] };
    let api_sans = [
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:localhost",
        "IP:127.0.0.1",
    ];
    let mut apiserver_sans: Vec<String> = api_sans.iter().map(|s| s.to_string()).collect();
    apiserver_sans.extend([format!("IP:{API_SERVICE_IP}"), format!("IP:{node_ip}")]);
    vec![
        Leaf { name: "apiserver", subject: "/CN=kube-apiserver".into(), usage: "serverAuth", sans: apiserver_sans },
        Leaf {
            name: "kubelet-server",
            subject: format!("/CN={NODE}"),
            usage: "serverAuth",
            sans: vec![format!("DNS:{NODE}"), "DNS:localhost".into(), format!("IP:{node_ip}"), "IP:127.0.0.1".into()],
        },
        client("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"),
        client("admin", "/O=system:masters/CN=pysvc-admin"),
        client("controller-manager", "/CN=system:kube-controller-manager"),
        client("scheduler", "/CN=system:kube-scheduler"),
        client("kubelet", &format!("/O=system:nodes/CN=system:node:{NODE}")),
        client("kube-proxy", "/CN=system:kube-proxy"),
        client("coredns", "/CN=system:pysvc-coredns"),
    ]
}

/// The extensions file of a leaf (`openssl x509 -extfile`).
pub fn extensions(leaf: &Leaf) -> String {
    let mut text = format!(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={}\n",
        leaf.usage
    );
    if !leaf.sans.is_empty() {
        text.push_str(&format!("subjectAltName={}\n", leaf.sans.join(",")));
    }
    text
}

/// The CA, the service-account key pair and every leaf, those missing only.
pub fn ensure(sh: &Shell, node: &Node) -> Result<()> {
    let dir = node.layout.pki();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The keys are the cluster's: readable by root only.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let _cd = sh.push_dir(&dir);
    if !dir.join("ca.crt").exists() {
        cmd!(sh, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=pysvc-cluster-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
            .quiet()
            .ignore_stderr()
            .run()
            .context("openssl could not make the cluster CA")?;
    }
    if !dir.join("sa.pub").exists() {
        cmd!(sh, "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key")
            .quiet()
            .ignore_stderr()
            .run()
            .context("openssl could not make the service-account key")?;
        cmd!(sh, "openssl pkey -in sa.key -pubout -out sa.pub").quiet().ignore_stderr().run()?;
    }
    for leaf in leaves(&node.ip) {
        if !dir.join(format!("{}.crt", leaf.name)).exists() {
            sign(sh, &dir, &leaf)?;
        }
    }
    Ok(())
}

fn sign(sh: &Shell, dir: &Path, leaf: &Leaf) -> Result<()> {
    let (name, subject) = (leaf.name, &leaf.subject);
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(&ext, extensions(leaf)).with_context(|| format!("cannot write {}", ext.display()))?;
    let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
    cmd!(
        sh,
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {key} -out {csr} -subj {subject}"
    )
    .quiet()
    .ignore_stderr()
    .run()
    .with_context(|| format!("openssl could not make the key of {name}"))?;
    cmd!(
        sh,
        "openssl x509 -req -in {csr} -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -extfile {ext} -out {crt}"
    )
    .quiet()
    .ignore_stderr()
    .run()
    .with_context(|| format!("openssl could not sign the certificate of {name}"))?;
    let _ = std::fs::remove_file(dir.join(&csr));
    Ok(())
}
