//! `cargo xtask cluster up|down|status`: a single-node Kubernetes on this
//! machine (`cluster`), for trying the kustomize tree on a real node.

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::cluster::{self, Layout};
use crate::prepared::Repo;

/// A local single-node Kubernetes built from source: up, down, status.
#[derive(Args, Debug)]
pub struct Cluster {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Build the node's binaries once (cached), start every component, wait until the node is Ready, and make
    /// the `pysvc-local` context current in your kubeconfig.
    Up,
    /// Stop and remove the node: its processes, mounts, bridge, iptables chains, state and context.
    Down,
    /// Which components run, whether the API answers and the node is Ready.
    Status,
}

impl Cluster {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let layout = Layout::system();
        match self.action {
            Action::Up => cluster::up(&repo.sh, &repo.root, &layout),
            Action::Down => cluster::down(&repo.sh, &layout),
            Action::Status => cluster::status(&repo.sh, &layout),
        }
    }
}
