//! `cargo xtask up`: builds what is stale, starts the stack with Compose v2
//! and waits until every service is healthy (`stack::start_and_wait`); on
//! failure it shows why.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;

use crate::images::{self, Select};
use crate::manifest::Kind;
use crate::prepared::{Prepared, Repo};
use crate::stack;

/// Build what is stale, start the stack and wait until every service is healthy.
#[derive(Args, Debug)]
pub struct Up {
    /// Seconds to wait for every service to become healthy.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// Do not build images (use what the engine has).
    #[arg(long)]
    pub no_build: bool,
    /// Print the time-to-healthy table as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl Up {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let p = stack::prepare_to_run(repo)?;
        p.block_on(async {
            if !self.no_build {
                let results = images::build_all(&p, &Select::default()).await?;
                if results.iter().any(|r| r.built) {
                    images::print_table(&results);
                }
            }
            let healthy_at = stack::start_and_wait(&p.sh, p.docker(), &p.stack, self.timeout, self.json).await?;
            self.report(&p, &healthy_at);
            Ok(())
        })
    }

    fn report(&self, p: &Prepared, healthy_at: &BTreeMap<String, f64>) {
        let total = healthy_at.values().cloned().fold(0.0, f64::max);
        if self.json {
            println!("{}", serde_json::json!({ "time_to_healthy": healthy_at, "all_healthy_seconds": total }));
            return;
        }
        println!("\n{:<16} {:>16}", "SERVICE", "HEALTHY AFTER");
        for (n, t) in stack::service_names(&p.stack).iter().filter_map(|n| healthy_at.get(n).map(|t| (n, t))) {
            println!("{n:<16} {t:>15.1}s");
        }
        println!("all {} services healthy in {total:.1}s", healthy_at.len());
        for s in p.stack.services.iter().filter(|s| s.manifest.kind == Kind::Http) {
            if let Some(port) = s.manifest.host_port {
                let port = p.env.get(&format!("{}_HOST_PORT", s.env_name())).unwrap_or_else(|| port.to_string());
                println!(
                    "{}: http://127.0.0.1:{port}/docs (health: http://127.0.0.1:{port}{})",
                    s.name,
                    s.manifest.health.path.as_deref().unwrap_or("/health")
                );
            }
        }
    }
}
