//! `cargo xtask up` and the stack, end to end: real engine, Compose,
//! PostgreSQL and broker. One test per behaviour, each on its own isolated
//! copy of the stack (`common::TestStack`: own compose project, host ports,
//! volumes, `.env` and images); they take turns (see `common::serial`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

const SERVICES: [&str; 4] = ["postgres", "kafka", "api-server", "search-worker"];

fn started_at(stack: &TestStack, service: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", &stack.container(service)])
}

/// How long a failing service may take to show `unhealthy`. Docker counts
/// failed probes as soon as one has passed; Podman counts none during the
/// container's start period (`HEALTH_START_PERIOD`, 60 s), even after it was
/// healthy, so there a failure right after `up` shows only after it.
const UNHEALTHY_WITHIN: Duration = Duration::from_secs(120);

#[test]
fn up_waits_for_health_and_a_second_up_restarts_nothing() {
    let _guard = serial();
    let stack = TestStack::new("up");
    let report = stack.up();
    for s in SERVICES {
        assert!(report["time_to_healthy"][s].as_f64().is_some(), "{s} missing from {report}");
        assert_eq!(stack.health(s), "healthy");
    }
    let before: Vec<String> = SERVICES.iter().map(|s| started_at(&stack, s)).collect();
    stack.up();
    let after: Vec<String> = SERVICES.iter().map(|s| started_at(&stack, s)).collect();
    assert_eq!(before, after, "a repeated `up` must not recreate or restart healthy services");
    let status = stack.ok(&["status"]);
    for s in SERVICES {
        assert!(status.lines().any(|l| l.starts_with(s) && l.contains("healthy")), "{status}");
    }
    let logs = stack.ok(&["logs", "search-worker", "--no-follow", "--tail", "500"]);
    assert!(logs.contains("consuming search-requests"), "{logs}");

    // With a service manifest that no longer loads and no `.env`, the
    // commands that only look or stop still work.
    edit_file(&stack.dir, "services/search-worker/service.yaml", "kind: worker", "kind: nonsense");
    std::fs::remove_file(stack.dir.join(".env")).unwrap();
    let status = stack.ok(&["status"]);
    assert!(status.lines().any(|l| l.starts_with("search-worker") && l.contains("healthy")), "{status}");
    stack.ok(&["logs", "api-server", "--no-follow", "--tail", "5"]);
    stack.ok(&["down"]);
    assert!(stack.container("api-server").is_empty(), "down left api-server");
}

#[test]
fn a_search_flows_through_broker_and_worker_and_survives_down_up() {
    let _guard = serial();
    let stack = TestStack::new("flow");
    stack.up();
    let id = stack.post_search("healthcheck");
    let done = stack.answered(&id, Duration::from_secs(60));
    let results = done["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{done}");
    assert_eq!(results[0]["title"], "Healthchecks that fail");

    // A client's retry with an Idempotency-Key: one search, the same id on
    // every attempt; the key reused for another query is refused.
    let key = "6f1d0c55-3b8e-4b8e-9b55-6a6f1c2e9d01";
    let post = |query: &str| {
        let body = format!("{{\"query\": \"{query}\"}}");
        http_with_headers(&stack.api(), "POST", "/searches", &[("Idempotency-Key", key)], Some(body.as_bytes()))
            .unwrap()
    };
    for attempt in 0..2 {
        let (status, body) = post("kafka");
        assert_eq!(status, 202, "attempt {attempt}: {body}");
        assert_eq!(json(&body)["id"], key, "attempt {attempt}: {body}");
    }
    let retried = stack.answered(key, Duration::from_secs(60));
    assert_eq!(retried["query"], "kafka", "{retried}");
    let (status, body) = post("cache");
    assert_eq!(status, 409, "{body}");
    let (status, body) = post("kafka");
    assert!(status == 202 && json(&body)["status"] == "done", "a retry answers the status it has now: {body}");

    // The status tells the truth: with no worker, a search the broker
    // acknowledged is `queued` (in the broker's log), then `done`.
    docker(&["stop", &stack.container("search-worker")]);
    let waiting = stack.post_search("proxy");
    wait_for("the search to be queued", Duration::from_secs(15), || {
        let (status, body) = stack.http("GET", &format!("/searches/{waiting}"), None).ok()?;
        (status == 200 && json(&body)["status"] == "queued").then_some(())
    });
    docker(&["start", &stack.container("search-worker")]);
    stack.answered(&waiting, Duration::from_secs(60));

    // Persistence: `down` keeps the volume, the next `up` finds the data.
    stack.ok(&["down"]);
    assert!(stack.container("postgres").is_empty());
    stack.up();
    let (status, body) = stack.http("GET", &format!("/searches/{id}"), None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), done, "data written before `down` must survive it");
}

#[test]
fn bad_input_gets_4xx_json_and_nothing_crashes() {
    let _guard = serial();
    let stack = TestStack::new("input");
    stack.up();
    let big = vec![b'x'; 64 * 1024];
    let cases: [(&str, &str, Option<&[u8]>, u16); 6] = [
        ("POST", "/searches", Some(b"{not json"), 422),
        ("POST", "/searches", Some(b"{}"), 422),
        ("POST", "/searches", Some(b"{\"query\": 42}"), 422),
        ("POST", "/searches", Some(&big), 413),
        ("GET", "/searches/not-a-uuid", None, 422),
        ("GET", "/searches/00000000-0000-0000-0000-000000000000", None, 404),
    ];
    for (method, path, body, expected) in cases {
        let (status, text) = stack.http(method, path, body).unwrap();
        assert_eq!(status, expected, "{method} {path}: {text}");
        assert!(json(&text)["error"].is_string(), "{text}");
    }
    assert_eq!(stack.http("GET", "/health", None).unwrap().0, 200);
    assert_eq!(stack.health("api-server"), "healthy");
}

#[test]
fn health_means_something() {
    let _guard = serial();
    let stack = TestStack::new("health");
    stack.up();
    // Database down, then broker down: each time api-server's readiness
    // fails naming the dependency, and compose sees it unhealthy.
    for dependency in ["postgres", "kafka"] {
        docker(&["stop", &stack.container(dependency)]);
        stack.wait_health("api-server", "unhealthy", UNHEALTHY_WITHIN);
        let (status, body) = stack.http("GET", "/ready", None).unwrap();
        assert_eq!(status, 503);
        assert!(json(&body)["problems"][dependency].is_string(), "{body}");
        docker(&["start", &stack.container(dependency)]);
        stack.wait_health(dependency, "healthy", Duration::from_secs(60));
        stack.wait_health("api-server", "healthy", Duration::from_secs(60));
    }

    // Broker frozen: its port still accepts connections, so a port probe
    // would say healthy; the protocol probe must not, and must say so
    // within its own 5 s (the healthcheck's timeout is 8 s).
    let pid = stack.main_pid("kafka", "kafka.Kafka");
    kill("STOP", &pid);
    let started = Instant::now();
    let (ok, out) = probe_in(&stack.container("kafka"), None, &[]);
    let took = started.elapsed();
    assert!(!ok && out.contains("no answer from 127.0.0.1:9092 within 5s"), "{out}");
    assert!(took < Duration::from_secs(8), "a frozen broker's probe took {took:?}");
    stack.wait_health("kafka", "unhealthy", UNHEALTHY_WITHIN);
    kill("CONT", &pid);
    stack.wait_health("kafka", "healthy", Duration::from_secs(60));
    stack.wait_health("api-server", "healthy", Duration::from_secs(60));
}

/// Runs the broker probe in `container` (`docker exec`, with `args`, and
/// its own bound in seconds when `bound` is given); whether it passed, and
/// what it printed.
fn probe_in(container: &str, bound: Option<u32>, args: &[&str]) -> (bool, String) {
    let mut exec = std::process::Command::new("docker");
    exec.arg("exec");
    if let Some(seconds) = bound {
        exec.args(["-e", &format!("KAFKA_HEALTH_TIMEOUT={seconds}")]);
    }
    let out = exec.args([container, "/opt/kafka/bin/kafka-health"]).args(args).output().expect("docker runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_broker_probe_fails_unless_the_broker_answers_for_itself() {
    let _guard = serial();
    let stack = TestStack::new("probe");
    stack.up();
    let kafka = stack.container("kafka");
    // What is asked here is whether the probe accepts a healthy broker, not
    // how fast: its default bound (5 s) includes a JVM start inside `exec`,
    // and on a loaded machine (a slow Podman run, the broker still loading
    // its partitions just after turning healthy) three tries in a row ran
    // out of it. So these get 30 s each; the frozen broker's test above
    // keeps the default bound.
    let mut probe = probe_in(&kafka, Some(30), &[]);
    for _ in 1..3 {
        if probe.0 {
            break;
        }
        probe = probe_in(&kafka, Some(30), &[]);
    }
    let (ok, out) = probe;
    assert!(ok && out.contains("broker healthy") && out.contains("isFenced: false"), "{out}");
    // Nothing listens there: the tool fails, and so does the probe.
    let (ok, out) = probe_in(&kafka, None, &["127.0.0.1:9"]);
    assert!(!ok && out.starts_with("broker unhealthy"), "{out}");
    // The broker answers at the bootstrap address, but the address it
    // advertises (kafka:9092) leads nowhere from this container: the tool
    // prints `-> ERROR` for the broker it found and still exits 0.
    let network = docker(&["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", &kafka]);
    let ip = docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &kafka]);
    let (kafka_image, target) = (stack.env_value("KAFKA_IMAGE"), format!("{ip}:9092"));
    let out = docker_run(&[
        "--network",
        &network,
        "--add-host",
        "kafka:127.0.0.1",
        "--entrypoint",
        "/opt/kafka/bin/kafka-health",
        &kafka_image,
        &target,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("broker unhealthy") && text.contains("ERROR"), "{text}");
}

#[test]
fn broker_restart_then_worker_restart_answers_the_next_search() {
    let _guard = serial();
    let stack = TestStack::new("rejoin");
    stack.up();
    let id = stack.post_search("kafka");
    stack.answered(&id, Duration::from_secs(30));
    // As a user would: the broker restarted, and within 2 s the worker
    // recreated while the broker is still starting (its member cannot
    // leave the group; the broker drops it after the session timeout).
    docker(&["restart", "-t", "5", &stack.container("kafka")]);
    let recreated = std::process::Command::new("docker")
        .args(["compose", "up", "-d", "--force-recreate", "--no-deps", "search-worker"])
        .current_dir(&stack.dir)
        .status()
        .expect("docker compose runs");
    assert!(recreated.success());
    stack.wait_health("kafka", "healthy", Duration::from_secs(60));
    let posted = Instant::now();
    let id = stack.post_search("cache");
    // On Podman the api-server's producer has needed far longer to reach
    // the restarted broker (its delivery timed out and `/ready` said 503 for
    // over 20 s once under the suite's load; 5.8 s by hand; the cause is not
    // established). The republish loop covers it, so the search is still
    // answered: Podman gets 60 s, Docker 10 s.
    let bound = if engine_is_podman() { 60 } else { 10 };
    stack.answered(&id, Duration::from_secs(bound));
    eprintln!("answered {:.1} s after the broker was healthy again", posted.elapsed().as_secs_f64());
    stack.wait_health("search-worker", "healthy", Duration::from_secs(60));
}

#[test]
fn broker_restart_loses_no_accepted_search_and_answers_each_once() {
    let _guard = serial();
    let stack = TestStack::new("broker");
    stack.up();
    let queries = ["kafka", "cache", "shutdown", "proxy"];
    let mut ids: Vec<(String, &str)> = Vec::new();
    for q in queries {
        ids.push((stack.post_search(q), q));
    }
    // Stopped with those in flight: the broker's log is on a volume, so it
    // keeps them; the api-server's republish loop is the safety net.
    docker(&["stop", "-t", "5", &stack.container("kafka")]);
    // Accepted while the broker is down (202, not an error).
    for q in &queries[..2] {
        ids.push((stack.post_search(q), q));
    }
    docker(&["start", &stack.container("kafka")]);
    for q in &queries[2..] {
        ids.push((stack.post_search(q), q));
    }
    let mut by_query: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    for (id, q) in &ids {
        let done = stack.answered(id, Duration::from_secs(120));
        let results = done["results"].clone();
        let first = by_query.entry(q).or_insert_with(|| results.clone());
        assert_eq!(*first, results, "two answers for {q:?} differ");
    }
    // Each search was answered once: exactly one row per (search, document).
    let dupes = stack.psql(
        "SELECT count(*) FROM (SELECT search_id, position FROM search_results GROUP BY 1, 2 HAVING count(*) > 1) d",
    );
    assert_eq!(dupes, "0");
    stack.wait_health("kafka", "healthy", Duration::from_secs(60));
}

#[test]
fn killed_worker_restarts_and_resumes() {
    let _guard = serial();
    let stack = TestStack::new("kill");
    stack.up();
    let restarts =
        |s: &str| docker(&["inspect", "-f", "{{.RestartCount}}", &stack.container(s)]).parse::<u32>().unwrap();
    let before = restarts("search-worker");
    kill("KILL", &stack.main_pid("search-worker", "search_worker.main"));
    wait_for("the worker to be restarted", Duration::from_secs(60), || {
        (restarts("search-worker") > before).then_some(())
    });
    stack.wait_health("search-worker", "healthy", Duration::from_secs(60));
    let id = stack.post_search("graceful shutdown");
    assert!(!stack.answered(&id, Duration::from_secs(60))["results"].as_array().unwrap().is_empty());
}

#[test]
fn docker_stop_is_clean_and_within_the_grace_period() {
    let _guard = serial();
    let stack = TestStack::new("stop");
    stack.up();
    for (service, line) in
        [("search-worker", "search-worker stopped cleanly"), ("api-server", "api-server stopped cleanly")]
    {
        let id = stack.container(service);
        let started = Instant::now();
        docker(&["stop", "-t", "30", &id]);
        let took = started.elapsed();
        let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &id]);
        let logs = std::process::Command::new("docker").args(["logs", "--tail", "20", &id]).output().unwrap();
        let logs = String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr);
        assert!(logs.contains(line), "{service} did not log a clean shutdown:\n{logs}");
        // uvicorn re-raises SIGTERM after its graceful shutdown (143); the
        // worker exits 0. Either way: no SIGKILL (137) and the log line above.
        assert!(code == "0" || code == "143", "{service} exited with {code}");
        assert!(took < Duration::from_secs(30), "{service} needed the SIGKILL ({took:?})");
        docker(&["start", &id]);
    }
    stack.up();
}

/// An unhealthy dependency makes `up` fail with the why: probe outputs and
/// the log tail, and the containers are left for inspection.
#[test]
fn up_explains_an_unhealthy_service() {
    let _guard = serial();
    let stack = TestStack::new("unhealthy");
    stack.up();
    let pid = stack.main_pid("postgres", "postgres -D");
    kill("STOP", &pid);
    stack.wait_health("postgres", "unhealthy", UNHEALTHY_WITHIN);
    let out = stack.run(&["up", "--timeout", "60"]);
    kill("CONT", &pid);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "up must fail while postgres is unhealthy");
    assert!(err.contains("postgres is unhealthy"), "{err}");
    assert!(err.contains("last health probes:"), "{err}");
    assert!(err.contains("last log lines:"), "{err}");
    assert!(err.contains("left running for inspection"), "{err}");
    assert!(!stack.container("postgres").is_empty());
    stack.wait_health("postgres", "healthy", Duration::from_secs(60));
    stack.up();
}

/// Ctrl-C while `up` waits: exit 130, the stack stopped, nothing removed.
#[test]
fn ctrl_c_during_up_stops_cleanly() {
    let _guard = serial();
    let stack = TestStack::new("ctrlc");
    stack.ok(&["down"]);
    let child = stack.spawn(&["up"]);
    // Wait until compose has created the first containers, then interrupt.
    wait_for("compose to create postgres", Duration::from_secs(60), || {
        (!stack.container("postgres").is_empty()).then_some(())
    });
    kill("INT", &child.id().to_string());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted: stopping the stack"), "{err}");
    for s in SERVICES {
        let id = stack.container(s);
        if !id.is_empty() {
            let state = docker(&["inspect", "-f", "{{.State.Status}}", &id]);
            assert_ne!(state, "running", "{s} still runs after Ctrl-C");
        }
    }
    stack.up();
}
