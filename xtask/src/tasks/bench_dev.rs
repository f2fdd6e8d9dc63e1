//! `cargo xtask bench-dev`: placeholder.

use anyhow::Result;
use clap::Args;

use crate::prepared::Repo;

/// Measure the dev loop.
#[derive(Args, Debug)]
pub struct BenchDev {}

impl BenchDev {
    pub fn run(self, _repo: &Repo) -> Result<()> {
        Ok(())
    }
}
