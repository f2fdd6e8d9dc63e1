//! The declarative input: `stack.yaml` at the root and one
//! `services/<name>/service.yaml` per service, with the PEP 621 metadata of
//! the service's `pyproject.toml` it needs (`manifest/pyproject.rs`: name,
//! description, requires-python). Everything `gen`, `build-images` and `up`
//! know about the stack comes from here; the dependencies are uv's
//! (`workspace.rs`).
//!
//! Invariant: a `Stack` that `load` returns is valid (no unknown keys, no
//! dependency cycles, no duplicate host ports, every referenced file exists),
//! so the generators never fail half-way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub const STACK_FILE: &str = "stack.yaml";
pub const SERVICES_DIR: &str = "services";
pub const SERVICE_FILE: &str = "service.yaml";
pub const PYPROJECT_FILE: &str = "pyproject.toml";

/// Names of the infrastructure services a manifest may depend on.
pub const INFRA: [&str; 2] = ["postgres", "kafka"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackManifest {
    /// Compose project name and image name prefix.
    pub project: String,
    /// Python minor version of the upstream base image (`python:<v>-slim-bookworm`).
    pub python_version: String,
    /// uv version pinned in every image.
    pub uv_version: String,
    /// Optional `# syntax=` frontend for the Dockerfiles (e.g.
    /// `docker/dockerfile:1`). Off by default: it makes BuildKit pull the
    /// frontend image, which fails without a registry.
    #[serde(default)]
    pub dockerfile_syntax: Option<String>,
    /// Directories with code every service image gets (shared Python packages).
    #[serde(default)]
    pub shared: Vec<SharedDir>,
    pub postgres: PostgresConfig,
    pub kafka: KafkaConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedDir {
    /// Repository path of a Python package directory, e.g. `services/shared/pysvc_common`.
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Port published on 127.0.0.1 of the host.
    pub host_port: u16,
    /// Directory of `*.sql` / `*.sh` init scripts, applied on an empty volume.
    pub init_scripts: String,
    #[serde(default = "default_grace")]
    pub stop_grace_period: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Topics the services use; created by the services on start.
    pub topics: Vec<String>,
    /// Partitions of each topic: how many consumers of one group can share
    /// the work (passed to the services as `KAFKA_PARTITIONS`).
    #[serde(default = "one")]
    pub partitions: u32,
    #[serde(default = "default_grace")]
    pub stop_grace_period: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Serves HTTP on `port`; health is an HTTP GET.
    Http,
    /// No port; health is a command.
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Installer {
    #[default]
    Uv,
    Pip,
}

/// Which lock pins a service's dependencies: the workspace's `uv.lock`
/// (default), or its own `services/<name>/uv.lock` (`lock: own`: its own uv
/// project, excluded from the workspace, for pins that clash with another
/// service's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    #[default]
    Workspace,
    Own,
}

impl fmt::Display for Installer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Installer::Uv => "uv",
            Installer::Pip => "pip",
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceManifest {
    pub kind: Kind,
    /// Exec-form command run by the image.
    pub command: Vec<String>,
    /// The service's code the image copies to `/app`: Python package folders
    /// and (for an adopted flat layout) `.py` modules, relative to its folder.
    pub packages: Vec<String>,
    /// Container port (http services only).
    #[serde(default)]
    pub port: Option<u16>,
    /// Port published on 127.0.0.1 of the host (http services only).
    #[serde(default)]
    pub host_port: Option<u16>,
    pub health: Health,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Debian packages the runtime stage needs (e.g. `libpq5`).
    #[serde(default)]
    pub runtime_packages: Vec<String>,
    /// Debian packages needed only to build the dependencies (e.g. `gcc`,
    /// `libpq-dev`): when there are any, the Dockerfile gets a builder stage
    /// that installs them and builds the venv, and the runtime stage copies
    /// the venv without them.
    #[serde(default)]
    pub build_packages: Vec<String>,
    /// Extra environment, fixed values only: secrets come from `.env`.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub installer: Installer,
    /// `workspace` (the root `uv.lock`) or `own` (`services/<name>/uv.lock`).
    #[serde(default)]
    pub lock: LockMode,
    /// Byte-compile the dependencies into the image (default): containers
    /// import without compiling, and a build on a cold cache pays for the
    /// compiling instead. `false` trades the other way.
    #[serde(default = "yes")]
    pub bytecode: bool,
    #[serde(default = "default_grace")]
    pub stop_grace_period: String,
    /// CPU and memory requests and limits (Kubernetes), with defaults.
    #[serde(default)]
    pub resources: Resources,
    /// Containers of this service (`deploy.replicas`); more than one only
    /// for services without a host port.
    #[serde(default = "one")]
    pub replicas: u32,
}

/// One health spec for compose and Kubernetes. `path` (http) or `command`
/// (worker) is the readiness check: "can it serve now" (compose's
/// healthcheck, which `depends_on` waits for; Kubernetes' readinessProbe).
/// `liveness` is "is the process stuck" (livenessProbe and startupProbe);
/// without it liveness is the readiness check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// HTTP path probed with GET (http services).
    #[serde(default)]
    pub path: Option<String>,
    /// Exec-form command that exits 0 when healthy (worker services).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// The liveness check, when it differs from the readiness check.
    #[serde(default)]
    pub liveness: Option<Check>,
    /// How long a start may take before failures count (sizes the startupProbe).
    #[serde(default = "default_start_period")]
    pub start_period: String,
    /// Time between two checks.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Time one check may take.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Consecutive failures that make a check fail.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

/// One check: an HTTP GET `path` on the service's port, or an exec-form `command`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

/// A resolved check, ready for any renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// HTTP GET on the container port; healthy on 2xx.
    Http { port: u16, path: String },
    /// A command run in the container (argv, never a shell string); healthy on exit 0.
    Exec(Vec<String>),
}

/// Probe timing in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub start_period: u32,
    pub interval: u32,
    pub timeout: u32,
    pub retries: u32,
}

fn default_start_period() -> String {
    "60s".to_owned()
}
fn default_interval() -> String {
    "1s".to_owned()
}
fn default_timeout() -> String {
    "3s".to_owned()
}
fn default_retries() -> u32 {
    3
}

/// Kubernetes resource requests and limits of a service's container.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default = "default_requests")]
    pub requests: Quantities,
    #[serde(default = "default_limits")]
    pub limits: Quantities,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Quantities {
    /// CPU: cores (`"1"`, `"0.5"`) or millicores (`250m`).
    pub cpu: String,
    /// Memory: bytes with a binary suffix (`128Mi`, `1Gi`).
    pub memory: String,
}

impl Default for Resources {
    fn default() -> Self {
        Resources { requests: default_requests(), limits: default_limits() }
    }
}
fn default_requests() -> Quantities {
    Quantities { cpu: "100m".to_owned(), memory: "128Mi".to_owned() }
}
fn default_limits() -> Quantities {
    Quantities { cpu: "500m".to_owned(), memory: "256Mi".to_owned() }
}

/// Seconds of a duration `check_duration` accepted (`30s`, `2m`).
pub fn seconds(duration: &str) -> u32 {
    let (digits, unit) = match duration.strip_suffix('m') {
        Some(d) => (d, 60),
        None => (duration.trim_end_matches('s'), 1),
    };
    digits.parse::<u32>().unwrap_or(0) * unit
}

impl Check {
    fn probe(&self, port: Option<u16>) -> Option<Probe> {
        match (&self.path, &self.command, port) {
            (Some(path), None, Some(port)) => Some(Probe::Http { port, path: path.clone() }),
            (None, Some(command), _) if !command.is_empty() => Some(Probe::Exec(command.clone())),
            _ => None,
        }
    }
}

fn default_grace() -> String {
    "30s".to_owned()
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// Repository-relative folder, e.g. `services/api-server`.
    pub dir: String,
    pub manifest: ServiceManifest,
    /// From its `pyproject.toml`: name, description, requires-python.
    pub project: Project,
}

impl Service {
    /// "Can it serve now": compose's healthcheck, Kubernetes' readinessProbe.
    pub fn readiness(&self) -> Probe {
        let h = &self.manifest.health;
        Check { path: h.path.clone(), command: h.command.clone() }
            .probe(self.manifest.port)
            .expect("validated: every service has a readiness check")
    }
    /// "Is the process stuck": Kubernetes' livenessProbe and startupProbe.
    pub fn liveness(&self) -> Probe {
        match &self.manifest.health.liveness {
            Some(check) => check.probe(self.manifest.port).expect("validated liveness check"),
            None => self.readiness(),
        }
    }
    pub fn timing(&self) -> Timing {
        let h = &self.manifest.health;
        Timing {
            start_period: seconds(&h.start_period),
            interval: seconds(&h.interval),
            timeout: seconds(&h.timeout),
            retries: h.retries,
        }
    }
    pub fn manifest_path(&self) -> String {
        format!("{}/{SERVICE_FILE}", self.dir)
    }
    pub fn pyproject_path(&self) -> String {
        format!("{}/{PYPROJECT_FILE}", self.dir)
    }
    /// Whether it keeps its own lock (`lock: own`) instead of the workspace's.
    pub fn own_lock(&self) -> bool {
        self.manifest.lock == LockMode::Own
    }
    /// The service's own locked dependencies with hashes, exported from
    /// `uv.lock` by `gen`: what its image installs (uv or pip).
    pub fn requirements_path(&self) -> String {
        format!("docker/{}.requirements.txt", self.name)
    }
    pub fn dockerfile_path(&self) -> String {
        format!("docker/{}.Dockerfile", self.name)
    }
    pub fn dockerignore_path(&self) -> String {
        format!("docker/{}.Dockerfile.dockerignore", self.name)
    }
    /// Environment-variable-safe name: `api-server` -> `API_SERVER`.
    pub fn env_name(&self) -> String {
        self.name.to_uppercase().replace('-', "_")
    }
    /// Repository paths that go into this image's build context (besides
    /// the Dockerfile): its exported requirements, its packages and the
    /// shared code. Never `uv.lock` or a pyproject: a dependency change in
    /// another service changes nothing here.
    pub fn context_paths(&self, stack: &StackManifest) -> Vec<String> {
        let mut paths = vec![self.requirements_path()];
        paths.extend(stack.shared.iter().map(|s| s.path.clone()));
        paths.extend(self.manifest.packages.iter().map(|p| format!("{}/{p}", self.dir)));
        paths
    }
}

#[derive(Debug, Clone)]
pub struct Stack {
    pub root: PathBuf,
    pub manifest: StackManifest,
    /// Sorted by name, so every output is deterministic.
    pub services: Vec<Service>,
}

/// A problem in an input file, located by line and column.
#[derive(Debug)]
pub struct InputError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

impl std::error::Error for InputError {}

fn parse<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T> {
    serde_yaml::from_str(text).map_err(|err| {
        let (line, column) = err.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
        // serde_yaml appends " at line X column Y"; we print the location first.
        let message = err.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        let message = if message.starts_with("unknown field `description`") {
            format!("`description` moved to the service's {PYPROJECT_FILE} ([project] description): remove it here")
        } else {
            format!("{message} (see the field list in ARCHITECTURE.md, \"Manifests\")")
        };
        InputError { file: file.to_owned(), line, column, message }.into()
    })
}

/// Where `key:` first appears in `text` (1-based line and column), for
/// errors about values serde accepted but the stack does not.
fn locate(text: &str, key: &str) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let trimmed = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        if trimmed.starts_with(&format!("{key}:")) || trimmed == key {
            return (i + 1, line.len() - line.trim_start().len() + 1);
        }
    }
    // A value inside a flow list (`depends_on: [a, b]`): point at the value.
    for (i, line) in text.lines().enumerate() {
        if let Some(col) = line.find(key) {
            return (i + 1, col + 1);
        }
    }
    (1, 1)
}

fn input_error(file: &str, text: &str, key: &str, message: String) -> anyhow::Error {
    let (line, column) = locate(text, key);
    InputError { file: file.to_owned(), line, column, message }.into()
}

/// Reads and validates `stack.yaml` alone (what `lock` needs: the services
/// may still lack the lock files `load` insists on).
pub fn load_stack_manifest(root: &Path) -> Result<StackManifest> {
    let stack_text = std::fs::read_to_string(root.join(STACK_FILE))
        .with_context(|| format!("cannot read {STACK_FILE} in {}: is this the repository root?", root.display()))?;
    let manifest: StackManifest = parse(STACK_FILE, &stack_text)?;
    validate_stack(root, &manifest, &stack_text)?;
    Ok(manifest)
}

/// Reads and validates the whole stack. Any error names file, line and
/// column; nothing is written by callers before this succeeds.
pub fn load(root: &Path) -> Result<Stack> {
    let manifest = load_stack_manifest(root)?;

    let mut services = Vec::new();
    let services_dir = root.join(SERVICES_DIR);
    let mut entries: Vec<_> = std::fs::read_dir(&services_dir)
        .with_context(|| format!("cannot list {}", services_dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let file = format!("{SERVICES_DIR}/{name}/{SERVICE_FILE}");
        let path = root.join(&file);
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {file}"))?;
        let service_manifest: ServiceManifest = parse(&file, &text)?;
        let dir = format!("{SERVICES_DIR}/{name}");
        let project = load_project(root, &dir, &name, &manifest, &text)?;
        let service = Service { name, dir, manifest: service_manifest, project };
        validate_service(root, &service, &text)?;
        services.push(service);
    }
    if services.is_empty() {
        bail!("no services found: expected at least one {SERVICES_DIR}/<name>/{SERVICE_FILE} (create one with `cargo xtask new-service <name>`)");
    }
    validate_stack_wide(root, &manifest, &services)?;
    Ok(Stack { root: root.to_owned(), manifest, services })
}

fn validate_stack(root: &Path, m: &StackManifest, text: &str) -> Result<()> {
    validate::stack(m, text)?;
    if !valid_name(&m.project) {
        return Err(input_error(
            STACK_FILE,
            text,
            "project",
            format!("project name {:?} must be lowercase letters, digits and '-'", m.project),
        ));
    }
    for shared in &m.shared {
        if !root.join(&shared.path).is_dir() {
            return Err(input_error(
                STACK_FILE,
                text,
                "path",
                format!("shared directory {:?} does not exist", shared.path),
            ));
        }
    }
    if !root.join(&m.postgres.init_scripts).is_dir() {
        return Err(input_error(
            STACK_FILE,
            text,
            "init_scripts",
            format!("init_scripts directory {:?} does not exist", m.postgres.init_scripts),
        ));
    }
    if m.kafka.topics.is_empty() {
        return Err(input_error(STACK_FILE, text, "topics", "kafka.topics must name at least one topic".to_owned()));
    }
    if m.kafka.partitions == 0 {
        return Err(input_error(STACK_FILE, text, "partitions", "kafka.partitions must be at least 1".to_owned()));
    }
    for duration in [&m.postgres.stop_grace_period, &m.kafka.stop_grace_period] {
        check_duration(duration).map_err(|msg| input_error(STACK_FILE, text, "stop_grace_period", msg))?;
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
}

fn check_duration(value: &str) -> std::result::Result<(), String> {
    let digits = value.strip_suffix('s').or_else(|| value.strip_suffix('m'));
    match digits {
        Some(d) if !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()) => Ok(()),
        _ => Err(format!("duration {value:?} must be a whole number of seconds or minutes, like \"30s\" or \"2m\"")),
    }
}

fn validate_service(root: &Path, s: &Service, text: &str) -> Result<()> {
    validate::service(s, text)?;
    let file = s.manifest_path();
    let err = |key: &str, msg: String| input_error(&file, text, key, msg);
    if !valid_name(&s.name) {
        return Err(err("kind", format!("service folder name {:?} must be lowercase letters, digits and '-'", s.name)));
    }
    if INFRA.contains(&s.name.as_str()) {
        return Err(err("kind", format!("service name {:?} is reserved for infrastructure", s.name)));
    }
    if s.manifest.command.is_empty() {
        return Err(err("command", "command must not be empty".to_owned()));
    }
    if s.manifest.packages.is_empty() {
        return Err(err("packages", "packages must list at least one Python package folder".to_owned()));
    }
    for package in &s.manifest.packages {
        let path = root.join(&s.dir).join(package);
        let module = package.ends_with(".py") && path.is_file();
        if !path.is_dir() && !module {
            return Err(err("packages", format!("package folder (or .py module) {}/{package} does not exist", s.dir)));
        }
    }
    match s.manifest.kind {
        Kind::Http => {
            if s.manifest.port.is_none() {
                return Err(err("kind", "an http service needs `port`".to_owned()));
            }
            match &s.manifest.health.path {
                Some(p) if p.starts_with('/') => {}
                Some(_) => return Err(err("path", "health.path must start with '/'".to_owned())),
                None => return Err(err("health", "an http service needs `health.path`".to_owned())),
            }
        }
        Kind::Worker => {
            if s.manifest.port.is_some() || s.manifest.host_port.is_some() {
                return Err(err(
                    "port",
                    "a worker service has no port: remove `port`/`host_port` or use `kind: http`".to_owned(),
                ));
            }
            if s.manifest.health.command.as_ref().is_none_or(|c| c.is_empty()) {
                return Err(err(
                    "health",
                    "a worker service needs `health.command`, a command that fails when the worker is stuck".to_owned(),
                ));
            }
        }
    }
    for pkg in &s.manifest.runtime_packages {
        if !pkg.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
            return Err(err("runtime_packages", format!("{pkg:?} is not a Debian package name")));
        }
    }
    for key in s.manifest.environment.keys() {
        if !key.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
            return Err(err(key, format!("environment name {key:?} must be UPPER_SNAKE_CASE")));
        }
        if key.contains("PASSWORD") || key.contains("SECRET") || key.contains("TOKEN") {
            return Err(err(key, format!("{key} looks like a secret: put it in .env, not in a committed manifest")));
        }
    }
    check_duration(&s.manifest.stop_grace_period).map_err(|m| err("stop_grace_period", m))?;
    check_replicas(s).map_err(|m| err("replicas", m))?;
    validate_health(s, &err)?;
    validate_resources(&s.manifest.resources, &err)?;
    Ok(())
}

/// The service's `pyproject.toml`: there, named after the service's folder
/// (what `uv export --package` is given), for the images' Python.
fn load_project(root: &Path, dir: &str, name: &str, stack: &StackManifest, manifest_text: &str) -> Result<Project> {
    let file = format!("{dir}/{PYPROJECT_FILE}");
    let Ok(text) = std::fs::read_to_string(root.join(&file)) else {
        return Err(input_error(
            &format!("{dir}/{SERVICE_FILE}"),
            manifest_text,
            "kind",
            format!(
                "{file} is missing: every service is a uv workspace member; write one with [project] \
                 name = \"{name}\", version, description, requires-python = \">={}\" and its dependencies \
                 (like services/api-server/pyproject.toml), then `cargo xtask lock`",
                stack.python_version
            ),
        ));
    };
    let (project, places) = pyproject::parse(&file, &text)?;
    let at = |key: &str, message: String| {
        let place =
            places.iter().find(|(k, _)| k == key).map(|(_, at)| *at).unwrap_or(pyproject::At { line: 1, column: 1 });
        anyhow::Error::from(InputError { file: file.clone(), line: place.line, column: place.column, message })
    };
    if pyproject::normalize(&project.name) != name {
        return Err(at("name", format!("name {:?} must be the service's folder name, {name:?} (it is what `uv --package` and the image are called)", project.name)));
    }
    let wanted = format!(">={}", stack.python_version);
    if project.requires_python.replace(' ', "") != wanted {
        return Err(at(
            "requires-python",
            format!(
                "requires-python {:?} must be {wanted:?}: the images run Python {} ({STACK_FILE} python_version), \
                 and uv.lock must resolve for it",
                project.requires_python, stack.python_version
            ),
        ));
    }
    validate::description(&project.description).map_err(|m| at("description", m))?;
    Ok(project)
}

fn validate_health(s: &Service, err: &dyn Fn(&str, String) -> anyhow::Error) -> Result<()> {
    let h = &s.manifest.health;
    for (key, value) in [("start_period", &h.start_period), ("interval", &h.interval), ("timeout", &h.timeout)] {
        check_duration(value).map_err(|m| err(key, m))?;
        if seconds(value) == 0 && key != "start_period" {
            return Err(err(key, format!("health.{key} must be at least 1s")));
        }
    }
    if h.retries == 0 {
        return Err(err("retries", "health.retries must be at least 1".to_owned()));
    }
    if let Some(check) = &h.liveness {
        match (&check.path, &check.command) {
            (Some(path), None) if s.manifest.port.is_some() && path.starts_with('/') => {}
            (Some(_), None) if s.manifest.port.is_none() => {
                return Err(err("liveness", "health.liveness.path needs a `port` (http services only)".to_owned()))
            }
            (Some(_), None) => return Err(err("liveness", "health.liveness.path must start with '/'".to_owned())),
            (None, Some(command)) if !command.is_empty() => {}
            _ => {
                return Err(err(
                    "liveness",
                    "health.liveness needs exactly one of `path` (HTTP GET) or `command` (an argv list)".to_owned(),
                ))
            }
        }
    }
    Ok(())
}

fn validate_resources(r: &Resources, err: &dyn Fn(&str, String) -> anyhow::Error) -> Result<()> {
    let number = |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') && !v.starts_with('.');
    for q in [&r.requests, &r.limits] {
        let cpu_ok = number(q.cpu.strip_suffix('m').unwrap_or(&q.cpu));
        if !cpu_ok {
            return Err(err("cpu", format!("cpu {:?} must be cores (\"0.5\") or millicores (\"250m\")", q.cpu)));
        }
        let memory = ["Ki", "Mi", "Gi"].iter().find_map(|u| q.memory.strip_suffix(u)).unwrap_or(&q.memory);
        if !number(memory) || memory.contains('.') {
            return Err(err(
                "memory",
                format!("memory {:?} must be whole bytes or Ki/Mi/Gi, like \"256Mi\"", q.memory),
            ));
        }
    }
    Ok(())
}

fn check_replicas(s: &Service) -> std::result::Result<(), String> {
    match s.manifest.replicas {
        0 => Err("replicas must be at least 1".to_owned()),
        n if n > 1 && s.manifest.host_port.is_some() => Err(format!(
            "replicas: {n} cannot share host_port {}: remove host_port or use 1",
            s.manifest.host_port.unwrap_or_default()
        )),
        _ => Ok(()),
    }
}

fn validate_stack_wide(root: &Path, stack: &StackManifest, services: &[Service]) -> Result<()> {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let read = |s: &Service| std::fs::read_to_string(root.join(s.manifest_path())).unwrap_or_default();
    // Unknown dependencies.
    for s in services {
        for dep in &s.manifest.depends_on {
            if !names.contains(dep.as_str()) && !INFRA.contains(&dep.as_str()) {
                return Err(input_error(
                    &s.manifest_path(),
                    &read(s),
                    dep,
                    format!("depends_on names {dep:?}, which is neither a service nor one of {INFRA:?}"),
                ));
            }
            if dep == &s.name {
                return Err(input_error(&s.manifest_path(), &read(s), dep, format!("{} depends on itself", s.name)));
            }
        }
    }
    // Cycles (depth-first search over service-to-service edges).
    if let Some(cycle) = find_cycle(services) {
        let first = services.iter().find(|s| s.name == cycle[0]).expect("cycle names a service");
        return Err(input_error(
            &first.manifest_path(),
            &read(first),
            "depends_on",
            format!("dependency cycle: {} (compose could never start these; remove one edge)", cycle.join(" -> ")),
        ));
    }
    // More consumers of one group than partitions: the extra ones idle.
    for s in services.iter().filter(|s| s.manifest.depends_on.iter().any(|d| d == "kafka")) {
        if s.manifest.replicas > stack.kafka.partitions {
            return Err(input_error(
                &s.manifest_path(),
                &read(s),
                "replicas",
                format!(
                    "replicas: {} exceeds kafka.partitions: {} in {STACK_FILE}: the extra consumers would idle; raise the partitions",
                    s.manifest.replicas, stack.kafka.partitions
                ),
            ));
        }
    }
    // Duplicate host ports.
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    ports.insert(stack.postgres.host_port, format!("{STACK_FILE} (postgres)"));
    for s in services {
        if let Some(port) = s.manifest.host_port {
            if let Some(owner) = ports.insert(port, s.manifest_path()) {
                return Err(input_error(
                    &s.manifest_path(),
                    &read(s),
                    "host_port",
                    format!("host_port {port} is already used by {owner}: pick another port"),
                ));
            }
        }
    }
    Ok(())
}

fn find_cycle(services: &[Service]) -> Option<Vec<String>> {
    fn visit<'a>(
        name: &'a str,
        services: &'a [Service],
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| *n == name) {
            let mut cycle: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
            cycle.push(name.to_owned());
            return Some(cycle);
        }
        if done.contains(name) {
            return None;
        }
        let service = services.iter().find(|s| s.name == name)?;
        stack.push(name);
        for dep in &service.manifest.depends_on {
            if let Some(c) = visit(dep, services, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(name);
        None
    }
    let mut done = BTreeSet::new();
    for s in services {
        if let Some(c) = visit(&s.name, services, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

pub mod pyproject;
#[cfg(test)]
pub(crate) mod tests;
pub mod validate;

pub use pyproject::Project;
