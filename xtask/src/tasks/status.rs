//! `cargo xtask status`: the state and health of every service, read
//! through the Engine API. Works without `.env`, and with manifests that do
//! not load (then it lists the containers it finds).

use anyhow::{Context, Result};
use clap::Args;

use crate::manifest;
use crate::prepared::Repo;
use crate::stack;

/// Show every service's state and health.
#[derive(Args, Debug)]
pub struct Status {}

impl Status {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let (project, mut names) = match repo.stack() {
            Ok(stack) => (stack.manifest.project.clone(), stack::service_names(&stack)),
            Err(err) => {
                let project = project_without_manifests(repo)?;
                eprintln!("warning: {err:#}\nshowing the containers of the compose project {project} as they are");
                (project, Vec::new())
            }
        };
        let engine = repo.connect()?;
        let (current, why, timers) = engine.rt.block_on(async {
            // Where the engine runs no healthchecks itself, one probe each now.
            let mut prober = stack::Prober::new(&engine.docker).await?;
            prober.tick(&project).await;
            let timers = prober.active().then(|| stack::timers::running(&project));
            let current = stack::states(&engine.docker, &project).await?;
            let mut why = std::collections::BTreeMap::new();
            for (name, s) in current.iter().filter(|(_, s)| !s.healthy() && s.state == "running") {
                if let Some(output) = stack::failing_probe(&engine.docker, &s.container).await {
                    why.insert(name.clone(), output);
                }
            }
            anyhow::Ok((current, why, timers))
        })?;
        if names.is_empty() {
            names = current.keys().cloned().collect();
        }
        println!("{:<16} {:<12} {:>8}", "SERVICE", "STATE", "RESTARTS");
        for name in names {
            match current.get(&name) {
                Some(s) => {
                    println!("{:<16} {:<12} {:>8}", name, s.label(), s.restarts);
                    if let Some(output) = why.get(&name) {
                        println!("  last probe: {output}");
                    }
                }
                None => println!("{:<16} {:<12} {:>8}", name, "absent", "-"),
            }
        }
        match timers {
            Some(Some(pid)) => println!("health timers: the xtask's, pid {pid} (the engine runs no healthchecks)"),
            Some(None) => println!(
                "health timers: none running (the engine runs no healthchecks): `cargo xtask up` starts them; \
                 until then health changes only when `status` probes"
            ),
            None => {}
        }
        Ok(())
    }
}

/// The compose project when the manifests do not load: `stack.yaml`'s, or
/// else the `name:` of the generated `compose.yaml`.
fn project_without_manifests(repo: &Repo) -> Result<String> {
    if let Ok(m) = manifest::load_stack_manifest(&repo.root) {
        return Ok(m.project);
    }
    let compose = std::fs::read_to_string(repo.root.join("compose.yaml")).unwrap_or_default();
    compose.lines().find_map(|l| l.strip_prefix("name: ")).map(|n| n.trim().to_owned()).context(
        "neither stack.yaml nor compose.yaml names the compose project: fix stack.yaml, then `cargo xtask gen`",
    )
}
