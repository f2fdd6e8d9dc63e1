//! The one scratch-stack recipe, used by the integration tests (through
//! `tests/common`, which includes this file), the fuzzing step of `test`
//! and `bench-load`: a copy of the repository's inputs in a temp folder with
//! its own compose project (`pysvct-<name>-<pid>-<n>`), host ports picked
//! free at run time (in the manifests and in `.env`), its own `.env` (own
//! password) and image names (`IMAGE_PREFIX` = the project). Dropping it
//! (also while a failing test unwinds) removes its containers, volumes,
//! networks, images and folder; a new one first removes what a killed
//! process left. A developer's own stack (project `pysvc`) is never touched.
//!
//! It uses only std and anyhow (the tests compile it too) and drives the
//! xtask binary and the docker CLI as a user would.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{ensure, Context, Result};

/// Compose projects of scratch stacks start with this; never `pysvc` itself.
pub const PREFIX: &str = "pysvct-";

/// The inputs a scratch copy holds: what `gen`, `build-images` and `up` read.
const INPUTS: [&str; 6] = ["stack.yaml", "pyproject.toml", "uv.lock", "services", "docker", ".env.example"];

/// A port on 127.0.0.1 that nothing listens on now (and that this process
/// has not handed out before).
pub fn free_port() -> Result<u16> {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
        let port = listener.local_addr()?.port();
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).context("cannot read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a file only its owner can read (a `.env` holds a password).
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Copies the repository's inputs (no git, no target) from `root` into
/// `dir` (emptied first), with a `.env` from the checkout's own (or from
/// `.env.example` when it has none): its image overrides (local base images
/// on a machine without a registry) carry over.
pub fn copy_inputs(root: &Path, dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for item in INPUTS {
        let status = Command::new("cp").arg("-r").arg(root.join(item)).arg(dir).status()?;
        ensure!(status.success(), "cannot copy {item} into {}", dir.display());
    }
    // The own `.venv` of a service that keeps its own lock is no input.
    for entry in std::fs::read_dir(dir.join("services"))?.flatten() {
        let _ = std::fs::remove_dir_all(entry.path().join(".venv"));
    }
    let env = std::fs::read_to_string(root.join(".env"))
        .or_else(|_| std::fs::read_to_string(root.join(".env.example")))
        .context("the checkout has neither .env nor .env.example: run `cargo xtask gen`")?;
    write_private(&dir.join(".env"), &env)
}

/// Sets `key: value` on the first line of a YAML file under `dir` whose key
/// is `key` (indentation kept); the file must have such a line.
pub fn set_yaml_key(dir: &Path, rel: &str, key: &str, value: &str) -> Result<()> {
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            if !done && line.trim_start().starts_with(&format!("{key}:")) {
                done = true;
                format!("{}{key}: {value}", &line[..indent])
            } else {
                line.to_owned()
            }
        })
        .collect();
    ensure!(done, "{rel} has no `{key}:` line");
    std::fs::write(&path, lines.join("\n") + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Sets `KEY=value` in the `.env` under `dir` (replacing the line or appending it).
pub fn set_env(dir: &Path, key: &str, value: &str) -> Result<()> {
    let path = dir.join(".env");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let line = format!("{key}={value}");
    match lines.iter_mut().find(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key)) {
        Some(existing) => *existing = line,
        None => lines.push(line),
    }
    write_private(&path, &(lines.join("\n") + "\n"))
}

/// The `.env` key of a service's host port (`API_SERVER_HOST_PORT`).
pub fn host_port_key(service: &str) -> String {
    format!("{}_HOST_PORT", service.to_uppercase().replace('-', "_"))
}

/// `docker …` whose failure does not matter (cleanup): its stdout.
fn docker_quiet(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Removes everything the engine holds for a scratch project: containers,
/// volumes, networks, the images named after it (`<project>/…`, also
/// when pushed as `<registry>/<project>/…`, and the registry build cache
/// tags `<registry>/<project>-cache/…`), and the untagged images its
/// builds left. Never fails; refuses (does nothing) for a project that is
/// not a scratch one.
pub fn remove_project(project: &str) {
    if !project.starts_with(PREFIX) {
        eprintln!("not removing {project}: only scratch projects ({PREFIX}…) are removed");
        return;
    }
    let label = format!("label=com.docker.compose.project={project}");
    let containers = docker_quiet(&["ps", "-aq", "--filter", &label]);
    let containers: Vec<&str> = containers.split_whitespace().collect();
    if !containers.is_empty() {
        docker_quiet(&[&["rm", "-f", "-v"][..], &containers].concat());
    }
    for (kind, list) in [("volume", ["volume", "ls", "-q"]), ("network", ["network", "ls", "-q"])] {
        let ids = docker_quiet(&[&list[..], &["--filter", &label]].concat());
        for id in ids.split_whitespace() {
            docker_quiet(&[kind, "rm", id]);
        }
    }
    let images = docker_quiet(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    let ours: Vec<&str> = images
        .lines()
        .filter(|i| i.rsplit_once(':').is_some_and(|(repo, _)| image_projects(repo).any(|p| p == project)))
        .collect();
    if !ours.is_empty() {
        docker_quiet(&[&["rmi"][..], &ours].concat());
    }
    // What its builds left untagged (an image whose tag a later build took,
    // a stage buildah committed) names the copy as its source. Podman counts
    // an image with children as no leftover: each pass frees the next layer
    // of a chain (bounded: a chain is one image per step).
    let source = format!("label=org.opencontainers.image.source={}", folder(project).display());
    let mut before = String::new();
    for _ in 0..40 {
        let left = docker_quiet(&["image", "ls", "-aq", "--filter", "dangling=true", "--filter", &source]);
        if left.is_empty() || left == before {
            break;
        }
        let mut ids: Vec<&str> = left.split_whitespace().collect();
        ids.sort_unstable();
        ids.dedup();
        docker_quiet(&[&["rmi"][..], &ids].concat());
        before = left;
    }
}

/// The folder of a scratch project's copy (also its images' source label).
fn folder(project: &str) -> PathBuf {
    std::env::temp_dir().join(project)
}

/// The projects an image repository may belong to: each folder of its path
/// (`<project>/<service>`, `<registry>/<project>/<service>`), a cache
/// repository's without its suffix (`<registry>/<project>-cache/<service>`).
fn image_projects(repo: &str) -> impl Iterator<Item = &str> {
    let folders = repo.rsplit_once('/').map_or("", |(folders, _)| folders);
    folders.split('/').filter(|f| !f.is_empty()).map(|f| f.strip_suffix("-cache").unwrap_or(f))
}

/// The process id in a scratch name (`pysvct-<name>-<pid>-<n>`).
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.rsplit('-').nth(1)?.parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Scratch projects and folders whose process is gone (killed before its
/// `Drop` ran): removed before a new one starts, so leftovers never pile up.
fn reap_orphans() {
    let projects = docker_quiet(&["ps", "-a", "--format", "{{.Label \"com.docker.compose.project\"}}"]);
    let volumes = docker_quiet(&["volume", "ls", "--format", "{{.Label \"com.docker.compose.project\"}}"]);
    // Images outlive their containers (a test killed after it built or
    // pushed): their repository names the project (`<project>/…`,
    // `<registry>/<project>-cache/…`).
    let images = docker_quiet(&["image", "ls", "--format", "{{.Repository}}"]);
    let named = images.lines().flat_map(image_projects);
    let mut seen: Vec<&str> = projects.lines().chain(volumes.lines()).chain(named).collect();
    seen.sort();
    seen.dedup();
    for project in seen {
        if owner_pid(project).is_some_and(|pid| !alive(pid)) {
            eprintln!("removing {project}, left behind by a process that is gone");
            remove_project(project);
        }
    }
    for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if owner_pid(&name).is_some_and(|pid| !alive(pid)) && entry.path().join("stack.yaml").is_file() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// An isolated copy of the stack: its own folder, compose project, host
/// ports, `.env` (own password) and image names. Everything it started is
/// removed when it is dropped, unless it was kept.
pub struct Scratch {
    pub dir: PathBuf,
    pub project: String,
    /// Host port of each published service (`postgres`, `api-server`, …).
    pub ports: BTreeMap<String, u16>,
    /// The xtask binary that runs on the copy.
    xtask: PathBuf,
    keep: bool,
}

impl Scratch {
    /// A scratch copy of `root` named after `name`, regenerated (with
    /// `xtask`, the binary to run on it) for its own project and ports.
    pub fn create(root: &Path, name: &str, xtask: &Path) -> Result<Scratch> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        reap_orphans();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let project = format!("{PREFIX}{name}-{}-{seq}", std::process::id());
        ensure!(
            project.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{project:?} is not a compose project name"
        );
        let dir = folder(&project);
        let mut scratch = Scratch { dir, project, ports: BTreeMap::new(), xtask: xtask.to_owned(), keep: false };
        copy_inputs(root, &scratch.dir)?;
        set_yaml_key(&scratch.dir, "stack.yaml", "project", &scratch.project)?;
        scratch.publish("postgres", "stack.yaml")?;
        for service in scratch.service_names()? {
            let rel = format!("services/{service}/service.yaml");
            let text = std::fs::read_to_string(scratch.dir.join(&rel))?;
            if text.lines().any(|l| l.trim_start().starts_with("host_port:")) {
                scratch.publish(&service, &rel)?;
            }
        }
        set_env(&scratch.dir, "POSTGRES_PASSWORD", &random_hex(20)?)?;
        set_env(&scratch.dir, "IMAGE_PREFIX", &scratch.project)?;
        set_env(&scratch.dir, "IMAGE_TAG", "latest")?;
        scratch.xtask(&["gen"])?;
        Ok(scratch)
    }

    fn service_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.join("services"))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("service.yaml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Gives `service` a free host port, in its manifest and in `.env`.
    fn publish(&mut self, service: &str, manifest: &str) -> Result<()> {
        let port = free_port()?;
        set_yaml_key(&self.dir, manifest, "host_port", &port.to_string())?;
        set_env(&self.dir, &host_port_key(service), &port.to_string())?;
        self.ports.insert(service.to_owned(), port);
        Ok(())
    }

    /// A free host port for a service added later (`<SERVICE>_HOST_PORT` in `.env`).
    pub fn reserve_port(&mut self, service: &str) -> Result<u16> {
        let port = free_port()?;
        set_env(&self.dir, &host_port_key(service), &port.to_string())?;
        self.ports.insert(service.to_owned(), port);
        Ok(port)
    }

    /// `xtask …` on this copy, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.xtask);
        cmd.args(args).env("PYSVC_ROOT", &self.dir).current_dir(&self.dir);
        cmd
    }

    /// Runs `xtask …` on this copy, its output on stderr; fails unless it succeeds.
    pub fn xtask(&self, args: &[&str]) -> Result<()> {
        eprintln!("$ cargo xtask {}   # in {}", args.join(" "), self.dir.display());
        let status = self
            .command(args)
            .stdout(Stdio::from(std::io::stderr()))
            .status()
            .with_context(|| format!("cannot run `cargo xtask {}`", args.join(" ")))?;
        ensure!(status.success(), "`cargo xtask {}` failed in {}", args.join(" "), self.dir.display());
        Ok(())
    }

    /// Leaves the stack and its folder in place when dropped (says how to remove them).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("scratch stack kept: PYSVC_ROOT={} cargo xtask down --volumes", self.dir.display());
            return;
        }
        remove_project(&self.project);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_scratch_name_tells_its_process() {
        assert_eq!(super::owner_pid("pysvct-fuzz-123-0"), Some(123));
        assert_eq!(super::owner_pid("pysvct-second-checkout-77-copy"), Some(77));
        assert_eq!(super::owner_pid("pysvc"), None);
        assert_eq!(super::owner_pid("pysvct-x"), None);
    }

    #[test]
    fn an_image_repository_names_its_project() {
        let projects = |repo| super::image_projects(repo).collect::<Vec<_>>();
        assert_eq!(projects("pysvct-a-1-0/api-server"), ["pysvct-a-1-0"]);
        assert_eq!(projects("127.0.0.1:5000/pysvct-a-1-0/api-server"), ["127.0.0.1:5000", "pysvct-a-1-0"]);
        assert_eq!(projects("127.0.0.1:5000/pysvct-a-1-0-cache/api-server"), ["127.0.0.1:5000", "pysvct-a-1-0"]);
        assert!(projects("pysvct-a-1-0").is_empty(), "a bare name is a service, not a project");
        assert!(projects("<none>").is_empty());
    }
}
