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

/// The pinned uv the xtask installs (`target/tools`), as a developer runs it.
fn uv_in(dir: &Path, args: &[&str]) -> String {
    let uv = root().join("target/tools/uv-0.13.9/bin/uv");
    let out = std::process::Command::new(uv).args(args).current_dir(dir).output().expect("the pinned uv runs");
    assert!(
        out.status.success(),
        "uv {} failed in {}:\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Two adopted folders that pin different uvicorn versions (issue 23): the
/// second cannot join the workspace's lock, so `new-service --from` says
/// what clashes (uv's message) and offers `--own-lock`, keeping nothing;
/// with it, the service keeps its own lock. Each image holds its own
/// version, the shared package reaches the second (its venv and its image),
/// its pyproject changed without relocking is caught, `installer: pip`
/// installs its own export, and no other image's inputs change.
#[test]
fn two_adopted_folders_pinning_different_uvicorn_versions_each_keep_their_own() {
    let _guard = serial();
    let mut stack = TestStack::new("ownlock");
    let (old_port, new_port) = (stack.reserve_port("pins-old"), stack.reserve_port("pins-new"));
    let dir = stack.dir.clone();
    let sources = std::env::temp_dir().join(format!("pysvc-ownlock-sources-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&sources);
    let read = |rel: &str| std::fs::read_to_string(dir.join(rel)).unwrap();

    let old = legacy_folder(&sources, "pins-old", "fastapi\nuvicorn==0.34.2\n");
    stack.ok(&["new-service", "--from", old.to_str().unwrap()]);
    let (lock, pyproject, old_export) =
        (read("uv.lock"), read("pyproject.toml"), read("docker/pins-old.requirements.txt"));
    // (One lock: pins-old's uvicorn==0.34.2 is now api-server's uvicorn too.)
    let api_export = read("docker/api-server.requirements.txt");

    let new = legacy_folder(&sources, "pins-new", "fastapi\nuvicorn==0.34.3\npysvc-common\n");
    std::fs::write(
        new.join("helpers.py"),
        "import pysvc_common\n\n\ndef status() -> str:\n    return pysvc_common.__name__\n",
    )
    .unwrap();
    std::fs::create_dir_all(new.join("tests")).unwrap();
    std::fs::write(
        new.join("tests/test_main.py"),
        "from helpers import status\n\n\ndef test_status() -> None:\n    assert status() == \"pysvc_common\"\n",
    )
    .unwrap();
    let out = stack.run(&["new-service", "--from", new.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the workspace cannot hold both pins");
    assert!(err.contains("uvicorn==0.34.2") && err.contains("uvicorn==0.34.3"), "uv's message: {err}");
    assert!(err.contains("nothing was kept") && err.contains("--own-lock`"), "the offer: {err}");
    assert!(!dir.join("services/pins-new").exists());
    assert_eq!((read("uv.lock"), read("pyproject.toml")), (lock.clone(), pyproject), "nothing kept");

    let said = stack.ok(&["new-service", "--from", new.to_str().unwrap(), "--own-lock"]);
    assert!(said.contains("with its own lock (service.yaml `lock: own`)"), "{said}");
    assert_eq!(read("uv.lock"), lock, "the workspace's lock is as it was");
    assert!(read("services/pins-new/uv.lock").contains("name = \"uvicorn\"\nversion = \"0.34.3\""));
    // The pip rollback installs its own export.
    let manifest = read("services/pins-new/service.yaml") + "installer: pip\n";
    std::fs::write(dir.join("services/pins-new/service.yaml"), manifest).unwrap();
    stack.ok(&["gen"]);
    let export = read("docker/pins-new.requirements.txt");
    assert!(export.contains("uvicorn==0.34.3") && export.contains("confluent-kafka=="), "{export}");
    let installs_shared = export.lines().any(|l| ["pysvc-common", "-e", "."].iter().any(|p| l.starts_with(p)));
    assert!(!installs_shared, "the shared code is copied, its dependencies installed: {export}");
    // Its own `uv run pytest`: its .venv, the shared package in it.
    let new_dir = dir.join("services/pins-new");
    assert!(uv_in(&new_dir, &["run", "--locked", "pytest", "-q"]).contains("1 passed"));
    assert!(uv_in(&new_dir, &["run", "--locked", "python", "-c", "import uvicorn; print(uvicorn.__version__)"])
        .contains("0.34.3"));
    // A pyproject changed without relocking is caught, with uv's message and the fix.
    let pyproject = read("services/pins-new/pyproject.toml").replace("version = \"0.1.0\"", "version = \"0.2.0\"");
    std::fs::write(new_dir.join("pyproject.toml"), pyproject).unwrap();
    for args in [&["gen", "--check"][..], &["build-images", "pins-new"]] {
        let out = stack.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} must fail with a stale own lock");
        assert!(
            err.contains("needs to be updated")
                && err.contains("services/pins-new/uv.lock is stale: run `cargo xtask lock`"),
            "{err}"
        );
    }
    stack.ok(&["lock"]);
    assert!(stack.ok(&["gen", "--check"]).contains("up to date"));
    // Neither the workspace's images nor the other adopted one changed inputs.
    assert_eq!(
        (read("docker/api-server.requirements.txt"), read("docker/pins-old.requirements.txt")),
        (api_export, old_export)
    );

    let report = stack.up();
    for s in ["pins-old", "pins-new", "api-server", "search-worker"] {
        assert!(report["time_to_healthy"][s].is_number(), "{s} not healthy: {report}");
    }
    let version = "import importlib.metadata as m; print(m.version('uvicorn'))";
    for (service, wanted, port, status) in
        [("pins-old", "0.34.2", old_port, "ok"), ("pins-new", "0.34.3", new_port, "pysvc_common")]
    {
        let image = stack.image(service);
        let got = docker_run_ok(&["--entrypoint", "python", &image, "-c", version]);
        assert_eq!(got.trim(), wanted, "{service}'s image holds its own uvicorn");
        let (code, body) = http_at(&format!("127.0.0.1:{port}"), "GET", "/health", None).unwrap();
        assert_eq!((code, json(&body)["status"].as_str()), (200, Some(status)), "{service}: {body}");
    }
    stack.ok(&["down", "--volumes"]);
    std::fs::remove_dir_all(&sources).unwrap();
}
