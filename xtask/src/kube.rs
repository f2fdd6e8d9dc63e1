//! Kubernetes through `kubectl`, the one client every cluster's users have
//! (and whose kubeconfig handling, auth plugins and kustomize they already
//! trust): which context, whether it answers, the overlay rendered, applied,
//! and the workloads' rollout read back as plain JSON. Pure helpers (image
//! rewriting, rollout state) are here too, unit-tested.

pub mod rollout;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value as Json;

/// Bound on each API request kubectl makes.
const REQUEST_TIMEOUT: &str = "--request-timeout=10s";

/// `kubectl` bound to one kubeconfig context.
pub struct Kubectl {
    context: String,
}

impl Kubectl {
    /// The context named, or the current one; an unknown name (or none at
    /// all) is an error that lists the contexts there are.
    pub fn for_context(requested: Option<&str>) -> Result<Kubectl> {
        let names = bare(&["config", "get-contexts", "-o", "name"])?;
        let names: Vec<&str> = names.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let context = match requested {
            Some(c) => c.to_owned(),
            None => bare(&["config", "current-context"]).map(|c| c.trim().to_owned()).unwrap_or_default(),
        };
        if context.is_empty() || !names.contains(&context.as_str()) {
            let what = if context.is_empty() {
                "no current kubeconfig context".to_owned()
            } else {
                format!("no kubeconfig context named {context:?}")
            };
            let known = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
            bail!(
                "{what} (contexts in {}: {known}).\n  fix: `cargo xtask cluster up` for a local node (it adds the \
                 context `{}`), or `--context NAME` with one of those",
                kubeconfig_path(),
                LOCAL_CONTEXT
            );
        }
        Ok(Kubectl { context })
    }

    pub fn context(&self) -> &str {
        &self.context
    }

    /// The API server's address, from the kubeconfig.
    pub fn server(&self) -> String {
        let path = "jsonpath={.clusters[0].cluster.server}";
        self.text(&["config", "view", "--minify", "-o", path]).unwrap_or_default()
    }

    /// The server's version, or an error that says where nothing answered.
    pub fn reachable(&self) -> Result<String> {
        let out = self.text(&["version", "-o", "json", "--request-timeout=5s"]);
        let version = out
            .ok()
            .and_then(|o| serde_json::from_str::<Json>(&o).ok())
            .and_then(|v| v["serverVersion"]["gitVersion"].as_str().map(str::to_owned));
        version.with_context(|| {
            format!(
                "the cluster of context {:?} does not answer at {} (within 5 s).\n  fix: start it (`cargo xtask cluster \
                 up` for the local node; `cargo xtask cluster status` says what runs), or pick another context \
                 with `--context`",
                self.context,
                self.server()
            )
        })
    }

    /// `kubectl --context C ARGS`, its stdout; a failure carries stderr.
    pub fn text(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["--context", &self.context, REQUEST_TIMEOUT];
        full.extend_from_slice(args);
        bare(&full)
    }

    /// Like `text`, parsed as JSON.
    pub fn json(&self, args: &[&str]) -> Result<Json> {
        let out = self.text(args)?;
        serde_json::from_str(&out).with_context(|| format!("`kubectl {}` printed no JSON", args.join(" ")))
    }

    /// `kubectl apply -f -` of `yaml`: each object and what apply did to it
    /// (`created`, `configured`, `unchanged`).
    pub fn apply(&self, yaml: &str) -> Result<Vec<(String, String)>> {
        let mut child = Command::new("kubectl")
            .args(["--context", &self.context, REQUEST_TIMEOUT, "apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run kubectl")?;
        child.stdin.take().context("kubectl's stdin")?.write_all(yaml.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().filter_map(|l| l.rsplit_once(' ')).map(|(o, a)| (o.to_owned(), a.to_owned())).collect())
    }
}

/// The local node's image store: its containerd's socket and `ctr`, in the
/// namespace the kubelet's CRI reads.
pub struct NodeStore {
    socket: PathBuf,
    ctr: PathBuf,
}

/// The containerd namespace of the CRI.
const CRI_NAMESPACE: &str = "k8s.io";

impl NodeStore {
    /// The store behind `socket`, reached with the `ctr` at `ctr`, if both
    /// are there (`cluster::image_store` knows the local node's).
    pub fn at(socket: PathBuf, ctr: PathBuf) -> Option<NodeStore> {
        (socket.exists() && ctr.is_file()).then_some(NodeStore { socket, ctr })
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new(&self.ctr);
        c.arg("--address").arg(&self.socket).args(["--namespace", CRI_NAMESPACE]);
        c
    }

    /// Whether the node has `reference` (as the kubelet names it:
    /// `docker.io/` before a name without a registry).
    pub fn has(&self, reference: &str) -> bool {
        let full = normalized(reference);
        let out = self.ctr().args(["images", "list", "--quiet"]).output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == full))
    }

    /// Streams `reference` out of the engine (`docker save`) into the
    /// node's containerd (`ctr images import`), unpacked for the CRI.
    pub async fn import(&self, docker: &bollard::Docker, reference: &str) -> Result<()> {
        use futures_util::StreamExt;
        let mut child = self
            .ctr()
            .args(["images", "import", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.ctr.display()))?;
        let mut stdin = child.stdin.take().context("ctr's stdin")?;
        let mut stream = docker.export_image(reference);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("the engine cannot export {reference}"))?;
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
        drop(stdin);
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success() && self.has(reference),
            "importing {reference} into the node failed: {}\n  fix: check `cargo xtask cluster status`",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}

/// An image reference as containerd and the kubelet store it.
pub fn normalized(reference: &str) -> String {
    let first = reference.split('/').next().unwrap_or_default();
    let has_registry = reference.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    match (has_registry, reference.contains('/')) {
        (true, _) => reference.to_owned(),
        (false, true) => format!("docker.io/{reference}"),
        (false, false) => format!("docker.io/library/{reference}"),
    }
}

/// The kubeconfig context `cargo xtask cluster up` adds for the local node.
pub const LOCAL_CONTEXT: &str = "pysvc-local";

fn kubeconfig_path() -> String {
    std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".to_owned())
}

fn bare(args: &[&str]) -> Result<String> {
    let out = Command::new("kubectl").args(args).output().context(
        "cannot run kubectl: install it (Debian: `apt-get install kubernetes-client`; `cargo xtask setup` names it)",
    )?;
    if !out.status.success() {
        bail!("`kubectl {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kubectl kustomize DIR`: the overlay rendered; a missing overlay names
/// the ones there are.
pub fn render(overlays: &Path, overlay: &str) -> Result<String> {
    let dir = overlays.join(overlay);
    if !dir.join("kustomization.yaml").is_file() {
        let mut known: Vec<String> = std::fs::read_dir(overlays)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        known.sort();
        bail!("no overlay {overlay:?}: {} has no kustomization.yaml (overlays: {})", dir.display(), known.join(", "));
    }
    let out = bare(&["kustomize", &dir.to_string_lossy()])
        .with_context(|| format!("the overlay {} does not render; fix it, or run `cargo xtask gen`", dir.display()))?;
    Ok(out)
}

/// The YAML documents of a rendered overlay.
pub fn documents(yaml: &str) -> Result<Vec<Json>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value: Json = serde::Deserialize::deserialize(doc).context("the rendered overlay is not valid YAML")?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Every pod template's containers (and init containers) in `docs`.
fn containers_mut(doc: &mut Json) -> Vec<&mut Json> {
    let spec = match doc["kind"].as_str() {
        Some("Pod") => doc.get_mut("spec"),
        Some("Deployment" | "StatefulSet" | "Job" | "DaemonSet" | "ReplicaSet") => {
            doc.get_mut("spec").and_then(|s| s.get_mut("template")).and_then(|t| t.get_mut("spec"))
        }
        _ => None,
    };
    let Some(spec) = spec.and_then(Json::as_object_mut) else { return Vec::new() };
    spec.iter_mut()
        .filter(|(k, _)| *k == "containers" || *k == "initContainers")
        .filter_map(|(_, v)| v.as_array_mut())
        .flat_map(|a| a.iter_mut())
        .collect()
}

/// The images the documents' pods run, each once, sorted.
pub fn images(docs: &mut [Json]) -> BTreeSet<String> {
    docs.iter_mut().flat_map(containers_mut).filter_map(|c| c["image"].as_str().map(str::to_owned)).collect()
}

/// Every container image found in `map` replaced by its value; with
/// `pull_policy`, every container's `imagePullPolicy` set to it.
pub fn rewrite_images(docs: &mut [Json], map: &BTreeMap<String, String>, pull_policy: Option<&str>) {
    for container in docs.iter_mut().flat_map(containers_mut) {
        if let Some(new) = container["image"].as_str().and_then(|i| map.get(i)) {
            container["image"] = Json::String(new.clone());
        }
        if let Some(policy) = pull_policy {
            container["imagePullPolicy"] = Json::String(policy.to_owned());
        }
    }
}

/// The namespaces the documents' objects go to.
pub fn namespaces(docs: &[Json]) -> BTreeSet<String> {
    docs.iter().filter_map(|d| d["metadata"]["namespace"].as_str().map(str::to_owned)).collect()
}

/// Every namespaced object moved to `namespace`, and the Namespace object
/// renamed to it (its labels, Pod Security's among them, kept).
pub fn set_namespace(docs: &mut [Json], namespace: &str) {
    for doc in docs.iter_mut() {
        let meta = &mut doc["metadata"];
        if meta.get("namespace").is_some() {
            meta["namespace"] = Json::String(namespace.to_owned());
        }
        if doc["kind"] == "Namespace" {
            doc["metadata"]["name"] = Json::String(namespace.to_owned());
        }
    }
}

/// The documents as one multi-document YAML stream.
pub fn to_yaml(docs: &[Json]) -> Result<String> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(d)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: ns}\n\
        spec:\n  template:\n    spec:\n      containers:\n      - {name: a, image: 'pysvc/api-server:latest', imagePullPolicy: Always}\n\
        ---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: t, namespace: ns}\nspec:\n  template:\n    spec:\n      \
        initContainers:\n      - {name: w, image: 'apache/kafka:4.4.0'}\n      containers:\n      - {name: t, image: 'apache/kafka:4.4.0'}\n\
        ---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ns}\ndata: {image: 'pysvc/api-server:latest'}\n";

    #[test]
    fn images_are_found_and_rewritten_in_every_pod_template_only() {
        let mut docs = documents(RENDERED).unwrap();
        assert_eq!(
            images(&mut docs).into_iter().collect::<Vec<_>>(),
            ["apache/kafka:4.4.0", "pysvc/api-server:latest"]
        );
        let map = BTreeMap::from([("apache/kafka:4.4.0".to_owned(), "pysvc/kafka:4.4.0".to_owned())]);
        rewrite_images(&mut docs, &map, Some("IfNotPresent"));
        assert_eq!(images(&mut docs).into_iter().collect::<Vec<_>>(), ["pysvc/api-server:latest", "pysvc/kafka:4.4.0"]);
        assert_eq!(docs[1]["spec"]["template"]["spec"]["initContainers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(docs[2]["data"]["image"], "pysvc/api-server:latest", "only pod templates change");
        assert_eq!(namespaces(&docs).into_iter().collect::<Vec<_>>(), ["ns"]);
        set_namespace(&mut docs, "other");
        assert_eq!(namespaces(&docs).into_iter().collect::<Vec<_>>(), ["other"]);
        let again = documents(&to_yaml(&docs).unwrap()).unwrap();
        assert_eq!(again, docs);
    }

    #[test]
    fn references_are_normalized_as_the_kubelet_does() {
        assert_eq!(normalized("pysvc/api-server:id-1"), "docker.io/pysvc/api-server:id-1");
        assert_eq!(normalized("postgres:16"), "docker.io/library/postgres:16");
        assert_eq!(normalized("127.0.0.1:5000/pysvc/x:1"), "127.0.0.1:5000/pysvc/x:1");
        assert_eq!(normalized("pysvc.local/pause:1"), "pysvc.local/pause:1");
    }
}
