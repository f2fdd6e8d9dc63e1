//! `cargo xtask cluster up|down|status`: a single-node Kubernetes on this
//! machine (`cluster`), for trying the kustomize tree on a real node.

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::bench::stats::median;
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
    /// Time `up` with cached binaries from nothing (`down` before each run), per phase; leaves the node up.
    Bench {
        /// How many down/up rounds.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

impl Cluster {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let layout = Layout::system();
        match self.action {
            Action::Up => cluster::up(&repo.sh, &repo.root, &layout).map(drop),
            Action::Down => cluster::down(&repo.sh, &layout),
            Action::Status => cluster::status(&repo.sh, &layout),
            Action::Bench { runs } => bench(repo, &layout, runs),
        }
    }
}

/// `runs` rounds of down, then a timed up; the median of each phase and of the whole, as a Markdown table.
fn bench(repo: &Repo, layout: &Layout, runs: usize) -> Result<()> {
    anyhow::ensure!(runs >= 1, "--runs must be at least 1");
    cluster::up(&repo.sh, &repo.root, layout)?; // builds the binaries if the cache lacks them: not timed
    let mut rounds: Vec<(cluster::PhaseTimes, f64)> = Vec::new();
    for n in 1..=runs {
        cluster::down(&repo.sh, layout)?;
        let started = std::time::Instant::now();
        let phases = cluster::up(&repo.sh, &repo.root, layout)?;
        let total = started.elapsed().as_secs_f64();
        eprintln!("run {n}/{runs}: {total:.1}s");
        rounds.push((phases, total));
    }
    println!("| phase | median (s) | min | max |\n| --- | ---: | ---: | ---: |");
    let row = |name: &str, values: Vec<f64>| {
        let (min, max) = values.iter().fold((f64::MAX, 0f64), |(a, b), v| (a.min(*v), b.max(*v)));
        println!("| {name} | {:.2} | {min:.2} | {max:.2} |", median(&values));
    };
    for (i, (name, _)) in rounds[0].0.iter().enumerate() {
        row(name, rounds.iter().map(|(p, _)| p[i].1).collect());
    }
    row("**`cluster up`, API ready and node Ready**", rounds.iter().map(|(_, t)| *t).collect());
    Ok(())
}
