//! The hardened compose stack, checked on the running containers (not on
//! the YAML): no privilege gain and a seccomp filter everywhere; read-only
//! root filesystems with a writable tmpfs `/tmp` and no capabilities for the
//! services and the broker; PostgreSQL's server without capabilities; and
//! the stack still comes up healthy and answers a search. Runs on its own
//! `TestStack` (project, free ports, volumes, images), removed even when a
//! check fails.

mod common;

use std::time::Duration;

use common::*;

const APPS: [&str; 2] = ["api-server", "search-worker"];
const INFRA: [&str; 2] = ["postgres", "kafka"];

/// The capabilities a container gets unless told otherwise (Docker's and
/// Podman's default set).
const DEFAULT_CAPS: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// `cap_drop: [ALL]` as the engine records it: Docker keeps `ALL`, Podman
/// lists each default capability it dropped: all but the ones compose adds
/// back (`declared`), which it does not list under `CapAdd`.
fn drops_every_default_capability(host: &serde_json::Value, declared: &[String]) -> bool {
    let named = |key: &str, cap: &str| {
        host[key].as_array().is_some_and(|a| a.iter().any(|c| c == cap || c == &format!("CAP_{cap}")))
    };
    named("CapDrop", "ALL") || DEFAULT_CAPS.iter().all(|cap| named("CapDrop", cap) || declared.iter().any(|d| d == cap))
}

/// The stack's compose configuration, as Compose resolves it.
fn compose_config(stack: &TestStack) -> serde_json::Value {
    let out = std::process::Command::new("docker")
        .args(["compose", "config", "--format", "json"])
        .current_dir(&stack.dir)
        .output()
        .expect("docker compose runs");
    assert!(out.status.success(), "docker compose config: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The capabilities the compose configuration adds back for `service`.
fn declared_cap_add(config: &serde_json::Value, service: &str) -> Vec<String> {
    config["services"][service]["cap_add"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str()).map(str::to_owned).collect())
        .unwrap_or_default()
}

#[test]
fn running_containers_are_hardened_and_the_stack_still_works() {
    let stack = TestStack::new("hardening");
    let report = stack.up();
    for s in APPS.iter().chain(&INFRA) {
        assert!(report["time_to_healthy"][s].is_number(), "{s} not healthy: {report}");
    }

    let config = compose_config(&stack);
    for s in APPS.iter().chain(&INFRA) {
        let id = stack.container(s);
        let host = docker_json(&["inspect", "-f", "{{json .HostConfig}}", &id]);
        let declared = declared_cap_add(&config, s);
        assert!(
            drops_every_default_capability(&host, &declared),
            "{s}: dropped {}, added {} (compose adds {declared:?})",
            host["CapDrop"],
            host["CapAdd"]
        );
        assert!(
            // Docker writes `no-new-privileges:true`, Podman `no-new-privileges`.
            host["SecurityOpt"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == "no-new-privileges:true" || o == "no-new-privileges"),
            "{s}: {}",
            host["SecurityOpt"]
        );
        // What the kernel enforces on the running main process.
        assert_eq!(proc_status(&id, "NoNewPrivs"), "1", "{s}: can gain privileges");
        assert_eq!(proc_status(&id, "Seccomp"), "2", "{s}: no seccomp filter");
    }
    // Read-only root with a writable /tmp: the services and the broker.
    // (PostgreSQL is the documented exception: its socket directory must
    // belong to the image's own user, which a tmpfs cannot be here.)
    for s in APPS.iter().chain(&["kafka"]) {
        let id = stack.container(s);
        let host = docker_json(&["inspect", "-f", "{{json .HostConfig}}", &id]);
        assert_eq!(host["ReadonlyRootfs"], true, "{s}: root filesystem writable");
        let (code, out) = exec(&id, &["touch", "/tmp/k8stest-probe"]);
        assert_eq!(code, 0, "{s}: /tmp must be writable: {out}");
        let (code, _) = exec(&id, &["touch", "/k8stest-probe"]);
        assert_ne!(code, 0, "{s}: the root filesystem accepted a write");
        // Non-root with an empty capability set (effective and permitted).
        // The broker runs as the upstream apache/kafka image's user (1000),
        // so either image can take over the other's data volume.
        let uid = if *s == "kafka" { "1000" } else { "10001" };
        assert_eq!(proc_status(&id, "Uid").split_whitespace().next(), Some(uid), "{s}");
        assert_eq!(proc_status(&id, "CapEff"), "0000000000000000", "{s}: has capabilities");
        assert_eq!(proc_status(&id, "CapPrm"), "0000000000000000", "{s}: has capabilities");
        // The code and the venv are not writable even where a tmpfs is.
        if APPS.contains(s) {
            let (code, _) = exec(&id, &["touch", "/app/k8stest-probe"]);
            assert_ne!(code, 0, "{s}: /app accepted a write");
        }
    }
    // PostgreSQL's server runs as its own user without capabilities (the
    // image's entrypoint may step down from root with the added ones).
    let pg = stack.container("postgres");
    assert_ne!(proc_status(&pg, "Uid").split_whitespace().next(), Some("0"), "postgres runs as root");
    assert_eq!(proc_status(&pg, "CapEff"), "0000000000000000", "postgres server has capabilities");

    // End to end: a search is stored, queued, answered from PostgreSQL.
    let id = stack.post_search("healthcheck");
    let done = stack.answered(&id, Duration::from_secs(60));
    assert!(!done["results"].as_array().unwrap().is_empty(), "{done}");
    // The worker's heartbeat lives in the tmpfs: it stays healthy.
    let worker = stack.container("search-worker");
    let (code, out) = exec(&worker, &["python", "-m", "search_worker.health"]);
    assert_eq!(code, 0, "{out}");
}
