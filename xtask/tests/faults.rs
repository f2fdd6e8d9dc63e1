//! Faults in the middle of load: a broker restart, a worker killed with
//! SIGKILL, a PostgreSQL restart. Each test brings up its own `TestStack`
//! (own compose project, free host ports, images and volumes, removed even
//! when the test fails), drives it with `cargo xtask bench-load --fault ...`
//! and asserts on what it reports: no accepted search lost, every one
//! answered, nothing stored for a rejected request. Not timed: speed lives in
//! `cargo xtask bench-load` and BENCHMARKS.md.

mod common;

use common::*;

/// Runs bench-load with `fault` against its own scratch stack and checks
/// the contract: 202 means stored and answered, a rejection stores nothing.
fn survives(fault: &str, name: &str) {
    let _guard = serial();
    let stack = TestStack::new(name);
    stack.up();
    let target = format!("http://{}", stack.api());
    let out = stack.ok(&[
        "bench-load",
        "--target",
        &target,
        "--fault",
        fault,
        "--requests",
        "400",
        "--concurrency",
        "16",
        "--answer-timeout",
        "150",
        "--json",
    ]);
    let report = json(out.lines().last().unwrap_or_default());
    let level = &report["levels"][0];
    eprintln!("{fault}: accepted {}, republished {}", level["accepted"], level["republished"]);
    let count = |k: &str| level[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {report}"));
    let rejected: u64 = level["rejected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(level["fault_injected"], true, "the fault must have happened: {report}");
    assert_eq!(count("sent"), 400, "{report}");
    assert!(count("accepted") > 0, "nothing accepted: {report}");
    assert_eq!(count("accepted") + rejected + count("failed"), 400, "every request gets an answer: {report}");
    assert_eq!(count("lost"), 0, "accepted searches were never answered: {report}");
    assert_eq!(level["stored_but_rejected"], 0, "a rejected request was stored: {report}");
    for status in level["rejected"].as_object().unwrap().keys() {
        assert_eq!(status, "503", "only an unavailable backing service may reject a valid search: {report}");
    }
}

#[test]
fn broker_restart_under_load_loses_no_accepted_search() {
    survives("broker-restart", "fault-broker");
}

#[test]
fn worker_kill_under_load_loses_no_accepted_search() {
    survives("worker-kill", "fault-worker");
}

#[test]
fn postgres_restart_under_load_loses_no_accepted_search() {
    survives("postgres-restart", "fault-postgres");
}
