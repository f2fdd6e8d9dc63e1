//! The kustomize tree under `deploy/k8s/`: a `base` with the services and an
//! `overlays/dev` that adds in-cluster PostgreSQL and the broker, so the
//! whole stack runs in any cluster. Every object is a `serde_json::Value`
//! (maps sorted by key) serialized by serde_yaml: same manifests, same bytes.
//!
//! What compose and Kubernetes must agree on (environment, ports, commands,
//! probes, infrastructure) comes from the same definitions in `gen/mod.rs`
//! and `manifest.rs`; `gen/tests.rs` checks the two outputs against each other.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value as Json};

use super::{
    infra, kafka_topics_command, service_env, Infra, Value, HEADER_NOTE, KAFKA_HEALTH, KAFKA_HEALTH_PATH, KAFKA_TOPICS,
    KAFKA_VOLUME_PATH,
};
use crate::manifest::{self, Kind, Probe, Service, Stack, Timing};

pub const DIR: &str = "deploy/k8s";
pub const OVERLAYS: [&str; 1] = ["dev"];
/// The oldest Kubernetes release the output is validated against.
pub const OLDEST_KUBERNETES: &str = "1.30.0";
/// The git-ignored env file the dev overlay's `secretGenerator` reads.
pub const SECRET_ENV: &str = "deploy/k8s/overlays/dev/postgres.env";
pub const SECRET_NAME: &str = "postgres-credentials";
pub const NAMESPACE: &str = "pysvc-dev";
pub const SERVICE_ACCOUNT: &str = "pysvc";
pub const UID: u32 = super::APP_UID;
/// Where a container may write with its root filesystem read-only.
pub const TMP: &str = "/tmp";

/// Policy skips, each with its reason (checkov reads `checkov.io/skipN`).
const SKIP_DIGEST: &str =
    "CKV_K8S_43=images are named by tag as build-images tags them; pin digests in a release overlay";
const SKIP_SECRET_ENV: &str =
    "CKV_K8S_35=the services and the postgres image read POSTGRES_PASSWORD from the environment, as under compose";
const SKIP_LATEST: &str =
    "CKV_K8S_14=the dev overlay names the latest tag build-images writes; set the git-sha tag with kustomize images";

fn labels(stack: &Stack, name: &str, component: &str) -> Json {
    json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": stack.manifest.project,
        "app.kubernetes.io/managed-by": "kustomize",
    })
}

fn selector(stack: &Stack, name: &str) -> Json {
    json!({"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": stack.manifest.project})
}

fn metadata(stack: &Stack, name: &str, component: &str) -> Json {
    named(stack, name, name, component)
}

/// Metadata of an object called `object` that belongs to the app `app`.
fn named(stack: &Stack, object: &str, app: &str, component: &str) -> Json {
    json!({"name": object, "labels": labels(stack, app, component)})
}

fn with_skips(mut meta: Json, skips: &[&str]) -> Json {
    if !skips.is_empty() {
        let annotations: serde_json::Map<String, Json> =
            skips.iter().enumerate().map(|(i, s)| (format!("checkov.io/skip{}", i + 1), json!(s))).collect();
        meta["annotations"] = Json::Object(annotations);
    }
    meta
}

fn yaml_docs(docs: &[Json]) -> String {
    let mut out = format!("# {HEADER_NOTE}\n");
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(doc).expect("JSON values serialize as YAML"));
    }
    out
}

/// A probe of the given check, with the manifest's timing.
fn probe(check: &Probe, t: Timing, failure_threshold: u32) -> Json {
    let mut p = match check {
        Probe::Http { port, path } => json!({"httpGet": {"path": path, "port": port}}),
        Probe::Exec(argv) => json!({"exec": {"command": argv}}),
    };
    p["periodSeconds"] = json!(t.interval);
    p["timeoutSeconds"] = json!(t.timeout);
    p["failureThreshold"] = json!(failure_threshold);
    p
}

/// startupProbe failures allowed: the whole start period, then `retries`
/// more, as compose's healthcheck counts them; liveness only starts after it.
pub fn startup_failure_threshold(t: Timing) -> u32 {
    t.start_period.div_ceil(t.interval) + t.retries
}

/// readinessProbe, livenessProbe and startupProbe of one container.
pub fn probes(readiness: &Probe, liveness: &Probe, t: Timing) -> Json {
    json!({
        "readinessProbe": probe(readiness, t, t.retries),
        "livenessProbe": probe(liveness, t, t.retries),
        "startupProbe": probe(liveness, t, startup_failure_threshold(t)),
    })
}

fn pod_security(uid: u32) -> Json {
    json!({
        "runAsNonRoot": true,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn container_security(uid: u32) -> Json {
    json!({
        "allowPrivilegeEscalation": false,
        "privileged": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": uid,
        "runAsGroup": uid,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// How Kubernetes spells one environment entry: fixed values and settings
/// from the workload's ConfigMap, secrets from the generated Secret.
fn env_entries(config_map: &str, env: &[(String, Value)]) -> Json {
    let entries: Vec<Json> = env
        .iter()
        .map(|(name, value)| match value {
            Value::Secret(key) => {
                json!({"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key}}})
            }
            _ => json!({"name": name, "valueFrom": {"configMapKeyRef": {"name": config_map, "key": name}}}),
        })
        .collect();
    Json::Array(entries)
}

fn config_map_name(app: &str) -> String {
    format!("{app}-env")
}

fn config_map(stack: &Stack, app: &str, component: &str, env: &[(String, Value)]) -> Json {
    let data: serde_json::Map<String, Json> = env
        .iter()
        .filter_map(|(k, v)| match v {
            Value::Fixed(v) => Some((k.clone(), json!(v))),
            Value::Setting { default, .. } => Some((k.clone(), json!(default))),
            Value::Secret(_) => None,
        })
        .collect();
    let name = config_map_name(app);
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": named(stack, &name, app, component), "data": data})
}

/// How Kubernetes spells an argv with settings in it (no shell to expand them).
fn argv(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| match v {
            Value::Fixed(v) => v.clone(),
            Value::Setting { default, .. } => (*default).to_owned(),
            Value::Secret(name) => panic!("a secret ({name}) never goes into an argv"),
        })
        .collect()
}

pub fn image(stack: &Stack, service: &Service) -> String {
    format!("{}/{}:latest", stack.manifest.project, service.name)
}

fn service_objects(stack: &Stack, service: &Service) -> Vec<Json> {
    let m = &service.manifest;
    let name = service.name.as_str();
    let component = match m.kind {
        Kind::Http => "api",
        Kind::Worker => "worker",
    };
    let env = service_env(stack, service);
    let config = config_map_name(name);
    let mut container = json!({
        "name": name,
        "image": image(stack, service),
        "imagePullPolicy": "Always",
        // Kubernetes expands `$(NAME)` in a command; `$$(` keeps it literal.
        "command": m.command.iter().map(|a| a.replace("$(", "$$(")).collect::<Vec<_>>(),
        "env": env_entries(&config, &env),
        "resources": {
            "requests": {"cpu": m.resources.requests.cpu, "memory": m.resources.requests.memory},
            "limits": {"cpu": m.resources.limits.cpu, "memory": m.resources.limits.memory},
        },
        "securityContext": container_security(UID),
        "volumeMounts": [{"name": "tmp", "mountPath": TMP}],
    });
    if let Some(port) = m.port {
        container["ports"] = json!([{"name": "http", "containerPort": port, "protocol": "TCP"}]);
        // On a rolling update the pod is removed from the Service's
        // endpoints while it is told to stop; the node's proxies learn of it
        // a moment later. Serving on through that moment, new connections
        // still reach a listening server (measured: 8 searches refused per
        // rolling update without it, bench-deploy).
        container["lifecycle"] = json!({"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}});
    }
    for (key, value) in probes(&service.readiness(), &service.liveness(), service.timing()).as_object().unwrap() {
        container[key] = value.clone();
    }
    let mut skips = vec![SKIP_DIGEST, SKIP_LATEST];
    if env.iter().any(|(_, v)| matches!(v, Value::Secret(_))) {
        skips.push(SKIP_SECRET_ENV);
    }
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": with_skips(metadata(stack, name, component), &skips),
        "spec": {
            "replicas": m.replicas,
            "selector": {"matchLabels": selector(stack, name)},
            "template": {
                "metadata": {"labels": labels(stack, name, component)},
                "spec": pod_spec(container, manifest::seconds(&m.stop_grace_period), vec![]),
            },
        },
    });
    let mut docs = vec![config_map(stack, name, component, &env), deployment];
    if let Some(port) = m.port {
        docs.push(service_object(stack, name, component, port, false));
    }
    docs
}

fn pod_spec(container: Json, grace: u32, mut volumes: Vec<Json>) -> Json {
    let uid = container["securityContext"]["runAsUser"].as_u64().unwrap_or(UID.into()) as u32;
    volumes.push(json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}));
    json!({
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": pod_security(uid),
        "terminationGracePeriodSeconds": grace,
        "containers": [container],
        "volumes": volumes,
    })
}

fn service_object(stack: &Stack, name: &str, component: &str, port: u16, headless: bool) -> Json {
    let mut spec = json!({
        "selector": selector(stack, name),
        "ports": [{"name": "tcp", "port": port, "targetPort": port, "protocol": "TCP"}],
    });
    if headless {
        spec["clusterIP"] = json!("None");
        // A StatefulSet's own name must resolve before its pod is ready:
        // the broker's probe reaches it through the address it advertises
        // (`kafka:9092`), and a headless Service lists only ready pods.
        spec["publishNotReadyAddresses"] = json!(true);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata(stack, name, component), "spec": spec})
}

/// Who depends on `name`: the only pods its NetworkPolicy admits.
fn dependents<'a>(stack: &'a Stack, name: &str) -> Vec<&'a str> {
    let set: BTreeSet<&str> = stack
        .services
        .iter()
        .filter(|s| s.manifest.depends_on.iter().any(|d| d == name))
        .map(|s| s.name.as_str())
        .chain((name == "kafka").then_some(KAFKA_TOPICS))
        .collect();
    set.into_iter().collect()
}

/// Ingress to `name` on `port`: from its dependents, and from anywhere when
/// it is published (compose's `host_port`).
fn network_policy(stack: &Stack, name: &str, component: &str, port: u16, public: bool) -> Option<Json> {
    let mut rules = Vec::new();
    if public {
        rules.push(json!({"ports": [{"port": port, "protocol": "TCP"}]}));
    }
    let from: Vec<Json> =
        dependents(stack, name).iter().map(|d| json!({"podSelector": {"matchLabels": selector(stack, d)}})).collect();
    if !from.is_empty() {
        rules.push(json!({"from": from, "ports": [{"port": port, "protocol": "TCP"}]}));
    }
    if rules.is_empty() {
        return None;
    }
    Some(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": named(stack, &format!("{name}-ingress"), name, component),
        "spec": {"podSelector": {"matchLabels": selector(stack, name)}, "policyTypes": ["Ingress"], "ingress": rules},
    }))
}

fn kustomization(fields: Json) -> Json {
    let mut k = json!({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"});
    for (key, value) in fields.as_object().expect("an object") {
        k[key] = value.clone();
    }
    k
}

fn base(stack: &Stack) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut resources = vec!["serviceaccount.yaml".to_owned()];
    let account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(stack, SERVICE_ACCOUNT, "identity"),
        "automountServiceAccountToken": false,
    });
    files.push(("serviceaccount.yaml".to_owned(), yaml_docs(&[account])));
    for service in &stack.services {
        let file = format!("{}.yaml", service.name);
        files.push((file.clone(), yaml_docs(&service_objects(stack, service))));
        resources.push(file);
    }
    let mut policies = vec![json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(stack, "default-deny-ingress", "policy"),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    })];
    for s in &stack.services {
        if let Some(port) = s.manifest.port {
            policies.extend(network_policy(stack, &s.name, "policy", port, s.manifest.host_port.is_some()));
        }
    }
    files.push(("networkpolicies.yaml".to_owned(), yaml_docs(&policies)));
    resources.push("networkpolicies.yaml".to_owned());
    files.push(("kustomization.yaml".to_owned(), yaml_docs(&[kustomization(json!({"resources": resources}))])));
    files.into_iter().map(|(f, c)| (format!("{DIR}/base/{f}"), c)).collect()
}

/// How long an http service keeps serving after its pod is told to stop.
const PRE_STOP_SECONDS: u32 = 5;

/// PostgreSQL's data folder in Kubernetes: inside the claim, not its root.
const PGDATA: &str = "/var/lib/postgresql/data/pgdata";

fn infra_objects(stack: &Stack, infra: &Infra) -> Vec<Json> {
    let name = infra.name;
    let component = if name == "postgres" { "database" } else { "broker" };
    let config = config_map_name(name);
    let check = Probe::Exec(argv(&infra.probe));
    // The JVM broker: a 256 MB heap plus its metaspace, threads and buffers.
    let memory = if name == "kafka" { "768Mi" } else { "512Mi" };
    let mut container = json!({
        "name": name,
        "image": infra.image,
        "imagePullPolicy": "Always",
        "env": env_entries(&config, &infra.env),
        "ports": [{"name": "tcp", "containerPort": infra.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": memory},
        },
        "securityContext": container_security(UID),
    });
    for (key, value) in probes(&check, &check, infra.timing).as_object().unwrap() {
        container[key] = value.clone();
    }
    let grace = manifest::seconds(&infra.stop_grace_period);
    let mut skips = vec![SKIP_DIGEST];
    if name == "postgres" {
        skips.push(SKIP_SECRET_ENV);
    }
    let volumes = infra_volumes(name, &mut container);
    let workload = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": with_skips(metadata(stack, name, component), &skips),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": selector(stack, name)},
            "template": {
                "metadata": {"labels": labels(stack, name, component)},
                "spec": pod_spec(container, grace, volumes),
            },
            // Written as the API server stores it (kind, volumeMode, the
            // pending status): the list is replaced whole on apply, so any
            // field the server adds would make every apply a change.
            "volumeClaimTemplates": [{
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "labels": labels(stack, name, component)},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                    "volumeMode": "Filesystem",
                },
                "status": {"phase": "Pending"},
            }],
        },
    });
    let mut docs = vec![config_map(stack, name, component, &infra.env), workload];
    docs.push(service_object(stack, name, component, infra.port, true));
    docs.extend(network_policy(stack, name, "policy", infra.port, false));
    if name == "kafka" {
        let data = json!({"kafka-health": KAFKA_HEALTH});
        let health = named(stack, "kafka-health", name, component);
        docs.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": health, "data": data}));
        docs.push(topics_job(stack, infra));
    }
    docs
}

/// The infrastructure container's mounts (set on `container`) and the
/// pod's volumes besides the claim `data`.
fn infra_volumes(name: &str, container: &mut Json) -> Vec<Json> {
    if name == "postgres" {
        // The claim is mounted where the image declares its VOLUME
        // (/var/lib/postgresql/data): mounted anywhere else, the runtime
        // gives that path an anonymous volume of its own, and the data
        // would live there, not on the claim (seen on containerd's CRI).
        // PGDATA is a folder inside it, so the volume's root (lost+found,
        // owned by root) is never the data folder; the entrypoint runs
        // initdb as any uid (nss_wrapper) and creates it.
        container["env"].as_array_mut().expect("env is a list").push(json!({"name": "PGDATA", "value": PGDATA}));
        container["volumeMounts"] = json!([
            {"name": "tmp", "mountPath": TMP},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": true},
        ]);
        vec![
            json!({"name": "run", "emptyDir": {"sizeLimit": "16Mi"}}),
            json!({"name": "init", "configMap": {"name": "postgres-init"}}),
        ]
    } else {
        // The log directory (KAFKA_LOG_DIRS) is a folder inside the volume;
        // the probe script comes from a ConfigMap (the upstream image lacks it).
        container["volumeMounts"] = json!([
            {"name": "tmp", "mountPath": TMP},
            {"name": "data", "mountPath": KAFKA_VOLUME_PATH},
            {"name": "health", "mountPath": KAFKA_HEALTH_PATH, "subPath": "kafka-health", "readOnly": true},
        ]);
        vec![json!({"name": "health", "configMap": {"name": "kafka-health", "defaultMode": 0o755}})]
    }
}

/// The one-shot topic creation (compose's `kafka-topics`) as a Job, retried
/// until the broker answers.
fn topics_job(stack: &Stack, kafka: &Infra) -> Json {
    let container = json!({
        "name": KAFKA_TOPICS,
        "image": kafka.image,
        "imagePullPolicy": "Always",
        "command": kafka_topics_command(stack),
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        },
        "securityContext": container_security(UID),
        "volumeMounts": [{"name": "tmp", "mountPath": TMP}],
    });
    let mut spec = pod_spec(container, manifest::seconds(&kafka.stop_grace_period), vec![]);
    spec["restartPolicy"] = json!("OnFailure");
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": with_skips(metadata(stack, KAFKA_TOPICS, "broker"), &[SKIP_DIGEST]),
        "spec": {
            "backoffLimit": 10,
            "template": {"metadata": {"labels": labels(stack, KAFKA_TOPICS, "broker")}, "spec": spec},
        },
    })
}

/// The init scripts as a ConfigMap, rendered from their files (kustomize
/// may not read files outside the overlay).
fn init_scripts(stack: &Stack) -> Json {
    let dir = stack.root.join(&stack.manifest.postgres.init_scripts);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n.ends_with(".sql") || n.ends_with(".sh"));
    names.sort();
    let data: serde_json::Map<String, Json> =
        names.iter().map(|n| (n.clone(), json!(std::fs::read_to_string(dir.join(n)).unwrap_or_default()))).collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": named(stack, "postgres-init", "postgres", "database"), "data": data})
}

fn dev_overlay(stack: &Stack) -> Vec<(String, String)> {
    let [postgres, kafka] = infra(stack);
    let namespace = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                "app.kubernetes.io/part-of": stack.manifest.project,
                "app.kubernetes.io/managed-by": "kustomize",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    });
    let mut images: Vec<Json> = stack
        .services
        .iter()
        .map(|s| {
            let name = format!("{}/{}", stack.manifest.project, s.name);
            json!({"name": name, "newName": name, "newTag": "latest"})
        })
        .collect();
    let (broker, broker_tag) = kafka.image.rsplit_once(':').expect("image has a tag");
    images.push(json!({"name": broker, "newName": broker, "newTag": broker_tag}));
    let secret_file = Path::new(SECRET_ENV).file_name().unwrap().to_string_lossy().into_owned();
    let k = kustomization(json!({
        "namespace": NAMESPACE,
        "resources": ["namespace.yaml", "../../base", "postgres.yaml", "postgres-init.yaml", "kafka.yaml"],
        "secretGenerator": [{"name": SECRET_NAME, "envs": [secret_file]}],
        "images": images,
    }));
    let files = vec![
        ("kustomization.yaml", yaml_docs(&[k])),
        ("namespace.yaml", yaml_docs(&[namespace])),
        ("postgres.yaml", yaml_docs(&infra_objects(stack, &postgres))),
        ("postgres-init.yaml", yaml_docs(&[init_scripts(stack)])),
        ("kafka.yaml", yaml_docs(&infra_objects(stack, &kafka))),
    ];
    files.into_iter().map(|(f, c)| (format!("{DIR}/overlays/dev/{f}"), c)).collect()
}

/// An overlay on top of `overlays/dev` that points every service image at
/// `registry` with `tag`, as `cargo xtask build-images --push <registry>`
/// pushes them (`<registry>/<prefix>/<service>:<git short sha>`). `dev` is
/// the path of the dev overlay relative to where this file is written.
pub fn registry_overlay(stack: &Stack, dev: &str, registry: &str, tag: &str) -> String {
    let images: Vec<Json> = stack
        .services
        .iter()
        .map(|s| {
            let name = format!("{}/{}", stack.manifest.project, s.name);
            json!({"name": name, "newName": format!("{registry}/{name}"), "newTag": tag})
        })
        .collect();
    yaml_docs(&[kustomization(json!({"resources": [dev], "images": images}))])
}

/// Every file under `deploy/k8s/`, in a fixed order.
pub fn render(stack: &Stack) -> Vec<(String, String)> {
    let mut files = base(stack);
    files.extend(dev_overlay(stack));
    files
}

/// Creates the git-ignored credentials file of the dev overlay (a random
/// password) when it is missing; never changes an existing one.
pub fn ensure_secret_env(root: &Path) -> Result<bool> {
    let path = root.join(SECRET_ENV);
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let password = crate::dotenv::random_secret()?;
    let text = format!(
        "# git-ignored: the dev overlay's secretGenerator reads it (created by `cargo xtask gen`)\nPOSTGRES_PASSWORD={password}\n"
    );
    crate::dotenv::write_private(&path, &text).with_context(|| format!("cannot create {SECRET_ENV}"))?;
    eprintln!("created {SECRET_ENV} with a random POSTGRES_PASSWORD (git-ignored)");
    Ok(true)
}

#[cfg(test)]
#[path = "k8s_tests.rs"]
mod tests;
