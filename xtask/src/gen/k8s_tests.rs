//! The Kubernetes renderer: one test per probe rule, the restricted pod
//! security, NetworkPolicies from depends_on, and parity with compose.yaml.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use super::*;
use crate::manifest::tests::{fixture, write, HTTP, WORKER};

/// Every object of the rendered tree, by "Kind/name" (kustomizations aside).
fn objects(stack: &Stack) -> BTreeMap<String, Yaml> {
    let mut out = BTreeMap::new();
    for (path, text) in render(stack) {
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}"));
            let kind = value["kind"].as_str().unwrap().to_owned();
            if kind != "Kustomization" {
                out.insert(format!("{kind}/{}", value["metadata"]["name"].as_str().unwrap()), value);
            }
        }
    }
    out
}

fn load(root: &std::path::Path) -> Stack {
    manifest::load(root).unwrap()
}

fn workload<'a>(objects: &'a BTreeMap<String, Yaml>, name: &str) -> &'a Yaml {
    objects
        .get(&format!("Deployment/{name}"))
        .or_else(|| objects.get(&format!("StatefulSet/{name}")))
        .or_else(|| objects.get(&format!("Job/{name}")))
        .unwrap_or_else(|| panic!("no workload {name}"))
}

fn container<'a>(objects: &'a BTreeMap<String, Yaml>, name: &str) -> &'a Yaml {
    &workload(objects, name)["spec"]["template"]["spec"]["containers"][0]
}

fn strings(value: &Yaml) -> Vec<String> {
    serde_yaml::from_value(value.clone()).unwrap_or_else(|e| panic!("not a list of strings ({e}): {value:?}"))
}

#[test]
fn every_container_gets_a_startup_probe_that_covers_its_start_period() {
    let root = fixture();
    write(
        &root,
        "services/web/service.yaml",
        &HTTP.replace("  path: /ready\n", "  path: /ready\n  start_period: 90s\n  interval: 5s\n"),
    );
    let stack = load(&root);
    let objects = objects(&stack);
    for name in ["web", "worker", "postgres", "kafka"] {
        let c = container(&objects, name);
        let startup = &c["startupProbe"];
        assert!(startup.is_mapping(), "{name} has no startupProbe");
        let window = startup["periodSeconds"].as_u64().unwrap() * startup["failureThreshold"].as_u64().unwrap();
        let liveness = &c["livenessProbe"];
        // The startupProbe checks what liveness checks, for long enough.
        assert_eq!(startup.get("httpGet"), liveness.get("httpGet"), "{name}");
        assert_eq!(startup.get("exec"), liveness.get("exec"), "{name}");
        assert!(startup.get("initialDelaySeconds").is_none(), "{name}: a delay is not a start period");
        let start = match name {
            "web" => 90,
            "kafka" => 30,
            _ => 60,
        };
        assert!(window >= start, "{name}: startup window {window}s < start period {start}s");
    }
    let web = container(&objects, "web");
    assert_eq!(web["startupProbe"]["periodSeconds"], 5);
    assert_eq!(web["startupProbe"]["failureThreshold"], 90 / 5 + 3);
}

#[test]
fn exec_probes_are_argv_lists_never_shell_strings() {
    let stack = load(&fixture());
    let all = objects(&stack);
    for (key, object) in &all {
        for c in object["spec"]["template"]["spec"]["containers"].as_sequence().into_iter().flatten() {
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                if let Some(exec) = c[probe].get("exec") {
                    let argv = strings(&exec["command"]);
                    assert!(argv.len() > 1, "{key} {probe}: {argv:?}");
                    assert!(
                        !["sh", "/bin/sh", "bash", "/bin/bash"].contains(&argv[0].as_str()),
                        "{key} {probe}: {argv:?}"
                    );
                    assert!(
                        argv.iter().all(|a| !a.contains("$(") && !a.contains("${")),
                        "{key}: nothing expands {argv:?}"
                    );
                }
            }
        }
    }
    let objects = objects(&stack);
    assert_eq!(
        strings(&container(&objects, "worker")["readinessProbe"]["exec"]["command"]),
        ["python", "-m", "worker_pkg.health"]
    );
    assert_eq!(
        strings(&container(&objects, "postgres")["readinessProbe"]["exec"]["command"]),
        ["pg_isready", "-h", "127.0.0.1", "-U", "pysvc", "-d", "pysvc"]
    );
}

#[test]
fn readiness_differs_from_liveness_where_the_manifest_says_so() {
    let root = fixture();
    let before = objects(&load(&root));
    // No `liveness`: one check for both.
    let web = container(&before, "web");
    assert_eq!(web["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(web["livenessProbe"]["httpGet"]["path"], "/ready");
    write(
        &root,
        "services/web/service.yaml",
        &HTTP.replace("  path: /ready\n", "  path: /ready\n  liveness:\n    path: /health\n"),
    );
    write(
        &root,
        "services/worker/service.yaml",
        &WORKER.replace("health:\n", "health:\n  liveness:\n    command: [python, -m, worker_pkg.alive]\n"),
    );
    let objects = objects(&load(&root));
    let web = container(&objects, "web");
    assert_eq!(web["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(web["readinessProbe"]["httpGet"]["port"], 8000);
    assert_eq!(web["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(web["startupProbe"]["httpGet"]["path"], "/health");
    let worker = container(&objects, "worker");
    assert_eq!(strings(&worker["readinessProbe"]["exec"]["command"]), ["python", "-m", "worker_pkg.health"]);
    assert_eq!(strings(&worker["livenessProbe"]["exec"]["command"]), ["python", "-m", "worker_pkg.alive"]);
    // Compose's healthcheck is the readiness check (depends_on waits for it).
    let compose: Yaml = serde_yaml::from_str(&crate::gen::compose(&load(&root))).unwrap();
    let test = strings(&compose["services"]["web"]["healthcheck"]["test"]);
    assert!(test[3].contains("http://127.0.0.1:8000/ready"), "{test:?}");
}

#[test]
fn probe_timing_comes_from_the_manifest_with_defaults() {
    let root = fixture();
    let objects_default = objects(&load(&root));
    let probe = &container(&objects_default, "worker")["livenessProbe"];
    assert_eq!(
        (probe["periodSeconds"].as_u64(), probe["timeoutSeconds"].as_u64(), probe["failureThreshold"].as_u64()),
        (Some(1), Some(3), Some(3))
    );
    write(
        &root,
        "services/worker/service.yaml",
        &WORKER.replace("health:\n", "health:\n  interval: 10s\n  timeout: 4s\n  retries: 5\n  start_period: 1m\n"),
    );
    let stack = load(&root);
    let objects = objects(&stack);
    let c = container(&objects, "worker");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["periodSeconds"], 10);
        assert_eq!(c[probe]["timeoutSeconds"], 4);
        assert_eq!(c[probe]["failureThreshold"], 5);
    }
    assert_eq!(c["startupProbe"]["failureThreshold"], 60 / 10 + 5);
    let compose: Yaml = serde_yaml::from_str(&crate::gen::compose(&stack)).unwrap();
    let hc = &compose["services"]["worker"]["healthcheck"];
    assert_eq!(hc["interval"], "${HEALTH_INTERVAL:-10s}");
    assert_eq!(hc["timeout"], "4s");
    assert_eq!(hc["retries"], 5);
    assert_eq!(hc["start_period"], "${HEALTH_START_PERIOD:-60s}");
}

#[test]
fn bad_health_specs_are_located_with_the_fix() {
    for (file, text, needle) in [
        (
            "services/web/service.yaml",
            HTTP.replace("  path: /ready\n", "  path: /ready\n  liveness:\n    path: /h\n    command: [x, y]\n"),
            "exactly one of",
        ),
        (
            "services/worker/service.yaml",
            WORKER.replace("health:\n", "health:\n  liveness:\n    path: /health\n"),
            "needs a `port`",
        ),
        ("services/worker/service.yaml", WORKER.replace("health:\n", "health:\n  interval: 0s\n"), "at least 1s"),
        (
            "services/worker/service.yaml",
            WORKER.replace("health:\n", "health:\n  timeout: soon\n"),
            "whole number of seconds",
        ),
        (
            "services/worker/service.yaml",
            format!("{WORKER}resources:\n  limits: {{cpu: lots, memory: 1Gi}}\n"),
            "millicores",
        ),
    ] {
        let root = fixture();
        write(&root, file, &text);
        let err = format!("{:#}", manifest::load(&root).unwrap_err());
        assert!(err.starts_with(&format!("{file}:")) && err.contains(needle), "{err}");
        let location: Vec<&str> = err.splitn(4, ':').collect();
        assert!(location[1].parse::<usize>().unwrap() > 1, "{err}");
    }
}

#[test]
fn every_service_workload_runs_restricted() {
    let root = fixture();
    write(
        &root,
        "services/worker/service.yaml",
        &format!("{WORKER}stop_grace_period: 2m\nresources:\n  limits: {{cpu: \"1\", memory: 1Gi}}\n"),
    );
    let stack = load(&root);
    let objects = objects(&stack);
    for name in ["web", "worker", "postgres", "kafka"] {
        let pod = &workload(&objects, name)["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        assert_eq!(sc["runAsUser"], 10001, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{name}");
        assert!(sc["capabilities"].get("add").is_none(), "{name}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        let tmp =
            c["volumeMounts"].as_sequence().unwrap().iter().find(|m| m["mountPath"] == "/tmp").expect("a /tmp mount");
        let volume = pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == tmp["name"]).unwrap();
        assert!(volume.get("emptyDir").is_some(), "{name}: /tmp is an emptyDir");
        for kind in ["requests", "limits"] {
            assert!(c["resources"][kind]["cpu"].is_string() && c["resources"][kind]["memory"].is_string(), "{name}");
        }
    }
    let worker = workload(&objects, "worker");
    assert_eq!(worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 120);
    assert_eq!(container(&objects, "worker")["resources"]["limits"]["memory"], "1Gi");
    assert_eq!(container(&objects, "web")["resources"]["limits"]["memory"], "256Mi", "the default");
    assert_eq!(workload(&objects, "web")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 30);
    // The dev namespace enforces the restricted Pod Security Standard.
    let ns = &objects[&format!("Namespace/{NAMESPACE}")];
    assert_eq!(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted");
    // Every policy skip names its check and gives a reason.
    for (key, object) in &objects {
        for (k, v) in object["metadata"]["annotations"].as_mapping().into_iter().flatten() {
            if k.as_str().unwrap().starts_with("checkov.io/skip") {
                let (check, reason) = v.as_str().unwrap().split_once('=').unwrap();
                assert!(check.starts_with("CKV_K8S_") && reason.len() > 20, "{key}: {v:?}");
            }
        }
    }
}

#[test]
fn network_policies_admit_only_dependents() {
    let stack = load(&fixture());
    let objects = objects(&stack);
    let deny = &objects["NetworkPolicy/default-deny-ingress"];
    assert_eq!(deny["spec"]["podSelector"], Yaml::Mapping(Default::default()));
    assert!(deny["spec"].get("ingress").is_none());
    let from = |name: &str| -> BTreeSet<String> {
        objects[&format!("NetworkPolicy/{name}-ingress")]["spec"]["ingress"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|rule| match rule.get("from") {
                Some(from) => from
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|f| f["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>(),
                None => vec!["<anywhere>".to_owned()],
            })
            .collect()
    };
    // web depends on postgres and kafka, worker on kafka only.
    assert_eq!(from("postgres"), BTreeSet::from(["web".to_owned()]));
    // ... and the topic creation reaches the broker too.
    assert_eq!(from("kafka"), BTreeSet::from(["kafka-topics".to_owned(), "web".to_owned(), "worker".to_owned()]));
    assert_eq!(from("web"), BTreeSet::from(["<anywhere>".to_owned()]), "a published port is reachable from outside");
    assert!(!objects.contains_key("NetworkPolicy/worker-ingress"), "nothing connects to a worker");
}

#[test]
fn images_are_named_as_build_images_tags_them() {
    let stack = load(&fixture());
    let objects = objects(&stack);
    assert_eq!(container(&objects, "web")["image"], "demo/web:latest");
    let overlay =
        render(&stack).into_iter().find(|(p, _)| p == "deploy/k8s/overlays/dev/kustomization.yaml").unwrap().1;
    let k: Yaml = serde_yaml::from_str(&overlay).unwrap();
    let images = k["images"].as_sequence().unwrap();
    assert!(images.iter().any(|i| i["name"] == "demo/web" && i["newTag"] == "latest"), "{overlay}");
    assert_eq!(strings(&k["secretGenerator"][0]["envs"]), ["postgres.env"]);
}

#[test]
fn no_password_in_any_generated_file_and_the_secret_file_is_git_ignored() {
    let root = fixture();
    let stack = load(&root);
    for (path, text) in crate::gen::render_all(&stack, &Default::default()) {
        for line in text.lines() {
            if let Some((_, value)) =
                line.split_once("POSTGRES_PASSWORD=").or_else(|| line.split_once("POSTGRES_PASSWORD: "))
            {
                assert!(value.is_empty() || value.starts_with("${POSTGRES_PASSWORD:?"), "{path}: {line}");
            }
        }
    }
    assert!(ensure_secret_env(&root).unwrap());
    let first = std::fs::read_to_string(root.join(SECRET_ENV)).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(root.join(SECRET_ENV)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{SECRET_ENV} holds a password: only its owner may read it");
    assert!(first.lines().any(|l| l.strip_prefix("POSTGRES_PASSWORD=").is_some_and(|p| p.len() >= 32)), "{first}");
    assert!(!ensure_secret_env(&root).unwrap(), "an existing credentials file is kept");
    assert_eq!(std::fs::read_to_string(root.join(SECRET_ENV)).unwrap(), first);
    let ignore = std::fs::read_to_string(crate::project_root().join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == SECRET_ENV), ".gitignore must list {SECRET_ENV}");
}

/// Compose's interpolation as `.env.example` leaves it: `${NAME:-default}`
/// is `default`; `${NAME:?...}` a required secret.
fn resolve(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        if rest[start..].starts_with("$$") {
            out.push('$');
            rest = &rest[start + 2..];
            continue;
        }
        assert!(rest[start..].starts_with("${"), "{value}: a bare $ that compose would interpolate");
        let end = start + rest[start..].find('}').unwrap_or_else(|| panic!("unclosed in {value:?}"));
        let inner = &rest[start + 2..end];
        if let Some((_, default)) = inner.split_once(":-") {
            out.push_str(default);
        } else if let Some((name, _)) = inner.split_once(":?") {
            out.push_str(&format!("secret:{name}"));
        } else {
            panic!("{value}: a variable without a default");
        }
        rest = &rest[end + 1..];
    }
    out + rest
}

/// What Kubernetes gives a container's environment: ConfigMap values
/// resolved, Secret references named.
fn k8s_env(objects: &BTreeMap<String, Yaml>, c: &Yaml) -> BTreeMap<String, String> {
    c["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_owned();
            let from = &e["valueFrom"];
            let value = if let Some(v) = e["value"].as_str() {
                v.to_owned()
            } else if let Some(r) = from.get("configMapKeyRef") {
                let map = &objects[&format!("ConfigMap/{}", r["name"].as_str().unwrap())];
                map["data"][r["key"].as_str().unwrap()].as_str().unwrap_or_else(|| panic!("{name} missing")).to_owned()
            } else {
                let r = &from["secretKeyRef"];
                assert_eq!(r["name"], SECRET_NAME);
                format!("secret:{}", r["key"].as_str().unwrap())
            };
            (name, value)
        })
        .collect()
}

/// Every service, port, environment variable, command and probe of
/// compose.yaml is in the Kubernetes output with the same meaning, and the
/// Kubernetes output has no service, variable or port compose lacks.
fn assert_parity(stack: &Stack) {
    let compose: Yaml = serde_yaml::from_str(&crate::gen::compose(stack)).unwrap();
    let objects = objects(stack);
    let services = compose["services"].as_mapping().unwrap();
    let compose_names: BTreeSet<String> = services.keys().map(|k| k.as_str().unwrap().to_owned()).collect();
    let k8s_names: BTreeSet<String> = objects
        .iter()
        .filter(|(k, _)| k.starts_with("Deployment/") || k.starts_with("StatefulSet/") || k.starts_with("Job/"))
        .map(|(_, o)| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(compose_names, k8s_names, "the same services");
    let all_env: Vec<String> = services
        .values()
        .flat_map(|s| s["environment"].as_mapping().into_iter().flatten().map(|(_, v)| resolve(v.as_str().unwrap())))
        .collect();
    for (name, s) in services {
        let name = name.as_str().unwrap();
        let c = container(&objects, name);
        // Environment: same names, same values.
        let env: BTreeMap<String, String> = s["environment"]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str().unwrap().to_owned(), resolve(v.as_str().unwrap())))
            .collect();
        let mut k8s = k8s_env(&objects, c);
        // The one difference, by design: PostgreSQL's data folder inside
        // its claim (compose mounts its volume at the image's PGDATA).
        if name == "postgres" {
            assert_eq!(k8s.remove("PGDATA").as_deref(), Some("/var/lib/postgresql/data/pgdata"));
        }
        assert_eq!(env, k8s, "{name}: environment");
        // Image, as build-images tags it (or the infrastructure image).
        assert_eq!(resolve(s["image"].as_str().unwrap()), c["image"].as_str().unwrap(), "{name}: image");
        // Command: the same argv, or both leave the image's own.
        let command = |v: Option<&Yaml>, f: &dyn Fn(&str) -> String| {
            v.map(|v| strings(v).iter().map(|a| f(a)).collect::<Vec<_>>())
        };
        assert_eq!(
            command(s.get("command"), &resolve),
            command(c.get("command"), &|a| a.replace("$$(", "$(")),
            "{name}: command"
        );
        // Ports: every published container port is a containerPort and a
        // Service port; Kubernetes adds only ports others reach by name.
        let published: BTreeSet<u64> =
            strings(&s["ports"]).iter().map(|p| p.rsplit(':').next().unwrap().parse().unwrap()).collect();
        let k8s_ports: BTreeSet<u64> =
            c["ports"].as_sequence().into_iter().flatten().map(|p| p["containerPort"].as_u64().unwrap()).collect();
        for port in &k8s_ports {
            let reached =
                all_env.iter().any(|v| v == &format!("{name}:{port}") || v == &format!("tcp://{name}:{port}"))
                    || (name == "postgres" && all_env.contains(&port.to_string()));
            assert!(published.contains(port) || reached, "{name}: port {port} is not in compose.yaml");
        }
        assert!(published.is_subset(&k8s_ports), "{name}: {published:?} not all in {k8s_ports:?}");
        if !k8s_ports.is_empty() {
            let svc = &objects[&format!("Service/{name}")];
            let svc_ports: BTreeSet<u64> =
                svc["spec"]["ports"].as_sequence().unwrap().iter().map(|p| p["port"].as_u64().unwrap()).collect();
            assert_eq!(svc_ports, k8s_ports, "{name}: Service ports");
            // A StatefulSet's headless Service names its pod before it is
            // ready (the broker's probe goes through its advertised name).
            if workload(&objects, name)["kind"] == "StatefulSet" {
                assert_eq!(svc["spec"]["clusterIP"], "None", "{name}");
                assert_eq!(svc["spec"]["publishNotReadyAddresses"], true, "{name}");
            }
        }
        let secs = |v: &Yaml| manifest::seconds(&resolve(v.as_str().unwrap())) as u64;
        // Stop grace period.
        let grace = workload(&objects, name)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64();
        assert_eq!(Some(secs(&s["stop_grace_period"])), grace, "{name}: stop grace period");
        // Probe: compose's healthcheck is the readinessProbe, same timing; a
        // one-shot service (a Job) has neither.
        let Some(hc) = s.get("healthcheck") else {
            assert!(c.get("readinessProbe").is_none(), "{name}: a probe Kubernetes has and compose has not");
            continue;
        };
        let test: Vec<String> = strings(&hc["test"]).iter().map(|a| resolve(a)).collect();
        assert_eq!(test[0], "CMD", "{name}: exec form, no shell");
        let readiness = &c["readinessProbe"];
        if let Some(http) = readiness.get("httpGet") {
            let url = format!("http://127.0.0.1:{}{}", http["port"].as_u64().unwrap(), http["path"].as_str().unwrap());
            assert!(test[1..].iter().any(|a| a.contains(&format!("'{url}'"))), "{name}: {test:?} is not GET {url}");
        } else {
            assert_eq!(test[1..], strings(&readiness["exec"]["command"])[..], "{name}: probe command");
        }
        assert_eq!(secs(&hc["interval"]), readiness["periodSeconds"].as_u64().unwrap(), "{name}: interval");
        assert_eq!(secs(&hc["timeout"]), readiness["timeoutSeconds"].as_u64().unwrap(), "{name}: timeout");
        assert_eq!(hc["retries"].as_u64(), readiness["failureThreshold"].as_u64(), "{name}: retries");
        let startup = &c["startupProbe"];
        assert!(
            startup["periodSeconds"].as_u64().unwrap() * startup["failureThreshold"].as_u64().unwrap()
                >= secs(&hc["start_period"]) + secs(&hc["interval"]) * hc["retries"].as_u64().unwrap(),
            "{name}: the startupProbe is shorter than compose's start period and retries"
        );
    }
}

#[test]
fn kubernetes_output_matches_compose_for_the_repository() {
    assert_parity(&load(&crate::project_root()));
}

#[test]
fn kubernetes_output_matches_compose_for_other_shapes() {
    let root = fixture();
    assert_parity(&load(&root));
    write(
        &root,
        "services/worker/service.yaml",
        &format!("{WORKER}environment:\n  MODE: \"fast: yes\"\n  EMPTY: \"\"\n  PRICE: \"$5 ${{HOME}}\"\n")
            .replace("[python, -m, worker_pkg]", "[python, -m, worker_pkg, \"$HOME\", \"$(HOME)\"]"),
    );
    write(
        &root,
        "services/web/service.yaml",
        &HTTP.replace("depends_on: [postgres, kafka]\n", "depends_on: [worker]\n"),
    );
    assert_parity(&load(&root));
}

#[test]
fn every_object_carries_the_recommended_labels_of_its_app() {
    let stack = load(&fixture());
    let apps = ["web", "worker", "postgres", "kafka", "kafka-topics", SERVICE_ACCOUNT, "default-deny-ingress"];
    for (key, object) in objects(&stack) {
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/part-of"], "demo", "{key}");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "kustomize", "{key}");
        if key.starts_with("Namespace/") {
            continue;
        }
        assert!(labels["app.kubernetes.io/component"].is_string(), "{key}");
        let app = labels["app.kubernetes.io/name"].as_str().unwrap();
        assert!(apps.contains(&app), "{key}: app {app:?}");
        if let Some(selector) = object["spec"]["selector"]["matchLabels"].as_mapping() {
            for (k, v) in selector {
                assert_eq!(&object["spec"]["template"]["metadata"]["labels"][k], v, "{key}: selector {k:?}");
            }
        }
    }
}
