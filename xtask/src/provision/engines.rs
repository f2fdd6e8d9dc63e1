//! The engines `setup --engine` installs and starts on Debian/Ubuntu, as
//! root, without systemd (containers, CI) or with it. Each serves the
//! Docker API on this machine's default socket, `/var/run/docker.sock`, so
//! the docker CLI, Compose, bollard and the xtask reach whichever runs
//! without `DOCKER_HOST`. One engine at a time: switching stops the other
//! (its containers stop with it; images and volumes stay in its store).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::engine::caps::{Capabilities, ImageStore, Kind};

/// Which engine to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// Docker Engine 26 with the containerd image store: what a new Docker
    /// install uses since Engine 29 (the default).
    Docker,
    /// Docker Engine 26 with the classic overlay2 store.
    DockerOverlay2,
    /// Docker Engine 20.10 (Debian bookworm's), the oldest supported.
    #[value(name = "docker-20.10")]
    Docker2010,
    /// Podman 4 serving the Docker API (`podman system service`).
    Podman,
}

const SOCKET: &str = "/var/run/docker.sock";
const PODMAN_PID: &str = "/run/pysvc-podman.pid";
const PODMAN_LOG: &str = "/var/log/podman-service.log";
const TRIXIE_SOURCES: &str = "/etc/apt/sources.list.d/pysvc-trixie.sources";
const TRIXIE_PIN: &str = "/etc/apt/preferences.d/pysvc-trixie";

impl Choice {
    /// Whether the running engine already is this choice.
    pub fn is(self, caps: &Capabilities) -> bool {
        match self {
            Choice::Podman => caps.kind == Kind::Podman,
            Choice::Docker => caps.store == ImageStore::Containerd,
            Choice::DockerOverlay2 => caps.store == ImageStore::GraphDriver && caps.start_interval(),
            Choice::Docker2010 => caps.store == ImageStore::GraphDriver && !caps.start_interval(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Choice::Docker => "docker",
            Choice::DockerOverlay2 => "docker-overlay2",
            Choice::Docker2010 => "docker-20.10",
            Choice::Podman => "podman",
        }
    }
}

/// Phases of a switch: stop what runs, install, configure, start.
pub fn switch_to(sh: &Shell, choice: Choice) -> Result<()> {
    stop_running(sh)?;
    match choice {
        Choice::Docker | Choice::DockerOverlay2 => install_docker_26(sh)?,
        Choice::Docker2010 => super::apt_install(sh, &["--allow-downgrades", "docker.io/bookworm"])?,
        Choice::Podman => install_podman(sh)?,
    }
    match choice {
        Choice::Podman => start_podman(sh),
        _ => {
            set_containerd_store(choice == Choice::Docker)?;
            super::start_dockerd(sh)
        }
    }
}

/// Stops dockerd or the Podman service behind the socket and waits (at
/// most 90 s: dockerd stops its containers first) until each process has
/// exited, not merely closed the socket: a dockerd still shutting down
/// removes the pid file of the one started after it.
fn stop_running(sh: &Shell) -> Result<()> {
    // Podman's containers outlive its API service (conmon keeps each one):
    // stop them too, or their host ports stay taken for the next engine.
    if super::which(sh, "podman").is_ok() {
        eprintln!("$ podman stop --all --time 10");
        let _ = cmd!(sh, "timeout 120 podman stop --all --time 10").quiet().ignore_status().ignore_stderr().run();
    }
    let mut pids: Vec<String> = ["/var/run/docker.pid", PODMAN_PID]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|p| p.trim().to_owned())
        .collect();
    for pattern in ["^dockerd( |$)", "^/usr/sbin/dockerd( |$)", "podman system service"] {
        let found = cmd!(sh, "pgrep -f {pattern}").quiet().ignore_status().read().unwrap_or_default();
        pids.extend(found.split_whitespace().map(str::to_owned));
    }
    pids.sort();
    pids.dedup();
    pids.retain(|p| !p.is_empty() && running(p));
    for pid in &pids {
        eprintln!("$ kill {pid}");
        let _ = cmd!(sh, "kill {pid}").quiet().ignore_stderr().run();
    }
    let gone = || pids.iter().all(|p| !running(p));
    super::wait_until("the previous engine to stop", Duration::from_secs(90), "/var/log/dockerd.log", gone)?;
    let _ = std::fs::remove_file(PODMAN_PID);
    let _ = std::fs::remove_file(SOCKET);
    Ok(())
}

/// A process that exists and is not a zombie (nobody may reap it here).
fn running(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some(s) if s != "Z" && s != "X")
}

/// Debian trixie's docker.io 26, docker-cli and docker-buildx: they install
/// on bookworm from the same mirror (read from the host's apt sources) and
/// replace only those packages. trixie is pinned low so nothing else moves.
fn install_docker_26(sh: &Shell) -> Result<()> {
    let mirror = debian_mirror()?;
    std::fs::write(
        TRIXIE_SOURCES,
        format!(
            "Types: deb\nURIs: {mirror}\nSuites: trixie\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )
    .with_context(|| format!("cannot write {TRIXIE_SOURCES}"))?;
    std::fs::write(TRIXIE_PIN, "Package: *\nPin: release n=trixie\nPin-Priority: 100\n")
        .with_context(|| format!("cannot write {TRIXIE_PIN}"))?;
    super::apt_install(sh, &["docker.io/trixie", "docker-cli/trixie", "docker-buildx/trixie"])
}

/// The first Debian mirror of the host's apt sources.
fn debian_mirror() -> Result<String> {
    let mut texts = Vec::new();
    for dir in ["/etc/apt/sources.list.d", "/etc/apt"] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if (name.ends_with(".sources") || name.ends_with(".list")) && !name.starts_with("pysvc-") {
                texts.push(std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    texts
        .iter()
        .flat_map(|t| t.split_whitespace())
        .find(|w| w.starts_with("http") && w.trim_end_matches('/').ends_with("/debian"))
        .map(|w| w.trim_end_matches('/').to_owned())
        .context("no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list*: add one, then retry")
}

/// `features.containerd-snapshotter` in /etc/docker/daemon.json, the rest
/// of the file kept.
fn set_containerd_store(on: bool) -> Result<()> {
    let path = Path::new("/etc/docker/daemon.json");
    let mut config: serde_json::Value =
        std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_else(|| serde_json::json!({}));
    config["features"]["containerd-snapshotter"] = serde_json::Value::Bool(on);
    std::fs::create_dir_all("/etc/docker")?;
    std::fs::write(path, serde_json::to_string_pretty(&config)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What `setup` writes to /etc/containers/containers.conf: default ulimits
/// the sandbox can grant (without CAP_SYS_RESOURCE every container fails
/// "error setting rlimit"), and netavark with aardvark-dns, so containers
/// of a compose network reach each other by service name (Debian's Podman
/// 4.3 defaults to CNI without a DNS plugin).
const CONTAINERS_CONF: &str = "# written by `cargo xtask setup --engine podman`\n\
[containers]\n\
default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\n\
[network]\n\
network_backend = \"netavark\"\n";

/// Podman with catatonit (`init: true`), netavark and aardvark-dns, and the
/// configuration above (a containers.conf of the user's own is kept, and
/// must then say the same).
fn install_podman(sh: &Shell) -> Result<()> {
    super::apt_install(sh, &["podman", "catatonit", "uidmap", "netavark", "aardvark-dns"])?;
    let conf = Path::new("/etc/containers/containers.conf");
    let text = std::fs::read_to_string(conf).unwrap_or_default();
    if text.is_empty() || text.starts_with("# written by `cargo xtask setup") {
        std::fs::create_dir_all("/etc/containers")?;
        return std::fs::write(conf, CONTAINERS_CONF).with_context(|| format!("cannot write {}", conf.display()));
    }
    if !(text.contains("default_ulimits") && text.contains("netavark")) {
        anyhow::bail!(
            "{} is your own and lacks what Podman needs here; add:\n{}",
            conf.display(),
            CONTAINERS_CONF.lines().skip(1).collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// `podman system service` on the Docker socket, in the background.
fn start_podman(sh: &Shell) -> Result<()> {
    let podman = super::which(sh, "podman")?;
    let address = format!("unix://{SOCKET}");
    let child = super::spawn_daemon(
        &podman,
        &["system".as_ref(), "service".as_ref(), "--time=0".as_ref(), address.as_ref()],
        PODMAN_LOG,
    )?;
    std::fs::write(PODMAN_PID, child.to_string())?;
    let answers = || std::os::unix::net::UnixStream::connect(SOCKET).is_ok();
    super::wait_until("the Podman service", Duration::from_secs(60), PODMAN_LOG, answers)
}
