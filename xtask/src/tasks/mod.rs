//! The tasks: one file per `cargo xtask` command, each an `Args` struct with
//! `fn run(self, repo: &Repo) -> Result<()>`. A task never imports another
//! task; what two tasks share lives in a module below them.

pub mod base_images;
pub mod bench_build;
pub mod bench_deploy;
pub mod bench_dev;
pub mod bench_load;
pub mod bench_up;
pub mod build_images;
pub mod cluster;
pub mod deploy;
pub mod dev;
pub mod down;
pub mod generate;
pub mod health_timers;
pub mod lock;
pub mod logs;
pub mod new_service;
pub mod setup;
pub mod status;
pub mod test;
pub mod up;
