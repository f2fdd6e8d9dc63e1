//! `cargo xtask setup`: checks, and with consent installs and starts, the
//! engine, Compose v2 and the tools the tests use (`provision`).

use anyhow::Result;
use clap::Args;

use crate::prepared::Repo;
use crate::provision::{Choice, Provision};

/// Check the engine, BuildKit, Compose v2 and the tools the tests use; install and start what is missing (with --yes).
#[derive(Args, Debug)]
pub struct Setup {
    /// Install and start what is missing without asking (Debian/Ubuntu, as root).
    #[arg(long, short)]
    pub yes: bool,
    /// Also start a local registry on 127.0.0.1:5000 (Debian's docker-registry), to try `build-images --push 127.0.0.1:5000`.
    #[arg(long)]
    pub registry: bool,
    /// The engine to install and start (stopping another one running here): docker (Engine 26, containerd image
    /// store; the default on a machine without an engine), docker-overlay2, docker-20.10 or podman.
    #[arg(long, value_enum)]
    pub engine: Option<Choice>,
}

impl Setup {
    pub fn run(self, repo: &Repo) -> Result<()> {
        Provision { yes: self.yes, registry: self.registry, engine: self.engine }.run(&repo.sh, &repo.root)
    }
}
