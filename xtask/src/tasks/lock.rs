//! `cargo xtask lock`: pins each service's `requirements.in` into a
//! `requirements.lock` with hashes (`lockfile`).

use anyhow::Result;
use clap::Args;

use crate::prepared::Repo;
use crate::{lockfile, manifest};

/// Pin every service's requirements.in into requirements.lock (with hashes).
#[derive(Args, Debug)]
pub struct Lock {
    /// Upgrade every pin to the newest allowed version.
    #[arg(long)]
    pub upgrade: bool,
    /// Only this service.
    pub service: Option<String>,
}

impl Lock {
    pub fn run(self, repo: &Repo) -> Result<()> {
        // The stack file alone: a service manifest that does not load yet must not stop locking.
        let python = manifest::load_stack_manifest(&repo.root)?.python_version;
        lockfile::lock_services(&repo.sh, &repo.root, &python, self.service.as_deref(), self.upgrade)
    }
}
