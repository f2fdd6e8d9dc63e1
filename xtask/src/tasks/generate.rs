//! `cargo xtask gen`: renders every generated file from the manifests
//! (`gen::render_all`), then writes them, or in check mode fails with a diff.

use anyhow::Result;
use clap::Args;

use crate::gen::{self, k8s, Mode};
use crate::prepared::Repo;

/// Regenerate the Dockerfiles, .dockerignore files, compose.yaml, .env.example and deploy/k8s.
#[derive(Args, Debug)]
pub struct Gen {
    /// Fail (with a diff) instead of writing when a generated file is stale.
    #[arg(long)]
    pub check: bool,
}

impl Gen {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let stack = repo.stack()?;
        let mode = if self.check { Mode::Check } else { Mode::Write };
        let changed = gen::ensure_files(&repo.root, &gen::render_all(&stack), mode)?;
        if mode == Mode::Write {
            k8s::ensure_secret_env(&repo.root)?;
        }
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
