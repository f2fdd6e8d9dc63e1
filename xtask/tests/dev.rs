//! `cargo xtask dev` on a scratch stack: the real command, the real engine.
//! Edits in the scratch copy are seen over HTTP (api-server) and through
//! the worker's answers (search-worker) without a new container; a syntax
//! error is reported with file and line while the previous code keeps
//! serving, and the next good save recovers; the dev containers keep the
//! hardening; Ctrl-C leaves the stack as `cargo xtask up` does. Generous
//! waits, no timing assertions: speed is measured by `cargo xtask bench-dev`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::*;

const APPS: [&str; 2] = ["api-server", "search-worker"];
const APP_PY: &str = "services/api-server/api_server/app.py";
const SEARCH_PY: &str = "services/search-worker/search_worker/search.py";

/// The lines `xtask dev` prints on stdout, as they come (echoed to stderr).
fn lines_of(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("dev> {line}");
            let _ = tx.send(line);
        }
    });
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("dev! {line}");
        }
    });
    rx
}

fn expect_line(rx: &Receiver<String>, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("`cargo xtask dev` printed no line with {needle:?} within {timeout:?}");
}

fn openapi_version(stack: &TestStack) -> Option<String> {
    let (status, body) = stack.http("GET", "/openapi.json", None).ok()?;
    (status == 200).then(|| json(&body)["info"]["version"].as_str().unwrap_or_default().to_owned())
}

fn results_of(stack: &TestStack, query: &str) -> usize {
    let id = stack.post_search(query);
    stack.answered(&id, Duration::from_secs(60))["results"].as_array().unwrap().len()
}

/// The checks of `hardening.rs`, on a dev-mode container, plus its mounts.
fn assert_hardened_with_read_only_code(id: &str, service: &str) {
    let host = docker_json(&["inspect", "-f", "{{json .HostConfig}}", id]);
    assert_eq!(host["ReadonlyRootfs"], true, "{service}: root filesystem writable in dev mode");
    // Judged on the running process: engines spell the settings differently
    // (Docker: `ALL`, `no-new-privileges:true`; Podman: each dropped
    // capability, `no-new-privileges`).
    assert_eq!(proc_status(id, "CapBnd"), "0000000000000000", "{service}: {}", host["CapDrop"]);
    assert_eq!(proc_status(id, "NoNewPrivs"), "1", "{service}: {}", host["SecurityOpt"]);
    assert_eq!(docker(&["inspect", "-f", "{{.Config.User}}", id]), "10001:10001", "{service}");
    let mounts = docker_json(&["inspect", "-f", "{{json .Mounts}}", id]);
    let mounts = mounts.as_array().unwrap();
    assert!(!mounts.is_empty(), "{service}: no code mounted in dev mode");
    for m in mounts {
        assert_eq!(m["RW"], false, "{service}: {m} is writable");
    }
}

#[test]
fn dev_applies_edits_live_reports_errors_and_leaves_the_stack_as_up_does() {
    let stack = TestStack::new("dev");
    let mut child = stack.spawn(&["dev"]);
    let lines = lines_of(&mut child);
    expect_line(&lines, "watching", Duration::from_secs(900));
    let containers: Vec<String> = APPS.iter().map(|s| stack.container(s)).collect();
    for (id, s) in containers.iter().zip(APPS) {
        assert_hardened_with_read_only_code(id, s);
    }
    assert_eq!(openapi_version(&stack).as_deref(), Some("1"));
    assert_eq!(results_of(&stack, "builds"), 2, "two seed documents are about builds");

    // api-server: the edit answers over HTTP.
    edit_file(&stack.dir, APP_PY, "version=\"1\"", "version=\"dev-2\"");
    expect_line(&lines, "api-server: reloaded in place", Duration::from_secs(60));
    wait_for("the edited API", Duration::from_secs(30), || (openapi_version(&stack)? == "dev-2").then_some(()));

    // search-worker: a search sent after the edit is answered by the new code.
    edit_file(&stack.dir, SEARCH_PY, "MAX_RESULTS = 10", "MAX_RESULTS = 1");
    expect_line(&lines, "search-worker: reloaded in place", Duration::from_secs(60));
    assert_eq!(results_of(&stack, "builds"), 1, "the worker answers with the edited code");

    // A syntax error: file and line, and the previous code keeps serving.
    edit_file(&stack.dir, APP_PY, "version=\"dev-2\"", "version=\"dev-3\"\ndef broken(:");
    let failed = expect_line(&lines, "api-server: reload failed", Duration::from_secs(60));
    assert!(failed.contains(&format!("{APP_PY}:")), "{failed}");
    assert_eq!(openapi_version(&stack).as_deref(), Some("dev-2"), "the previous code serves");
    assert!(stack.http("POST", "/searches", Some(b"{\"query\": \"cache\"}")).unwrap().0 == 202);
    edit_file(&stack.dir, APP_PY, "\ndef broken(:", "");
    expect_line(&lines, "api-server: reloaded in place", Duration::from_secs(60));
    wait_for("the recovered API", Duration::from_secs(30), || (openapi_version(&stack)? == "dev-3").then_some(()));

    // A deleted file is a code change too (nothing imports it: it reloads).
    std::fs::write(stack.dir.join("services/search-worker/search_worker/scratch_note.py"), "NOTE = 1\n").unwrap();
    expect_line(&lines, "search-worker: reloaded in place", Duration::from_secs(60));
    std::fs::remove_file(stack.dir.join("services/search-worker/search_worker/scratch_note.py")).unwrap();
    let removed = expect_line(&lines, "search-worker: reloaded in place", Duration::from_secs(60));
    assert!(removed.contains("(removed)"), "{removed}");

    // No container was replaced by any of it.
    let now: Vec<String> = APPS.iter().map(|s| stack.container(s)).collect();
    assert_eq!(now, containers, "a code edit must not recreate a container");

    // Ctrl-C: the stack is left as `up` leaves it, running the edited images.
    kill("INT", &child.id().to_string());
    let status = child.wait().unwrap();
    assert!(status.success(), "`cargo xtask dev` exited with {status}");
    for s in APPS {
        assert_eq!(stack.health(s), "healthy", "{s} after dev");
        let mounts = docker_json(&["inspect", "-f", "{{json .Mounts}}", &stack.container(s)]);
        assert!(mounts.as_array().is_none_or(|m| m.is_empty()), "{s} still has dev mounts: {mounts}");
    }
    assert_eq!(openapi_version(&stack).as_deref(), Some("dev-3"), "the image has the edits");
    assert_eq!(results_of(&stack, "builds"), 1);
}

/// A service with its own lock (`lock: own`) in the dev loop: its pyproject
/// edited by hand is relocked in its own folder (as `uv run` would), its
/// export follows, and only it is rebuilt and recreated, with the new
/// dependency importable in its container; api-server is not touched.
#[test]
fn dev_follows_a_services_own_lock() {
    let mut stack = TestStack::new("devownlock");
    stack.reserve_port("solo");
    let source = std::env::temp_dir().join(format!("pysvc-devownlock-{}", std::process::id())).join("solo");
    let _ = std::fs::remove_dir_all(&source);
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("requirements.txt"), "fastapi\nuvicorn==0.34.3\n").unwrap();
    std::fs::write(
        source.join("main.py"),
        "from fastapi import FastAPI\n\napp = FastAPI()\n\n\n@app.get(\"/health\")\ndef health() -> dict[str, str]:\n    \
         return {\"status\": \"ok\"}\n",
    )
    .unwrap();
    stack.ok(&["new-service", "--from", source.to_str().unwrap(), "--own-lock"]);
    let mut child = stack.spawn(&["dev", "solo", "api-server"]);
    let lines = lines_of(&mut child);
    expect_line(&lines, "watching", Duration::from_secs(900));
    let api = stack.container("api-server");
    let no_six = std::process::Command::new("docker")
        .args(["exec", &stack.container("solo"), "python", "-c", "import six"])
        .output()
        .unwrap();
    assert!(!no_six.status.success(), "six is not there before");

    let pyproject = stack.dir.join("services/solo/pyproject.toml");
    let text = std::fs::read_to_string(&pyproject)
        .unwrap()
        .replace("\"uvicorn==0.34.3\",\n", "\"uvicorn==0.34.3\",\n    \"six\",\n");
    std::fs::write(&pyproject, text).unwrap();
    expect_line(&lines, "solo: rebuilt and recreated", Duration::from_secs(300));
    let lock = std::fs::read_to_string(stack.dir.join("services/solo/uv.lock")).unwrap();
    assert!(lock.contains("name = \"six\""), "its own lock was relocked");
    let export = std::fs::read_to_string(stack.dir.join("docker/solo.requirements.txt")).unwrap();
    assert!(export.contains("six=="), "{export}");
    docker(&["exec", &stack.container("solo"), "python", "-c", "import six"]);
    assert_eq!(stack.container("api-server"), api, "api-server was not recreated");

    kill("INT", &child.id().to_string());
    let status = child.wait().unwrap();
    assert!(status.success(), "`cargo xtask dev` exited with {status}");
    stack.ok(&["down", "--volumes"]);
    let _ = std::fs::remove_dir_all(source.parent().unwrap());
}
