//! How fast the worker group answers again after the changes a user makes
//! to it: one worker restarted, one stopped while a search waits and
//! started, every worker of three stopped and started, and scaling 1 -> 3
//! -> 1. Each is timed from the start of the command that makes the
//! change to the next search answered, as a user would see it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Stack, QUERIES};
use crate::bench::http::{post_search, Conn};
use crate::bench::stats::median;

/// Medians over the runs, seconds.
#[derive(Debug, Serialize)]
pub struct Group {
    pub runs: usize,
    pub restart: f64,
    pub stop_start: f64,
    pub all_three_stop_start: f64,
    pub scale_up: f64,
    pub scale_down: f64,
}

/// `runs` rounds of every change; the stack ends with one worker.
pub async fn measure(stack: &Stack, runs: usize, partitions: usize) -> Result<Group> {
    let mut rounds: Vec<[f64; 5]> = Vec::new();
    for round in 0..runs {
        let r = one_round(stack, partitions).await.with_context(|| format!("worker group, round {}", round + 1))?;
        eprintln!(
            "group: restart {:.2}s, stop/start {:.2}s, 3 stopped/started {:.2}s, scale 1->3 {:.2}s, 3->1 {:.2}s",
            r[0], r[1], r[2], r[3], r[4]
        );
        rounds.push(r);
    }
    let m = |i: usize| median(&rounds.iter().map(|r| r[i]).collect::<Vec<_>>());
    Ok(Group {
        runs: rounds.len(),
        restart: m(0),
        stop_start: m(1),
        all_three_stop_start: m(2),
        scale_up: m(3),
        scale_down: m(4),
    })
}

async fn one_round(stack: &Stack, partitions: usize) -> Result<[f64; 5]> {
    stack.scale_workers(1)?;
    stack.wait_for_assignment(1, partitions).await?;
    let started = Instant::now();
    stack.compose(&["restart", "search-worker"])?;
    let restart = answered_after(stack, started).await?;
    stack.wait_for_assignment(1, partitions).await?;
    let stop_start = stopped_then_started(stack).await?;
    // Scaling is timed to the next answer; the group is then left to
    // settle (untimed) so that the next change starts from a quiet group.
    let started = Instant::now();
    stack.scale_workers(3)?;
    let scale_up = answered_after(stack, started).await?;
    stack.wait_for_assignment(3, partitions).await?;
    let all_three = stopped_then_started(stack).await?;
    stack.wait_for_assignment(3, partitions).await?;
    let started = Instant::now();
    stack.scale_workers(1)?;
    let scale_down = answered_after(stack, started).await?;
    stack.wait_for_assignment(1, partitions).await?;
    Ok([restart, stop_start, all_three, scale_up, scale_down])
}

/// Every worker stopped (`docker stop`: each leaves the group), a search
/// posted, the same containers started: seconds from the start to the
/// search answered.
async fn stopped_then_started(stack: &Stack) -> Result<f64> {
    let ids = stack.compose(&["ps", "-q", "search-worker"])?;
    let ids: Vec<&str> = ids.lines().collect();
    anyhow::ensure!(!ids.is_empty(), "no search-worker container is running");
    stack.compose(&["stop", "search-worker"])?;
    let id = post(&stack.addr).await?;
    let started = Instant::now();
    let out =
        std::process::Command::new("docker").arg("start").args(&ids).output().context("cannot run docker start")?;
    anyhow::ensure!(out.status.success(), "docker start failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    wait_answered(&stack.addr, &id).await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Posts a search and returns the seconds from `started` until it is answered.
async fn answered_after(stack: &Stack, started: Instant) -> Result<f64> {
    let id = post(&stack.addr).await?;
    wait_answered(&stack.addr, &id).await?;
    Ok(started.elapsed().as_secs_f64())
}

async fn post(addr: &str) -> Result<String> {
    post_search(addr, QUERIES[0]).await.map_err(anyhow::Error::msg)
}

/// Polls the search every 50 ms until it is done; bounded by 60 s.
async fn wait_answered(addr: &str, id: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let path = format!("/searches/{id}");
    while Instant::now() < deadline {
        if let Ok((200, body)) = Conn::new(addr).request("GET", &path, b"").await {
            if serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v["status"] == "done") {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("search {id} was not answered within 60 s; see `docker compose logs search-worker`")
}
