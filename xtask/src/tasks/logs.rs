//! `cargo xtask logs`: the services' logs through Compose; works before
//! `.env` exists and with a broken manifest.

use anyhow::{Context, Result};
use clap::Args;
use xshell::cmd;

use crate::prepared::Repo;

/// Show (and by default follow) the logs of one service or of all.
#[derive(Args, Debug)]
pub struct Logs {
    /// Only this service (default: all).
    pub service: Option<String>,
    /// Print what is there and exit instead of following.
    #[arg(long)]
    pub no_follow: bool,
    /// Lines of history per service.
    #[arg(long, default_value_t = 100)]
    pub tail: u32,
}

impl Logs {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let sh = &repo.compose_shell_without_secrets()?;
        let follow = (!self.no_follow).then_some("--follow");
        let tail = self.tail.to_string();
        let service = self.service;
        cmd!(sh, "docker compose logs --tail {tail} {follow...} {service...}")
            .run()
            .context("`docker compose logs` failed")?;
        Ok(())
    }
}
