//! `cargo xtask new-service` and first runs of a fresh clone, each in an
//! isolated scratch copy (`common::TestStack`: its own compose project, host
//! ports, volumes, `.env` and images), so it never touches the main stack.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::*;

fn run_in(dir: &Path, args: &[&str]) -> Output {
    xtask_env(args, &[("PYSVC_ROOT", dir.to_str().unwrap())])
}

fn ok_in(dir: &Path, args: &[&str]) -> String {
    let out = run_in(dir, args);
    assert!(out.status.success(), "cargo xtask {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn new_services_build_and_come_up_healthy() {
    let _guard = serial();
    let mut stack = TestStack::new("scaffold");
    let hello_port = stack.reserve_port("hello");
    let dir = stack.dir.clone();
    // Before any `.env` exists, `down` still works (a fresh clone, CI).
    std::fs::rename(dir.join(".env"), dir.join(".env.saved")).unwrap();
    ok_in(&dir, &["down", "--volumes"]);
    assert!(!dir.join(".env").exists(), "down must not create .env");
    std::fs::rename(dir.join(".env.saved"), dir.join(".env")).unwrap();
    ok_in(&dir, &["new-service", "hello"]);
    ok_in(&dir, &["new-service", "tick", "--kind", "worker"]);
    for file in [
        "services/hello/service.yaml",
        "services/hello/pyproject.toml",
        "docker/hello.requirements.txt",
        "docker/hello.Dockerfile",
        "docker/tick.Dockerfile",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert!(ok_in(&dir, &["gen", "--check"]).contains("up to date"));
    let lock = std::fs::read_to_string(dir.join("uv.lock")).unwrap();
    assert!(lock.contains("name = \"hello\"") && lock.contains("name = \"tick\""), "members of the workspace lock");

    // Bad names and existing services are refused, and nothing is created.
    for bad in [&["new-service", "Bad_Name"][..], &["new-service", "hello"], &["new-service", "kafka"]] {
        let out = run_in(&dir, bad);
        assert!(!out.status.success(), "{bad:?} must fail");
    }
    assert!(!dir.join("services/Bad_Name").exists());

    let up = ok_in(&dir, &["up", "--json"]);
    let report: serde_json::Value = serde_json::from_str(up.lines().last().unwrap()).unwrap();
    for s in ["hello", "tick", "api-server", "search-worker"] {
        assert!(report["time_to_healthy"][s].is_number(), "{s} not healthy: {report}");
    }
    let (status, body) = wait_for("hello to answer", Duration::from_secs(30), || {
        http_at(&format!("127.0.0.1:{hello_port}"), "GET", "/health", None).ok()
    });
    assert_eq!(status, 200, "{body}");
    ok_in(&dir, &["down", "--volumes"]);
}

/// A fresh clone on a machine without a registry: the first `up` writes
/// `.env` (random password), fails to pull the upstream base images, builds
/// (or reuses) the local ones, selects them in `.env` and comes up healthy.
#[test]
fn first_up_without_env_or_registry_falls_back_to_local_base_images() {
    let _guard = serial();
    // The copy's manifests already carry its own project and free ports.
    let stack = TestStack::new("fresh");
    let dir = stack.dir.clone();
    std::fs::remove_file(dir.join(".env")).unwrap();
    // A stack an earlier, failed run of this test left behind (another
    // password in its volume) must not decide this run.
    ok_in(&dir, &["down", "--volumes"]);
    assert!(!dir.join(".env").exists());

    let out = run_in(&dir, &["up", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("cannot pull python:3.11-slim-bookworm"), "{err}");
    let env = std::fs::read_to_string(dir.join(".env")).unwrap();
    assert!(env.contains("PYTHON_BASE_IMAGE=pysvc/python:3.11-bookworm"), "{env}");
    let password = env.lines().find_map(|l| l.strip_prefix("POSTGRES_PASSWORD=")).unwrap();
    assert!(password.len() >= 32, "a random password is generated: {password:?}");
    // It holds a secret: only its owner may read it.
    let mode = std::fs::metadata(dir.join(".env")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, ".env is created {mode:o}, not 600");
    let (status, _) = wait_for("api-server", Duration::from_secs(30), || stack.http("GET", "/ready", None).ok());
    assert_eq!(status, 200);
    ok_in(&dir, &["down", "--volumes"]);
}

/// A new `.env` next to an existing data volume: `up` stops before starting
/// anything and says why (the volume's database has another password).
#[test]
fn a_new_env_next_to_an_old_volume_is_refused_with_the_fix() {
    let _guard = serial();
    let stack = TestStack::new("twin");
    let dir = stack.dir.clone();
    std::fs::remove_file(dir.join(".env")).unwrap();
    let volume = format!("{}_postgres-data", stack.project);
    docker(&["volume", "create", "--label", &format!("com.docker.compose.project={}", stack.project), &volume]);
    let out = run_in(&dir, &["up"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("the data volume {volume} already exists")), "{err}");
    assert!(err.contains("cargo xtask down --volumes"), "{err}");
    assert!(stack.container("postgres").is_empty(), "nothing may start");
}

/// A service folder as the design documents start from: a requirements.txt
/// and a flat app (`uvicorn main:app`, a sibling module imported by name).
fn legacy_folder(parent: &Path, name: &str, requirements: &str) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("requirements.txt"), requirements).unwrap();
    std::fs::write(dir.join("helpers.py"), "def status() -> str:\n    return \"ok\"\n").unwrap();
    std::fs::write(
        dir.join("main.py"),
        "from fastapi import FastAPI\nfrom helpers import status\n\napp = FastAPI()\n\n\n@app.get(\"/health\")\n\
         def health() -> dict[str, str]:\n    return {\"status\": status()}\n",
    )
    .unwrap();
    dir
}

/// `new-service --from` adopts such a folder into the uv workspace: it
/// builds and comes up healthy. A requirement the index does not have is
/// refused with uv's own message, and nothing is kept.
#[test]
fn new_service_from_adopts_a_folder_with_a_requirements_txt() {
    let _guard = serial();
    let mut stack = TestStack::new("adopt");
    let port = stack.reserve_port("legacy-api");
    let dir = stack.dir.clone();
    let sources = std::env::temp_dir().join(format!("pysvc-adopt-sources-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&sources);
    let lock = std::fs::read_to_string(dir.join("uv.lock")).unwrap();

    let bad = legacy_folder(&sources, "legacy-bad", "fastapi\npysvc-no-such-package-4c1d\n");
    let out = run_in(&dir, &["new-service", "--from", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "an unresolvable requirement must fail");
    assert!(err.contains("pysvc-no-such-package-4c1d was not found in the package registry"), "uv's message: {err}");
    assert!(err.contains("nothing was kept"), "{err}");
    assert!(!dir.join("services/legacy-bad").exists() && !dir.join("docker/legacy-bad.Dockerfile").exists());
    assert_eq!(std::fs::read_to_string(dir.join("uv.lock")).unwrap(), lock, "uv.lock is as it was");

    let good = legacy_folder(&sources, "legacy-api", "# the app\nfastapi\nuvicorn\n");
    ok_in(&dir, &["new-service", "--from", good.to_str().unwrap()]);
    let pyproject = std::fs::read_to_string(dir.join("services/legacy-api/pyproject.toml")).unwrap();
    assert!(pyproject.contains("dependencies = [\n    \"fastapi\",\n    \"uvicorn\",\n]"), "{pyproject}");
    assert!(!dir.join("services/legacy-api/requirements.txt").exists(), "pyproject.toml holds the requirements now");
    assert!(ok_in(&dir, &["gen", "--check"]).contains("up to date"));

    let report = stack.up();
    assert!(report["time_to_healthy"]["legacy-api"].is_number(), "legacy-api not healthy: {report}");
    let (status, body) = http_at(&format!("127.0.0.1:{port}"), "GET", "/health", None).unwrap();
    assert_eq!((status, json(&body)["status"].as_str()), (200, Some("ok")), "{body}");
    ok_in(&dir, &["down", "--volumes"]);
    std::fs::remove_dir_all(&sources).unwrap();
}

#[test]
fn down_logs_and_status_work_with_a_broken_manifest_and_no_env() {
    let stack = TestStack::new("broken");
    let dir = stack.dir.clone();
    let manifest = dir.join("services/api-server/service.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}\nports: [unclosed\n")).unwrap();
    std::fs::remove_file(dir.join(".env")).unwrap();

    // What loads the manifests refuses, naming the file.
    let out = run_in(&dir, &["gen", "--check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("services/api-server/service.yaml"), "{err}");

    // What only reads the running stack still works: it falls back to the
    // compose project named by stack.yaml or compose.yaml.
    let out = run_in(&dir, &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status: {err}");
    assert!(err.contains(&stack.project), "status names the project it shows: {err}");
    ok_in(&dir, &["logs", "--no-follow"]);
    ok_in(&dir, &["down", "--volumes"]);
    assert!(!dir.join(".env").exists(), "none of them writes .env");
}
