//! `cargo xtask lock`: `uv lock` with the pinned uv (the uv the images use),
//! the tool pins outside the workspace, then `gen` (each service's exported
//! requirements follow the new lock). After `uv add` or `uv lock` by hand,
//! `cargo xtask gen` alone is enough.

use anyhow::Result;
use clap::Args;

use crate::gen::Mode;
use crate::lockfile;
use crate::prepared::Repo;

/// Lock the uv workspace (uv.lock) with the pinned uv, then regenerate the files that follow it.
#[derive(Args, Debug)]
pub struct Lock {
    /// Upgrade every pin to the newest allowed version.
    #[arg(long)]
    pub upgrade: bool,
    /// Upgrade only this package (repeatable), as `uv lock --upgrade-package`.
    #[arg(long = "upgrade-package", value_name = "PACKAGE")]
    pub upgrade_packages: Vec<String>,
}

impl Lock {
    pub fn run(self, repo: &Repo) -> Result<()> {
        lockfile::lock(&repo.sh, &repo.root, self.upgrade, &self.upgrade_packages)?;
        for file in lockfile::generate(&repo.sh, &repo.root, Mode::Write)? {
            println!("wrote {file}");
        }
        Ok(())
    }
}
