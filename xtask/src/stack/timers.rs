//! Health timers for engines that run no healthchecks themselves (Podman
//! without systemd): a detached `cargo xtask health-timers --project P`
//! process that keeps running the project's healthchecks after `up` or
//! `dev` has returned, as Podman's systemd timers would. One per compose
//! project (an exclusive lock on a file in the temp folder); it ends by
//! itself once the project has had no container for `IDLE_EXIT`
//! (`cargo xtask down`), or when the engine is gone.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::Prober;

/// How long the project may have no container before the timers end.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// How long a new timer process waits for the lock an ending one holds.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Where a project's timer keeps its lock (holding its pid) and its log.
fn paths(project: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join("pysvc-health-timers");
    (dir.join(format!("{project}.lock")), dir.join(format!("{project}.log")))
}

/// Starts the project's timer process unless one runs. Returns at once.
pub fn ensure(project: &str) -> Result<()> {
    if running(project).is_some() {
        return Ok(());
    }
    let (lock, log) = paths(project);
    std::fs::create_dir_all(lock.parent().expect("a folder")).context("cannot create the health timers' folder")?;
    let log = File::create(&log).with_context(|| format!("cannot write {}", log.display()))?;
    let exe = std::env::current_exe().context("cannot find the xtask binary")?;
    // Its own process group: a Ctrl-C at the terminal that ran `up` does not
    // end it; no inherited pipes, so whoever waits on `up`'s output is not
    // kept waiting by it.
    std::os::unix::process::CommandExt::process_group(
        std::process::Command::new(exe)
            .args(["health-timers", "--project", project])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
        0,
    )
    .spawn()
    .context("cannot start the health timers")?;
    Ok(())
}

/// The pid of the project's running timer process, if one runs.
pub fn running(project: &str) -> Option<u32> {
    let (lock, _) = paths(project);
    let file = File::open(&lock).ok()?;
    match file.try_lock_shared() {
        // Nobody holds it exclusively: no timer runs.
        Ok(()) => None,
        Err(_) => std::fs::read_to_string(&lock).ok()?.trim().parse().ok(),
    }
}

/// The timer process: probes the project's containers as they come due
/// until the project has had none for `IDLE_EXIT`.
pub async fn run(project: &str) -> Result<()> {
    let Some(_lock) = take_lock(project)? else {
        eprintln!("health timers of {project} already run");
        return Ok(());
    };
    eprintln!("health timers of {project}: pid {}", std::process::id());
    let mut prober = Prober::always();
    let mut empty_since: Option<Instant> = None;
    loop {
        match prober.tick(project).await {
            0 => {
                if empty_since.get_or_insert_with(Instant::now).elapsed() >= IDLE_EXIT {
                    // Nothing is left to look at: the files go too.
                    let (lock, log) = paths(project);
                    let _ = std::fs::remove_file(log);
                    let _ = std::fs::remove_file(lock);
                    return Ok(());
                }
            }
            _ => empty_since = None,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The exclusive lock, with this process's pid in it; `None` when another
/// timer keeps it for longer than `LOCK_WAIT`.
fn take_lock(project: &str) -> Result<Option<File>> {
    let (path, _) = paths(project);
    std::fs::create_dir_all(path.parent().expect("a folder"))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let started = Instant::now();
    while file.try_lock().is_err() {
        if started.elapsed() >= LOCK_WAIT {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_names_the_running_timer_and_admits_one() {
        let project = format!("pysvc-unit-timers-{}", std::process::id());
        assert_eq!(running(&project), None);
        let lock = take_lock(&project).unwrap().expect("a free lock is taken");
        assert_eq!(running(&project), Some(std::process::id()));
        drop(lock);
        assert_eq!(running(&project), None);
        let (lock_path, _) = paths(&project);
        let _ = std::fs::remove_file(lock_path);
    }
}
