//! The node's processes: started detached (`setsid`), each with a pid file
//! and a log; found again by pid file and command line (a reused pid is not
//! ours); stopped with SIGTERM, then SIGKILL. And the small probes the
//! phases wait on: a TCP port, a plain HTTP GET.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::Layout;

/// The pid of `name` when its pid file names a live process running that program.
pub fn running(layout: &Layout, name: &str) -> Option<u32> {
    let pid = pid_file(layout, name)?;
    (alive(pid) && program_of(pid).is_some_and(|p| p == name)).then_some(pid)
}

/// The pid `name`'s pid file holds, alive or not.
pub fn pid_file(layout: &Layout, name: &str) -> Option<u32> {
    std::fs::read_to_string(layout.pids().join(format!("{name}.pid"))).ok()?.trim().parse().ok()
}

/// A process that exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some(s) if s != "Z" && s != "X")
}

/// The file name of the program a process runs (the link it was started
/// through), `setsid`'s argument while it has not yet become it.
fn program_of(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let base =
        |arg: &[u8]| Path::new(&*String::from_utf8_lossy(arg)).file_name().map(|n| n.to_string_lossy().into_owned());
    let mut args = cmdline.split(|b| *b == 0);
    match base(args.next()?) {
        Some(s) if s == "setsid" => args.next().and_then(base),
        other => other,
    }
}

/// The full command line of a process, arguments joined by spaces.
pub fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// Starts `bin/<name>` detached, logging to its log (truncated), with its pid file; returns the pid.
pub fn spawn(layout: &Layout, bin: &Path, name: &str, args: &[String], env: &[(&str, String)]) -> Result<u32> {
    std::fs::create_dir_all(&layout.logs)?;
    std::fs::create_dir_all(layout.pids())?;
    let log = layout.log(name);
    let program = bin.join(name);
    eprintln!("  $ {} {} > {} 2>&1 &", program.display(), args.join(" "), log.display());
    let out = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut command = std::process::Command::new("setsid");
    command.arg(&program).args(args).stdin(std::process::Stdio::null()).stdout(out.try_clone()?).stderr(out);
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().with_context(|| format!("cannot start {}", program.display()))?;
    let pid = child.id();
    std::fs::write(layout.pids().join(format!("{name}.pid")), pid.to_string())?;
    Ok(pid)
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL; true when the process was running.
pub fn stop_pid(pid: u32, grace: Duration) -> bool {
    if !alive(pid) {
        return false;
    }
    signal(pid, "TERM");
    let started = Instant::now();
    while alive(pid) && started.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive(pid) {
        signal(pid, "KILL");
        let started = Instant::now();
        while alive(pid) && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    true
}

pub fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Stops the component `name` if it runs; removes its pid file.
pub fn stop(layout: &Layout, name: &str, grace: Duration) -> bool {
    let was = running(layout, name).is_some_and(|pid| stop_pid(pid, grace));
    let _ = std::fs::remove_file(layout.pids().join(format!("{name}.pid")));
    was
}

/// Every process whose parent is `pid`, recursively (children first in the list's tail).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for child in all_pids().into_iter().filter(|c| parent_of(*c) == Some(parent)) {
            all.push(child);
            frontier.push(child);
        }
    }
    all
}

pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Whether something accepts TCP connections on `addr`.
pub fn listening(addr: &str) -> bool {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

/// A plain HTTP/1.0 GET: the status code and body, or None when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let a = addr.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&a, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((code, body))
}

/// Polls `ready` every 250 ms until it holds or `timeout` passes; the error
/// names what was awaited and the log to read.
pub fn wait_until(what: &str, timeout: Duration, log: &Path, mut ready: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("{what}: not ready after {} s; read {}", timeout.as_secs(), log.display())
}

/// The last `n` lines of a log, for an error message.
pub fn tail(log: &PathBuf, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
