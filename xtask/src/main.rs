//! `cargo xtask`: build automation for the Python services in this repository.
//! One module per task (`tasks/`), `main` is one dispatch. The modules form
//! layers that import only downwards; ARCHITECTURE.md draws them and
//! `layers::tests` enforces them.

// Layer 1, the inputs: manifests, the uv workspace, `.env`, the proxy CA, pinned tools, small helpers.
mod dotenv;
mod manifest;
mod proxy_ca;
mod tools;
mod util;
mod workspace;
// Layer 2: the Docker engine, and what a failed build's log means.
mod buildhint;
mod engine;
mod kube;
// Layer 3: renderers (generated files, build contexts).
mod context;
mod gen;
// Layer 4: provisioning the machine (engine, Compose, base images; the local Kubernetes node).
mod cluster;
mod provision;
// Layer 5: the prepared context every command starts from.
mod prepared;
// Layer 6: what several tasks share.
mod bench;
mod devloop;
mod images;
mod lockfile;
mod scratch;
mod stack;
// Layer 7: the tasks, which never import each other.
mod tasks;

#[cfg(test)]
mod layers;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::prepared::Repo;
use crate::tasks::*;

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Build automation for containerised Python services", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Gen(generate::Gen),
    Lock(lock::Lock),
    BaseImages(base_images::BaseImages),
    BuildImages(build_images::BuildImages),
    Cluster(tasks::cluster::Cluster),
    Setup(setup::Setup),
    Up(up::Up),
    Down(down::Down),
    Status(status::Status),
    Logs(logs::Logs),
    Dev(dev::Dev),
    NewService(new_service::NewService),
    BenchBuild(bench_build::BenchBuild),
    BenchUp(bench_up::BenchUp),
    BenchLoad(bench_load::BenchLoad),
    BenchDev(bench_dev::BenchDev),
    BenchDeploy(bench_deploy::BenchDeploy),
    Deploy(deploy::Deploy),
    Test(test::Test),
    #[command(hide = true)]
    HealthTimers(health_timers::HealthTimers),
}

/// The repository root: the parent of the xtask crate, or `PYSVC_ROOT` when
/// set (the integration tests point it at scratch copies of the repository).
pub fn project_root() -> PathBuf {
    if let Some(root) = std::env::var_os("PYSVC_ROOT") {
        return PathBuf::from(root);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}

fn main() {
    if let Err(err) = run() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let repo = Repo::new(project_root())?;
    match cli.command {
        Command::Gen(cmd) => cmd.run(&repo),
        Command::Lock(cmd) => cmd.run(&repo),
        Command::BaseImages(cmd) => cmd.run(&repo),
        Command::BuildImages(cmd) => cmd.run(&repo),
        Command::Cluster(cmd) => cmd.run(&repo),
        Command::Setup(cmd) => cmd.run(&repo),
        Command::Up(cmd) => cmd.run(&repo),
        Command::Down(cmd) => cmd.run(&repo),
        Command::Status(cmd) => cmd.run(&repo),
        Command::Logs(cmd) => cmd.run(&repo),
        Command::Dev(cmd) => cmd.run(&repo),
        Command::NewService(cmd) => cmd.run(&repo),
        Command::BenchBuild(cmd) => cmd.run(&repo),
        Command::BenchUp(cmd) => cmd.run(&repo),
        Command::BenchLoad(cmd) => cmd.run(&repo),
        Command::BenchDev(cmd) => cmd.run(&repo),
        Command::BenchDeploy(cmd) => cmd.run(&repo),
        Command::Deploy(cmd) => cmd.run(&repo),
        Command::Test(cmd) => cmd.run(&repo),
        Command::HealthTimers(cmd) => cmd.run(&repo),
    }
}
