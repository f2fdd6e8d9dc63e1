//! The node's programs, built once from the Go module in
//! `deploy/cluster/node` (Kubernetes, etcd and kubectl as one multi-call
//! binary `kube`; containerd, its runc shim and `ctr`; CoreDNS with the
//! plugins the Corefile uses; `pause`) into a cache outside the repository,
//! keyed by the hash of the module's files and the Go version: a second
//! `up` reuses them. The pause image is packed here too, as an OCI archive.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::util::sha256_hex;

/// The folder of the Go module, relative to the repository root.
pub const MODULE: &str = "deploy/cluster/node";
/// The release the module pins (and the version the components report).
pub const KUBERNETES: &str = "v1.37.2";
const CONTAINERD: &str = "2.4.2";

/// The longest the build may take, in seconds: a first build compiles
/// Kubernetes, containerd and CoreDNS (11 min on 2 cores, at the lowest priority).
const BUILD_LIMIT: u32 = 3600;

/// Names `kube` answers to: each is a link to it in the binaries' folder.
pub const KUBE_LINKS: [&str; 7] =
    ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"];

/// Packages built, as (package path, binary name).
const PACKAGES: [&str; 6] = [
    "./kube",
    "./coredns",
    "./pause",
    "github.com/containerd/containerd/v2/cmd/containerd",
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
    "github.com/containerd/containerd/v2/cmd/ctr",
];

/// The cache folder of a build key: `$XDG_CACHE_HOME/pysvc/cluster/<key>` (else `~/.cache/...`).
pub fn cache_dir(key: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root")).join(".cache")
    });
    base.join("pysvc/cluster").join(key)
}

/// The key: sha256 over the module's files (name and content, sorted) and `go version`, 16 hex digits.
pub fn key(module: &Path, go_version: &str) -> Result<String> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(module)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    hash.update(go_version.trim().as_bytes());
    for f in files {
        hash.update(f.strip_prefix(module).unwrap_or(&f).to_string_lossy().as_bytes());
        hash.update(std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?);
    }
    Ok(hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// The binaries' folder, built now if the cache does not have it. Go
/// builds at the lowest priority (`nice -n 19`, two packages at a time), static (no cgo).
pub fn ensure(sh: &Shell, root: &Path) -> Result<PathBuf> {
    let module = root.join(MODULE);
    let go = cmd!(sh, "go version").quiet().read().context(
        "the node is built with Go (1.26 or later) and `go` is not on PATH: install it from go.dev/dl, then retry",
    )?;
    let dir = cache_dir(&key(&module, &go)?);
    let bin = dir.join("bin");
    if bin.join("kube").exists() && bin.join("pause.tar").exists() {
        eprintln!("  cached: {}", bin.display());
        return Ok(bin);
    }
    let tmp = dir.join("bin.partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let v = "k8s.io/component-base/version";
    let ldflags = format!(
        "-s -w -X {v}.gitVersion={KUBERNETES} -X {v}.gitMajor=1 -X {v}.gitMinor=37 -X {v}.gitTreeState=clean \
         -X github.com/containerd/containerd/v2/version.Version={CONTAINERD}"
    );
    let out = format!("{}/", tmp.display());
    let log = dir.join("build.log");
    eprintln!("  building into {} (a first build takes a while: log in {})", bin.display(), log.display());
    let _cd = sh.push_dir(&module);
    let limit = BUILD_LIMIT.to_string();
    let result = cmd!(
        sh,
        "timeout {limit} nice -n 19 go build -p 2 -trimpath -buildvcs=false -ldflags {ldflags} -o {out} {PACKAGES...}"
    )
    .env("CGO_ENABLED", "0")
    .quiet()
    .ignore_stdout()
    .output();
    let ok = match &result {
        Ok(o) => {
            std::fs::write(&log, &o.stderr)?;
            o.status.success()
        }
        Err(e) => {
            std::fs::write(&log, e.to_string())?;
            false
        }
    };
    anyhow::ensure!(ok, "`go build` of {MODULE} failed (or ran past {} min); read {}", BUILD_LIMIT / 60, log.display());
    for link in KUBE_LINKS {
        std::os::unix::fs::symlink("kube", tmp.join(link))?;
    }
    std::fs::write(tmp.join("pause.tar"), pause_image(&std::fs::read(tmp.join("pause"))?, super::PAUSE_IMAGE))?;
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::rename(&tmp, &bin).with_context(|| format!("cannot move the build to {}", bin.display()))?;
    Ok(bin)
}

/// An OCI image archive (what `ctr images import` reads) of one layer
/// holding `/pause`, named `name`. Uncompressed, no timestamps: the same
/// binary gives the same archive.
pub fn pause_image(pause: &[u8], name: &str) -> Vec<u8> {
    let layer = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(pause.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "pause", pause).expect("in-memory tar");
        b.into_inner().expect("in-memory tar")
    };
    let layer_digest = format!("sha256:{}", sha256_hex(&layer));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
    }))
    .expect("static JSON");
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}]
    }))
    .expect("static JSON");
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest));
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(':').next()}
        }]
    }))
    .expect("static JSON");
    let mut archive = tar::Builder::new(Vec::new());
    let files: [(String, &[u8]); 5] = [
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json".into(), &index),
        (format!("blobs/sha256/{}", &manifest_digest[7..]), &manifest),
        (format!("blobs/sha256/{}", &config_digest[7..]), &config),
        (format!("blobs/sha256/{}", &layer_digest[7..]), &layer),
    ];
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        archive.append_data(&mut h, path, data).expect("in-memory tar");
    }
    archive.into_inner().expect("in-memory tar")
}
