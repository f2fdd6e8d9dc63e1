//! `cargo xtask gen`: renders every generated file from the manifests and
//! the exports of `uv.lock` (`lockfile::generate`), then writes them, or in
//! check mode fails with a diff. A stale `uv.lock` fails both, with the fix.

use anyhow::Result;
use clap::Args;

use crate::gen::Mode;
use crate::lockfile;
use crate::prepared::Repo;

/// Regenerate the exported requirements, Dockerfiles, .dockerignore files, compose.yaml, .env.example and deploy/k8s.
#[derive(Args, Debug)]
pub struct Gen {
    /// Fail (with a diff) instead of writing when a generated file or uv.lock is stale.
    #[arg(long)]
    pub check: bool,
}

impl Gen {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let mode = if self.check { Mode::Check } else { Mode::Write };
        let changed = lockfile::generate(&repo.sh, &repo.root, mode)?;
        match (mode, changed.is_empty()) {
            (Mode::Check, _) | (Mode::Write, true) => println!("generated files are up to date"),
            (Mode::Write, false) => {
                for file in changed {
                    println!("wrote {file}");
                }
            }
        }
        Ok(())
    }
}
