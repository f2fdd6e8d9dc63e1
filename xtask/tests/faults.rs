//! Faults in the middle of load: a broker restart, a worker killed with
//! SIGKILL, a PostgreSQL restart. Each test brings up its own scratch stack
//! (compose project `loadtest-*`, host ports 23000-23099), drives it with
//! `cargo xtask bench-load --fault ...` and asserts on what it reports: no
//! accepted search lost, every one answered, nothing stored for a rejected
//! request. Not timed: speed lives in `cargo xtask bench-load` and
//! BENCHMARKS.md.

mod common;

use std::path::PathBuf;

use common::*;

/// A scratch stack that is taken down (volumes included) and deleted when
/// dropped, also when the test fails.
struct ScratchStack {
    dir: PathBuf,
    api: String,
}

impl ScratchStack {
    fn up(name: &str, api_port: u16, postgres_port: u16) -> ScratchStack {
        let project = format!("loadtest-{name}");
        let dir = scratch_copy(&project, &[]);
        let env = std::fs::read_to_string(dir.join(".env")).unwrap();
        let env: Vec<String> = env
            .lines()
            .map(|l| match l.split_once('=').map(|(k, _)| k) {
                Some("IMAGE_PREFIX") => "IMAGE_PREFIX=loadtest".to_owned(),
                Some("POSTGRES_HOST_PORT") => format!("POSTGRES_HOST_PORT={postgres_port}"),
                Some("API_SERVER_HOST_PORT") => format!("API_SERVER_HOST_PORT={api_port}"),
                _ => l.to_owned(),
            })
            .collect();
        std::fs::write(dir.join(".env"), env.join("\n") + "\n").unwrap();
        edit_file(&dir, "stack.yaml", "project: pysvc", &format!("project: {project}"));
        let stack = ScratchStack { dir, api: format!("http://127.0.0.1:{api_port}") };
        stack.ok(&["gen"]);
        stack.ok(&["down", "--volumes"]);
        stack.ok(&["up"]);
        stack
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = xtask_env(args, &[("PYSVC_ROOT", self.dir.to_str().unwrap())]);
        assert!(
            out.status.success(),
            "cargo xtask {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for ScratchStack {
    fn drop(&mut self) {
        let _ = xtask_env(&["down", "--volumes"], &[("PYSVC_ROOT", self.dir.to_str().unwrap())]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs bench-load with `fault` against its own scratch stack and checks
/// the contract: 202 means stored and answered, a rejection stores nothing.
fn survives(fault: &str, name: &str, api_port: u16, postgres_port: u16) {
    let _guard = serial();
    let stack = ScratchStack::up(name, api_port, postgres_port);
    let out = stack.ok(&[
        "bench-load",
        "--target",
        &stack.api,
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
    survives("broker-restart", "broker", 23001, 23002);
}

#[test]
fn worker_kill_under_load_loses_no_accepted_search() {
    survives("worker-kill", "worker", 23011, 23012);
}

#[test]
fn postgres_restart_under_load_loses_no_accepted_search() {
    survives("postgres-restart", "postgres", 23021, 23022);
}
