//! The tests never touch the developer's own stack: this one brings it up in
//! the real checkout as a user would (`cargo xtask up`, project `pysvc`),
//! writes data, runs an isolated stack through up, use, down and up again,
//! tries a second checkout of the same project, and then checks that the
//! same containers still run, healthy, with the data, images and `.env`
//! unchanged.
//!
//! Two test runs at once take turns on the developer's stack through a lock
//! file under `target/` (the second waits); every other stack of a test run
//! has its own project name, so concurrent runs do not meet.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

const SERVICES: [&str; 4] = ["postgres", "kafka", "api-server", "search-worker"];

/// The developer's project name, from the checkout's stack.yaml.
fn dev_project() -> String {
    let text = std::fs::read_to_string(root().join("stack.yaml")).unwrap();
    text.lines().find_map(|l| l.strip_prefix("project:")).unwrap().trim().to_owned()
}

/// Puts the developer's stack back as this test found it: stopped (and
/// without a data volume) if it was, left running otherwise.
struct Restore {
    was_running: bool,
    volume_existed: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if !self.was_running {
            let args: &[&str] = if self.volume_existed { &["down"] } else { &["down", "--volumes"] };
            let _ = xtask(args);
        }
    }
}

/// id, start time and health of each service container of `project`.
fn snapshot(project: &str) -> BTreeMap<&'static str, String> {
    SERVICES
        .iter()
        .map(|s| {
            let id = container_of(project, s);
            assert!(!id.is_empty(), "{project} has no {s} container");
            (*s, docker(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}} {{.State.Health.Status}}", &id]))
        })
        .collect()
}

fn env_value(env: &str, key: &str, default: &str) -> String {
    env.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or(default).trim().to_owned()
}

#[test]
fn a_test_run_leaves_the_developers_stack_and_data_alone() {
    let _lock = FileLock::acquire(&root().join("target/pysvc-dev-stack.lock"));
    let _guard = serial();
    let project = dev_project();
    assert!(!project.starts_with(TEST_PROJECT_PREFIX));
    let volume = format!("{project}_postgres-data");
    let api_running = {
        let id = container_of(&project, "api-server");
        !id.is_empty() && docker(&["inspect", "-f", "{{.State.Running}}", &id]) == "true"
    };
    let volume_existed =
        std::process::Command::new("docker").args(["volume", "inspect", &volume]).output().unwrap().status.success();
    let _restore = Restore { was_running: api_running, volume_existed };

    // The developer's stack, as a user brings it up, with data in it.
    xtask_ok(&["up"]);
    let env_before = std::fs::read(root().join(".env")).unwrap();
    let api = format!("127.0.0.1:{}", env_value(&String::from_utf8_lossy(&env_before), "API_SERVER_HOST_PORT", "8000"));
    let id = post_search_at(&api, "healthcheck");
    let done = answered_at(&api, &id, Duration::from_secs(60));
    let before = snapshot(&project);
    for (service, state) in &before {
        assert!(state.ends_with(" healthy"), "{service}: {state}");
    }
    let volume_created = docker(&["volume", "inspect", "-f", "{{.CreatedAt}}", &volume]);
    let image_ids = || -> Vec<String> {
        ["api-server", "search-worker"]
            .iter()
            .map(|s| docker(&["image", "inspect", "-f", "{{.Id}}", &format!("{project}/{s}:latest")]))
            .collect()
    };
    let images_before = image_ids();

    // An isolated stack through what the stack tests do: up, a search,
    // down (keeping its volume), up again; then it is dropped (removed).
    {
        let stack = TestStack::new("iso");
        assert_ne!(stack.api(), api);
        stack.up();
        let other = stack.post_search("cache");
        stack.answered(&other, Duration::from_secs(60));
        stack.ok(&["down"]);
        stack.up();
        assert_eq!(stack.health("api-server"), "healthy");
    }

    // A second checkout of the same project refuses at once, naming this
    // one, before it writes anything (not even its own .env).
    let twin = scratch_copy("second-checkout", &[]);
    std::fs::remove_file(twin.join(".env")).unwrap();
    let twin_run = |args: &[&str]| xtask_env(args, &[("PYSVC_ROOT", twin.to_str().unwrap())]);
    expect_ok("gen in the second checkout", twin_run(&["gen"]));
    let out = twin_run(&["up"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let here = root().canonicalize().unwrap();
    assert!(!out.status.success(), "a second checkout's up must refuse");
    assert!(err.contains(&format!("started from {}", here.display())), "{err}");
    assert!(err.contains("cargo xtask down") && err.contains("project:"), "the way out is named: {err}");
    assert!(!twin.join(".env").exists(), "the refusal comes before .env is written");
    let down = twin_run(&["down"]);
    assert!(!down.status.success(), "a second checkout's down must not stop this stack");
    std::fs::remove_dir_all(&twin).ok();

    // The developer's stack: same containers, never restarted, healthy, the
    // data and .env as they were.
    assert_eq!(snapshot(&project), before, "the developer's containers were replaced or restarted");
    let (status, body) = http_at(&api, "GET", &format!("/searches/{id}"), None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), done, "the developer's data changed");
    assert_eq!(docker(&["volume", "inspect", "-f", "{{.CreatedAt}}", &volume]), volume_created);
    assert_eq!(std::fs::read(root().join(".env")).unwrap(), env_before, "the developer's .env changed");
    assert_eq!(image_ids(), images_before, "the developer's images were replaced");
}
