//! `cargo xtask`: build automation for the Python services in this repository.
//! One module per task; `main` is one dispatch. See ARCHITECTURE.md.

mod base_images;
mod bench;
mod bench_build;
mod bench_load;
mod build_images;
mod context;
mod dotenv;
mod engine;
mod gen;
mod lock;
mod manifest;
mod new_service;
mod proxy_ca;
mod setup;
mod stack;
mod test;
mod tools;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};
use xshell::Shell;

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Build automation for containerised Python services", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Gen(gen::Gen),
    Lock(lock::Lock),
    BaseImages(base_images::BaseImages),
    BuildImages(build_images::BuildImages),
    Setup(setup::Setup),
    Up(stack::Up),
    Down(stack::Down),
    Status(stack::Status),
    Logs(stack::Logs),
    NewService(new_service::NewService),
    BenchBuild(bench_build::BenchBuild),
    BenchUp(bench::BenchUp),
    BenchLoad(bench_load::BenchLoad),
    Test(test::Test),
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
    let root = project_root();
    let sh = Shell::new()?;
    sh.change_dir(&root);
    match cli.command {
        Command::Gen(cmd) => cmd.run(&root),
        Command::Lock(cmd) => cmd.run(&sh, &root),
        Command::BaseImages(cmd) => cmd.run(&sh, &root),
        Command::BuildImages(cmd) => cmd.run(&sh, &root),
        Command::Setup(cmd) => cmd.run(&sh, &root),
        Command::Up(cmd) => cmd.run(&sh, &root),
        Command::Down(cmd) => cmd.run(&sh, &root),
        Command::Status(cmd) => cmd.run(&root),
        Command::Logs(cmd) => cmd.run(&sh, &root),
        Command::NewService(cmd) => cmd.run(&sh, &root),
        Command::BenchBuild(cmd) => cmd.run(&sh, &root),
        Command::BenchUp(cmd) => cmd.run(&sh, &root),
        Command::BenchLoad(cmd) => cmd.run(&root),
        Command::Test(cmd) => cmd.run(&sh, &root),
    }
}
