//! `cargo xtask down`: stops and removes the stack; works with a broken
//! manifest and without `.env` (compose alone decides then).

use anyhow::{Context, Result};
use clap::Args;
use xshell::cmd;

use crate::manifest;
use crate::prepared::Repo;
use crate::stack;

/// Stop and remove the stack's containers (data volumes are kept unless --volumes).
#[derive(Args, Debug)]
pub struct Down {
    /// Also remove the data volumes (the database is lost).
    #[arg(long)]
    pub volumes: bool,
}

impl Down {
    pub fn run(self, repo: &Repo) -> Result<()> {
        // `down` must work even with a broken manifest: then compose alone decides.
        if let Ok(m) = manifest::load_stack_manifest(&repo.root) {
            if let Ok(engine) = repo.connect() {
                engine.rt.block_on(stack::refuse_another_checkout(&m.project, &repo.root))?;
            }
        }
        let sh = &repo.compose_shell_without_secrets()?;
        let volumes = self.volumes.then_some("--volumes");
        cmd!(sh, "docker compose down --remove-orphans {volumes...}").run().context("`docker compose down` failed")?;
        if !self.volumes {
            println!("stack removed; data volumes kept (`cargo xtask down --volumes` removes them)");
        }
        Ok(())
    }
}
