//! Helpers for the integration tests: they drive the real `cargo xtask`
//! binary against the real engine, and talk to the stack over HTTP and the
//! docker CLI. Nothing here is faked.
//!
//! Isolation: a test that starts containers does it through a [`TestStack`],
//! the xtask's own scratch-stack recipe (`xtask/src/scratch.rs`, included
//! here, so the tests, the benches and the fuzzing run share one): a copy of
//! the repository with its own compose project (`pysvct-<test>-<pid>-<n>`),
//! host ports chosen free at run time, `.env` (own password), image names
//! (`IMAGE_PREFIX` = the project) and volumes. Dropping it (also while a
//! failed test unwinds) removes its containers, volumes, networks, images
//! and folder, so a developer's own stack (project `pysvc`) is never touched.

#![allow(dead_code)]

#[path = "../../src/scratch.rs"]
mod scratch;
pub use scratch::Scratch;

/// Compose projects of the tests start with this; never `pysvc` itself.
pub const TEST_PROJECT_PREFIX: &str = scratch::PREFIX;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One engine on a small machine: the tests of one binary take turns.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Runs xtask in the real checkout. Only for commands that start nothing
/// (or for the test that proves the developer's stack is left alone).
pub fn xtask(args: &[&str]) -> Output {
    xtask_env(args, &[])
}

pub fn xtask_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    eprintln!("$ cargo xtask {}", args.join(" "));
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .output()
        .expect("xtask runs");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Fails the test with the command's output unless it succeeded; its stdout.
pub fn expect_ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs xtask in the real checkout and fails the test unless it succeeds.
pub fn xtask_ok(args: &[&str]) -> String {
    expect_ok(&format!("cargo xtask {}", args.join(" ")), xtask(args))
}

/// `docker run <args>` of a throwaway container, removed afterwards; its
/// output. Not `--rm`: through Podman 4.3's Docker API, `docker run --rm`
/// exits 0 whatever the command did, and these tests read exit codes.
pub fn docker_run(args: &[&str]) -> Output {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("pysvct-run-{}-{n}", std::process::id());
    let out = Command::new("docker").args(["run", "--name", &name]).args(args).output().expect("docker CLI runs");
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    out
}

/// [`docker_run`] that must succeed; its trimmed stdout.
pub fn docker_run_ok(args: &[&str]) -> String {
    let out = docker_run(args);
    assert!(out.status.success(), "docker run {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI runs");
    assert!(out.status.success(), "docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn docker_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&docker(args)).expect("docker printed JSON")
}

/// Container id of a compose service of `project` (empty when there is none).
pub fn container_of(project: &str, service: &str) -> String {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ])
}

/// `healthy`, `unhealthy`, `starting`, or the state of a container without a healthcheck.
pub fn health_of(container: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
        container,
    ])
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn kill(signal: &str, pid: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), pid]).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A minimal HTTP/1.1 client: (status, body).
pub fn http_at(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<(u16, String)> {
    http_with_headers(addr, method, path, &[], body)
}

/// [`http_at`] with extra request headers.
pub fn http_with_headers(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let body = body.unwrap_or_default();
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// POSTs a search to the api-server at `addr`; its id.
pub fn post_search_at(addr: &str, query: &str) -> String {
    let (status, body) =
        http_at(addr, "POST", "/searches", Some(format!("{{\"query\": \"{query}\"}}").as_bytes())).unwrap();
    assert_eq!(status, 202, "{body}");
    json(&body)["id"].as_str().unwrap().to_owned()
}

/// Waits until the search `id` is answered by the api-server at `addr`; its JSON.
pub fn answered_at(addr: &str, id: &str, timeout: Duration) -> serde_json::Value {
    wait_for(&format!("search {id} to be answered"), timeout, || {
        let (status, body) = http_at(addr, "GET", &format!("/searches/{id}"), None).ok()?;
        (status == 200).then(|| json(&body)).filter(|v| v["status"] == "done")
    })
}

pub fn free_port() -> u16 {
    scratch::free_port().unwrap()
}

/// A scratch copy of the repository's inputs (no git, no target) in a temp
/// folder of its own (named like a scratch stack's, so a killed test's copy
/// is reaped too), with `.env` derived from the checkout's (or from
/// `.env.example`) through `env_edits`.
pub fn scratch_copy(name: &str, env_edits: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{}{name}-{}-copy", scratch::PREFIX, std::process::id()));
    scratch::copy_inputs(&root(), &dir).unwrap();
    let mut env = std::fs::read_to_string(dir.join(".env")).unwrap();
    for (from, to) in env_edits {
        env = env.replace(from, to);
    }
    scratch::write_private(&dir.join(".env"), &env).unwrap();
    dir
}

/// Replaces `from` by `to` in a file under `dir`; the file must contain it.
pub fn edit_file(dir: &Path, rel: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(dir.join(rel)).unwrap();
    assert!(text.contains(from), "{rel} has no {from:?}");
    std::fs::write(dir.join(rel), text.replace(from, to)).unwrap();
}

/// Sets `key: value` on the first line of a YAML file under `dir` whose key is `key`.
pub fn set_yaml_key(dir: &Path, rel: &str, key: &str, value: &str) {
    scratch::set_yaml_key(dir, rel, key, value).unwrap()
}

/// Sets `KEY=value` in the `.env` under `dir` (replacing the line or appending it).
pub fn set_env(dir: &Path, key: &str, value: &str) {
    scratch::set_env(dir, key, value).unwrap()
}

/// An isolated copy of the stack for one test (a [`Scratch`]). Everything
/// it started is removed when it is dropped, also when the test fails.
pub struct TestStack {
    pub dir: PathBuf,
    pub project: String,
    /// Host port of each published service (`postgres`, `api-server`, …).
    pub ports: BTreeMap<String, u16>,
    scratch: Scratch,
}

/// A failed test leaves its evidence: the last lines each service logged,
/// printed before the stack is removed.
impl Drop for TestStack {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // Bounded: an engine that stopped answering must not hang the cleanup.
        let out = Command::new("timeout")
            .args(["60", "docker", "compose", "--project-name", &self.project, "logs"])
            .args(["--no-color", "--timestamps", "--tail", "80"])
            .current_dir(&self.dir)
            .output();
        if let Ok(out) = out {
            eprintln!("--- last log lines of {} (the test failed) ---", self.project);
            eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
    }
}

impl TestStack {
    /// A scratch copy named after the test, regenerated for its own project
    /// and ports.
    pub fn new(name: &str) -> TestStack {
        let scratch = Scratch::create(&root(), name, Path::new(env!("CARGO_BIN_EXE_xtask")))
            .unwrap_or_else(|e| panic!("cannot make the scratch stack {name}: {e:#}"));
        TestStack { dir: scratch.dir.clone(), project: scratch.project.clone(), ports: scratch.ports.clone(), scratch }
    }

    /// A free host port for a service added later (`<SERVICE>_HOST_PORT` in `.env`).
    pub fn reserve_port(&mut self, service: &str) -> u16 {
        let port = self.scratch.reserve_port(service).unwrap();
        self.ports.insert(service.to_owned(), port);
        port
    }

    /// `cargo xtask …` on this copy, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        self.scratch.command(args)
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        eprintln!("$ cargo xtask {}   # in {}", args.join(" "), self.dir.display());
        let out = self.command(args).envs(env.iter().copied()).output().expect("xtask runs");
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        out
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Runs xtask on this copy and fails the test unless it succeeds; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        expect_ok(&format!("cargo xtask {}", args.join(" ")), self.run(args))
    }

    /// `up --json`: the time-to-healthy report.
    pub fn up(&self) -> serde_json::Value {
        let out = self.ok(&["up", "--json"]);
        serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Spawns `cargo xtask …` on this copy (for tests that interrupt it).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    pub fn env_value(&self, key: &str) -> String {
        let env = std::fs::read_to_string(self.dir.join(".env")).unwrap();
        env.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_default().trim().to_owned()
    }

    /// The `latest` image of a service of this copy.
    pub fn image(&self, service: &str) -> String {
        format!("{}/{service}:latest", self.project)
    }

    pub fn container(&self, service: &str) -> String {
        container_of(&self.project, service)
    }

    pub fn health(&self, service: &str) -> String {
        health_of(&self.container(service))
    }

    pub fn wait_health(&self, service: &str, wanted: &str, timeout: Duration) {
        wait_for(&format!("{service} to be {wanted}"), timeout, || (self.health(service) == wanted).then_some(()));
    }

    /// `127.0.0.1:<port>` of a published service.
    pub fn addr(&self, service: &str) -> String {
        format!("127.0.0.1:{}", self.ports[service])
    }

    pub fn api(&self) -> String {
        self.addr("api-server")
    }

    pub fn http(&self, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<(u16, String)> {
        http_at(&self.api(), method, path, body)
    }

    pub fn post_search(&self, query: &str) -> String {
        post_search_at(&self.api(), query)
    }

    pub fn answered(&self, id: &str, timeout: Duration) -> serde_json::Value {
        answered_at(&self.api(), id, timeout)
    }

    /// Host PID of the main process of a service (the child of tini).
    pub fn main_pid(&self, service: &str, program: &str) -> String {
        // Not `docker top`: Podman 4.3's Docker API cannot answer it. The
        // container's first process (an init, with `init: true`) and its
        // descendants, read from the host's /proc.
        let first = docker(&["inspect", "-f", "{{.State.Pid}}", &self.container(service)]);
        let mut queue = vec![first.clone()];
        let mut seen = Vec::new();
        while let Some(pid) = queue.pop() {
            let args = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args = String::from_utf8_lossy(&args).replace('\0', " ");
            if args.contains(program) && !args.contains("docker-init") && !args.contains("catatonit") {
                return pid;
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            queue.extend(children.split_whitespace().map(str::to_owned));
            seen.push(format!("{pid}: {args}"));
        }
        panic!("no {program} process in {service} (from pid {first}): {seen:?}")
    }

    /// A query in the stack's database, as its user; the trimmed output.
    pub fn psql(&self, sql: &str) -> String {
        docker(&["exec", &self.container("postgres"), "psql", "-U", "pysvc", "-d", "pysvc", "-tAc", sql])
    }
}

/// A throwaway registry (Debian's `docker-registry`) on a free loopback
/// port with its storage in a temp folder; stopped and removed on drop.
/// The engine allows plain HTTP to 127.0.0.0/8 registries.
pub struct Registry {
    pub addr: String,
    child: Child,
    pub storage: PathBuf,
}

impl Registry {
    pub fn start() -> Registry {
        let program = registry_program();
        let addr = format!("127.0.0.1:{}", free_port());
        let storage = std::env::temp_dir().join(format!("pysvct-registry-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&storage).unwrap();
        let child = Command::new(program)
            .args(["serve".as_ref(), root().join("docker/registry.yml").as_os_str()])
            .env("REGISTRY_HTTP_ADDR", &addr)
            .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &storage)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry { addr, child, storage };
        wait_for("the test registry to answer", Duration::from_secs(20), || {
            http_at(&registry.addr, "GET", "/v2/", None).ok().filter(|(s, _)| *s == 200)
        });
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.storage);
    }
}

fn registry_program() -> &'static str {
    ["/usr/bin/docker-registry", "/usr/local/bin/docker-registry"].into_iter().find(|p| Path::new(p).is_file()).unwrap_or_else(
        || panic!("the registry tests need Debian's docker-registry, which is not installed: run `cargo xtask setup --yes`"),
    )
}

/// A second Docker engine with nothing in it (no images, no build cache):
/// what a fresh CI runner starts with. It runs in a network namespace of its
/// own (`unshare --net`), so it can neither see nor change the host's
/// networks (a second engine on the host's network would take over or remove
/// the shared engine's `docker0`); inside, a second registry process serves
/// `registry`'s storage on the same address, so image names are the same in
/// both engines. Its socket is a file, reachable from here. Stopped and
/// removed on drop.
pub struct FreshEngine {
    /// The `DOCKER_HOST` of the fresh engine.
    pub host: String,
    dir: PathBuf,
    unshare: Child,
}

impl FreshEngine {
    pub fn start(registry: &Registry) -> FreshEngine {
        let dir = PathBuf::from(format!("/tmp/pysvct-fresh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        // The same kind of engine as the shared one: a fresh Podman is a
        // second API service on storage of its own.
        let podman = engine_is_podman();
        let engine = if podman {
            format!(
                "echo $$ >{d}/docker.pid\nexec podman --root {d}/data --runroot {d}/exec --tmpdir {d}/tmp \
                 --cgroup-manager cgroupfs --events-backend file system service --time 0 unix://{d}/docker.sock"
            )
        } else {
            format!(
                "exec dockerd --data-root {d}/data --exec-root {d}/exec -H unix://{d}/docker.sock \
                 --pidfile {d}/docker.pid --bridge=none --iptables=false --containerd-namespace {ns} \
                 --containerd-plugins-namespace {ns}-plugins",
                ns = fresh_namespace()
            )
        };
        let script = format!(
            "set -e\nip link set lo up\n\
             REGISTRY_HTTP_ADDR={addr} REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY={storage} {program} serve {config} \
             >{d}/registry.log 2>&1 &\necho $! >{d}/registry.pid\n{engine} >{d}/dockerd.log 2>&1\n",
            addr = registry.addr,
            storage = registry.storage.display(),
            program = registry_program(),
            config = root().join("docker/registry.yml").display(),
        );
        // Podman mounts its layers itself and leaves them mounted when it
        // exits: in a mount namespace of its own they go with it.
        let namespaces: &[&str] = if podman { &["--net", "--mount"] } else { &["--net"] };
        let unshare = Command::new("unshare")
            .args(namespaces)
            .args(["--fork", "sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) runs; the fresh-engine test needs root");
        let engine = FreshEngine { host: format!("unix://{d}/docker.sock"), dir, unshare };
        wait_for("the fresh engine to answer", Duration::from_secs(60), || {
            let out = Command::new("docker").args(["-H", &engine.host, "info"]).output().ok()?;
            out.status.success().then_some(())
        });
        engine
    }

    /// `docker <args>` against the fresh engine; its stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        let mut all = vec!["-H", &self.host];
        all.extend_from_slice(args);
        docker(&all)
    }

    /// Copies images from the shared engine (`docker save | docker load`):
    /// the base images a runner pulls from its registry.
    pub fn load(&self, images: &[&str]) {
        let mut save = Command::new("docker").arg("save").args(images).stdout(Stdio::piped()).spawn().unwrap();
        let status = Command::new("docker")
            .args(["-H", &self.host, "load", "-q"])
            .stdin(save.stdout.take().unwrap())
            .status()
            .unwrap();
        assert!(save.wait().unwrap().success() && status.success(), "cannot load {images:?} into the fresh engine");
    }
}

impl Drop for FreshEngine {
    fn drop(&mut self) {
        for (file, wait) in [("docker.pid", true), ("registry.pid", false)] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(file)) {
                let _ = Command::new("kill").arg(pid.trim()).status();
                if wait {
                    let start = Instant::now();
                    while self.unshare.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(30)
                    {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        remove_containerd_namespace(&fresh_namespace());
    }
}

/// Whether the shared engine is Podman (its Docker API names its components).
pub fn engine_is_podman() -> bool {
    docker(&["version", "--format", "{{range .Server.Components}}{{.Name}} {{end}}"]).contains("Podman")
}

/// The containerd namespace of this process's fresh engine: with the
/// containerd image store both engines use the system containerd, and only
/// their own namespaces keep the fresh one's images apart from the shared one's.
fn fresh_namespace() -> String {
    format!("pysvct-fresh-{}", std::process::id())
}

/// Removes what a fresh engine left in the system containerd (its images,
/// then the namespaces); nothing to do with a graph-driver store.
fn remove_containerd_namespace(ns: &str) {
    for ns in [ns.to_owned(), format!("{ns}-plugins")] {
        let quiet = |args: &[&str]| Command::new("ctr").args(args).output().ok();
        let Some(out) = quiet(&["-n", &ns, "images", "ls", "-q"]) else { return };
        for image in String::from_utf8_lossy(&out.stdout).lines() {
            quiet(&["-n", &ns, "images", "rm", image]);
        }
        let leases = quiet(&["-n", &ns, "leases", "ls", "-q"]).map(|o| o.stdout).unwrap_or_default();
        for lease in String::from_utf8_lossy(&leases).lines() {
            quiet(&["-n", &ns, "leases", "rm", lease]);
        }
        quiet(&["namespaces", "rm", &ns]);
    }
}

/// An exclusive lock on a file, held until dropped; a second holder (another
/// test process) waits for it.
pub struct FileLock(std::fs::File);

impl FileLock {
    pub fn acquire(path: &Path) -> FileLock {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
        if file.try_lock().is_err() {
            eprintln!("waiting for {} (another test run holds it)", path.display());
            file.lock().unwrap();
        }
        FileLock(file)
    }
}

/// Every layer of `image` as an uncompressed tar, read from `docker save`
/// in either of its formats: Docker's classic archive (`<id>/layer.tar`)
/// and the OCI image layout of Engine 25+ and Podman (`blobs/sha256/<digest>`,
/// possibly gzip-compressed). Both carry a `manifest.json` whose `Layers`
/// name the layer files in order; that is what is followed. Panics when the
/// archive names no layer or a named layer is missing.
pub fn image_layers(image: &str) -> Vec<Vec<u8>> {
    let saved = Command::new("docker").args(["save", image]).output().unwrap();
    assert!(saved.status.success(), "docker save {image}: {}", String::from_utf8_lossy(&saved.stderr));
    layers_of_archive(&saved.stdout)
}

pub fn layers_of_archive(archive: &[u8]) -> Vec<Vec<u8>> {
    let mut entries = std::collections::BTreeMap::new();
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().trim_start_matches("./").to_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.insert(path, data);
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(entries.get("manifest.json").expect("the saved image has a manifest.json")).unwrap();
    let names: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .expect("manifest.json lists Layers")
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    assert!(!names.is_empty(), "manifest.json names no layer");
    names
        .iter()
        .map(|n| uncompressed(entries.get(n).unwrap_or_else(|| panic!("layer {n} is not in the archive"))))
        .collect()
}

/// A layer as a plain tar: gzip and zstd layers are decompressed (by the
/// system's `gzip`/`zstd`), a plain one is returned as is.
fn uncompressed(data: &[u8]) -> Vec<u8> {
    let tool = match data {
        [0x1f, 0x8b, ..] => "gzip",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        _ => return data.to_vec(),
    };
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} is needed to read a compressed layer: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{tool} -dc failed on a layer");
    out.stdout
}

/// A field of `/proc/1/status` of the container's main process.
pub fn proc_status(id: &str, field: &str) -> String {
    let (code, status) = exec(id, &["cat", "/proc/1/status"]);
    assert_eq!(code, 0, "{status}");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_owned()
}

/// `docker exec` without asserting success: (exit code, stdout + stderr).
pub fn exec(id: &str, argv: &[&str]) -> (i32, String) {
    let out = Command::new("docker").arg("exec").arg(id).args(argv).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}
