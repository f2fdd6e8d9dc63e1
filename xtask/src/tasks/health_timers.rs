//! `cargo xtask health-timers --project P` (hidden): the process `up` and
//! `dev` start in the background on an engine that runs no healthchecks
//! itself (Podman without systemd). See `stack::timers`.

use anyhow::Result;
use clap::Args;

use crate::prepared::Repo;
use crate::stack;

/// Run a compose project's healthchecks until it has no container left.
#[derive(Args, Debug)]
pub struct HealthTimers {
    /// The compose project whose containers to probe.
    #[arg(long)]
    project: String,
}

impl HealthTimers {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let engine = repo.connect()?;
        engine.rt.block_on(stack::timers::run(&self.project))
    }
}
