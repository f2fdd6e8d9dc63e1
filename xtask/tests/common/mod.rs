//! Helpers for the integration tests: they drive the real `cargo xtask`
//! binary against the real engine, and talk to the stack over HTTP and the
//! docker CLI. Nothing here is faked.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One engine, one stack: the tests take turns.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

pub fn xtask(args: &[&str]) -> Output {
    xtask_env(args, &[])
}

pub fn xtask_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    eprintln!("$ cargo xtask {}", args.join(" "));
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .output()
        .expect("xtask runs");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs xtask and fails the test with its output unless it succeeds.
pub fn xtask_ok(args: &[&str]) -> String {
    let out = xtask(args);
    assert!(
        out.status.success(),
        "cargo xtask {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI runs");
    assert!(out.status.success(), "docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn docker_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&docker(args)).expect("docker printed JSON")
}

pub fn container(service: &str) -> String {
    container_of("pysvc", service)
}

pub fn container_of(project: &str, service: &str) -> String {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ])
}

pub fn health(service: &str) -> String {
    let id = container(service);
    docker(&["inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}", &id])
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn wait_health(service: &str, wanted: &str, timeout: Duration) {
    wait_for(&format!("{service} to be {wanted}"), timeout, || (health(service) == wanted).then_some(()));
}

/// Host PID of the main process of a service (the child of tini).
pub fn main_pid(service: &str, program: &str) -> String {
    let top = docker(&["top", &container(service), "-eo", "pid,args"]);
    top.lines()
        .skip(1)
        .find(|l| l.contains(program) && !l.contains("docker-init"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {program} process in {service}: {top}"))
        .to_owned()
}

pub fn kill(signal: &str, pid: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), pid]).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

pub const API: &str = "127.0.0.1:8000";

/// A minimal HTTP/1.1 client: (status, body).
pub fn http(method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<(u16, String)> {
    http_at(API, method, path, body)
}

pub fn http_at(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

pub fn post_search(query: &str) -> String {
    let (status, body) = http("POST", "/searches", Some(format!("{{\"query\": \"{query}\"}}").as_bytes())).unwrap();
    assert_eq!(status, 202, "{body}");
    json(&body)["id"].as_str().unwrap().to_owned()
}

/// Waits until a search is answered and returns its JSON.
pub fn answered(id: &str, timeout: Duration) -> serde_json::Value {
    wait_for(&format!("search {id} to be answered"), timeout, || {
        let (status, body) = http("GET", &format!("/searches/{id}"), None).ok()?;
        (status == 200).then(|| json(&body)).filter(|v| v["status"] == "done")
    })
}

/// A scratch copy of the repository's inputs (no git, no target), with its
/// own `.env` derived from the real one through `env_edits`.
pub fn scratch_copy(name: &str, env_edits: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pysvc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = root();
    for item in ["stack.yaml", "services", "docker", ".env.example"] {
        assert!(Command::new("cp").arg("-r").arg(src.join(item)).arg(&dir).status().unwrap().success());
    }
    let mut env = std::fs::read_to_string(src.join(".env")).expect("base-images wrote .env");
    for (from, to) in env_edits {
        env = env.replace(from, to);
    }
    std::fs::write(dir.join(".env"), env).unwrap();
    dir
}

/// Replaces `from` by `to` in a file under `dir`; the file must contain it.
pub fn edit_file(dir: &std::path::Path, rel: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(dir.join(rel)).unwrap();
    assert!(text.contains(from), "{rel} has no {from:?}");
    std::fs::write(dir.join(rel), text.replace(from, to)).unwrap();
}
