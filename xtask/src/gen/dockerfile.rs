//! The Dockerfile of a service: one stage that builds the venv with uv (or
//! pip) from the hashed lock, then copies the code and runs as a non-root user.
//! A service with `build_packages` gets two: a builder stage that installs
//! them and builds the venv the same way, and the runtime stage, which copies
//! the venv and installs only the runtime packages.

use std::fmt::Write as _;

use super::{upstream_python_image, upstream_uv_image, APP_UID, HEADER_NOTE, PROXY_CA_DIR, PROXY_CA_FILE, VENV};
use crate::manifest::{self, Installer, Kind, Service, Stack};

pub(super) fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialize")
}

/// The exec-form healthcheck command of a service, without the "CMD".
pub fn health_command(service: &Service) -> Vec<String> {
    match service.manifest.kind {
        Kind::Http => {
            let port = service.manifest.port.unwrap_or(8000);
            let path = service.manifest.health.path.as_deref().unwrap_or("/health");
            // No curl in the image: Python's urllib raises (exit 1) on any
            // non-2xx answer, a refused connection or a timeout. No space in
            // any argument: Podman 4's Docker API splits a healthcheck's
            // arguments on spaces.
            vec![
                "python".to_owned(),
                "-c".to_owned(),
                format!("__import__('urllib.request').request.urlopen('http://127.0.0.1:{port}{path}',timeout=2)"),
            ]
        }
        Kind::Worker => service.manifest.health.command.clone().unwrap_or_default(),
    }
}

/// The Dockerfile of a service whose venv `installer` builds: one stage, or
/// a builder and a runtime stage when the service declares `build_packages`.
pub fn dockerfile(stack: &Stack, service: &Service, installer: Installer) -> String {
    if !has_builder(service) {
        return [
            header(stack, service, installer),
            stages(stack, installer),
            runtime_setup(service),
            install_step(stack, service, installer),
            copy_sbom(service),
            copy_code(stack, service),
            run_settings(service),
        ]
        .concat();
    }
    [
        header(stack, service, installer),
        image_args(stack, installer),
        builder_stage(stack, service, installer),
        "\n# Runtime stage: the runtime packages and the builder's venv; no compiler, no headers.\n".to_owned(),
        "FROM ${BASE_IMAGE} AS runtime\n".to_owned(),
        runtime_setup(service),
        format!("COPY --from=builder {VENV} {VENV}\n"),
        copy_sbom(service),
        copy_code(stack, service),
        run_settings(service),
    ]
    .concat()
}

/// Whether the Dockerfile has a builder stage: the service needs Debian
/// packages to build its dependencies (a compiler, headers), which must not
/// reach the image.
fn has_builder(service: &Service) -> bool {
    !service.manifest.build_packages.is_empty()
}

/// The comment block on top: what generated the file, and from what.
fn header(stack: &Stack, service: &Service, installer: Installer) -> String {
    let mut d = String::new();
    if let Some(syntax) = &stack.manifest.dockerfile_syntax {
        // Must be the very first line to take effect.
        let _ = writeln!(d, "# syntax={syntax}");
    }
    let _ = writeln!(d, "# {HEADER_NOTE}");
    let _ = writeln!(d, "# source: {} and {}", service.manifest_path(), manifest::STACK_FILE);
    let _ = writeln!(d, "# build context: the repository root, filtered by {}", service.dockerignore_path());
    let _ = writeln!(d, "# installer: {installer}");
    if has_builder(service) {
        let _ = writeln!(d, "# stages: builder (build_packages), then runtime (runtime_packages and the venv)");
    }
    d.push('\n');
    d
}

/// The image arguments and (uv) the stage uv is mounted from.
fn image_args(stack: &Stack, installer: Installer) -> String {
    let mut d = String::new();
    let _ = writeln!(d, "ARG BASE_IMAGE={}", upstream_python_image(stack));
    if installer == Installer::Uv {
        let _ = writeln!(d, "ARG UV_IMAGE={}", upstream_uv_image(stack));
        d.push_str("\n# uv is bind-mounted from its image for the install step only: it is never in a layer.\n");
        d.push_str("FROM ${UV_IMAGE} AS uv\n");
    }
    d
}

/// The image arguments and the `FROM` lines of the one-stage file: the
/// runtime stage, and (uv) the stage uv is mounted from.
fn stages(stack: &Stack, installer: Installer) -> String {
    let mut d = image_args(stack, installer);
    d.push_str("\n# One stage: the venv is built where it runs, so nothing is copied between stages.\n");
    d.push_str("FROM ${BASE_IMAGE} AS runtime\n");
    d
}

/// The builder stage: the build packages, then the same install step as the
/// one-stage file (same mounts, a cache of its own), ending with the venv at
/// its final path for the runtime stage to copy.
fn builder_stage(stack: &Stack, service: &Service, installer: Installer) -> String {
    let mut d = String::new();
    d.push_str("\n# Builder stage: the build packages (compilers, headers) and the venv. Only the venv\n");
    d.push_str("# reaches the image: the runtime stage copies it.\n");
    d.push_str("FROM ${BASE_IMAGE} AS builder\n");
    d.push_str(&apt_install(&service.manifest.build_packages));
    d.push_str(&install_step(stack, service, installer));
    d
}

/// The runtime stage before the venv: system packages, environment, workdir.
fn runtime_setup(service: &Service) -> String {
    let m = &service.manifest;
    let mut d = apt_install(&m.runtime_packages);
    let _ = writeln!(
        d,
        "ENV PATH={VENV}/bin:$PATH \\\n    PYTHONPATH=/app \\\n    PYTHONUNBUFFERED=1 \\\n    PYTHONDONTWRITEBYTECODE=1"
    );
    d.push_str("WORKDIR /app\n");
    d
}

/// One layer of Debian packages (sorted, each once, no recommends, no apt
/// lists left behind); nothing when there are none.
fn apt_install(packages: &[String]) -> String {
    if packages.is_empty() {
        return String::new();
    }
    let mut packages = packages.to_vec();
    packages.sort();
    packages.dedup();
    // DL3008 (pin apt versions) is ignored on purpose: Debian drops old
    // versions from its mirrors with every security update, so pins break
    // builds; the base image tag pins the release instead.
    format!(
        "# hadolint ignore=DL3008\nRUN apt-get update \\\n    && apt-get install -y --no-install-recommends {} \\\n    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin\n",
        packages.join(" ")
    )
}

/// What the install step mounts: its `--mount` lines (each ending in a line
/// continuation) and where the proxy CA lands.
struct Mounts {
    /// The installer's cache, without indent: it follows `RUN `.
    cache: String,
    ca: String,
    /// The proxy CA's path inside the step: used only if the file is not empty.
    ca_file: String,
}

/// The dependency layer: the venv, built from the lock by `installer`.
fn install_step(stack: &Stack, service: &Service, installer: Installer) -> String {
    let mut d = String::new();
    let _ = writeln!(d, "# Dependency layer: {} (the service's own dependencies,", service.requirements_path());
    d.push_str("# exported from uv.lock with hashes); rebuilt when that file changes, never for a code\n");
    d.push_str("# change nor for another service's dependencies.\n");
    let _ = writeln!(d, "# A TLS-inspecting proxy's CA ({PROXY_CA_FILE}, git-ignored) is mounted for this step");
    d.push_str("# only; it never lands in a layer. Every mount targets a folder the base image has\n");
    d.push_str("# (a new mount point would stay behind in the layer as an empty folder).\n");
    d.push_str("# The export is copied in (a few kB) rather than bind-mounted: its content then keys\n");
    d.push_str("# this step on every builder (buildah, behind Podman, ignores what a step bind-mounts).\n");
    let _ = writeln!(d, "COPY {} {}", service.requirements_path(), requirements_in_image(service));
    let mounts = Mounts {
        cache: format!(
            "--mount=type=cache,id={},sharing=locked,target={CACHE_MOUNT} \\",
            venv_cache_id(stack, service, installer)
        ),
        ca: format!("    --mount=type=bind,source={PROXY_CA_DIR},target={CA_MOUNT} \\"),
        ca_file: format!("{CA_MOUNT}/proxy-ca.crt"),
    };
    match installer {
        Installer::Uv => d.push_str(&uv_install(service, &mounts)),
        Installer::Pip => d.push_str(&pip_install(service, &mounts)),
    }
    d
}

/// uv syncs a venv kept in the cache mount, then the layer gets a copy.
fn uv_install(service: &Service, mounts: &Mounts) -> String {
    let m = &service.manifest;
    let Mounts { cache, ca, ca_file } = mounts;
    let requirements = requirements_in_image(service);
    let cached = format!("{CACHE_MOUNT}/venv");
    let mut d = String::new();
    d.push_str("# The cache mount (one per service and Python version) holds uv's cache and a venv\n");
    d.push_str("# synced to the lock (hard links into uv's cache, both in the mount), so a lock change\n");
    if m.bytecode {
        d.push_str("# installs and byte-compiles only what changed; the layer gets a copy with bytecode,\n");
        d.push_str("# so containers start without compiling (`bytecode: false` skips compiling).\n");
    } else {
        d.push_str("# installs only what changed; the layer gets a copy. `bytecode: false`: nothing is\n");
        d.push_str("# byte-compiled, so containers compile what they import at every start.\n");
    }
    let _ = writeln!(d, "RUN {cache}");
    d.push_str("    --mount=type=bind,from=uv,source=/uv,target=/usr/local/bin/uv \\\n");
    let _ = writeln!(d, "{ca}");
    let _ = writeln!(d, "    if [ -s {ca_file} ]; then export SSL_CERT_FILE={ca_file}; fi \\");
    let _ = writeln!(d, "    && export UV_CACHE_DIR={CACHE_MOUNT}/uv \\");
    let _ = writeln!(
        d,
        "    && if ! {cached}/bin/python -c '' 2>/dev/null; then rm -rf {cached} \\\n        && uv venv --no-python-downloads --relocatable --python python3 {cached}; fi \\"
    );
    let compile = if m.bytecode { " --compile-bytecode" } else { "" };
    let _ = writeln!(
        d,
        "    && set -- --no-python-downloads --link-mode hardlink{compile} --require-hashes \\\n        --python {cached}/bin/python {requirements} \\"
    );
    d.push_str("    && { uv pip sync --offline \"$@\" 2>/dev/null || uv pip sync \"$@\"; } \\\n");
    let _ = writeln!(d, "    && cp -a {cached} {VENV}");
    d
}

/// pip installs into the venv in place, then removes itself.
fn pip_install(service: &Service, mounts: &Mounts) -> String {
    let Mounts { cache, ca, ca_file } = mounts;
    let requirements = requirements_in_image(service);
    let mut d = String::new();
    d.push_str("# pip itself (and setuptools) leave the venv after the install: no installer at run time.\n");
    let _ = writeln!(d, "RUN {cache}\n{ca}");
    let _ = writeln!(d, "    if [ -s {ca_file} ]; then export PIP_CERT={ca_file}; fi \\");
    let _ = writeln!(d, "    && export PIP_CACHE_DIR={CACHE_MOUNT}/pip \\");
    let _ = writeln!(d, "    && python3 -m venv {VENV} \\");
    let compile = if service.manifest.bytecode { "" } else { " --no-compile" };
    let _ = writeln!(d, "    && {VENV}/bin/pip install --disable-pip-version-check --require-hashes --no-deps{compile} -r {requirements} \\");
    let _ = writeln!(d, "    && {VENV}/bin/pip uninstall --disable-pip-version-check --yes pip setuptools");
    d
}

/// The SBOM (CycloneDX, from the lock) at a fixed path in the image. It
/// changes only with the lock or the base image, so it sits right after the
/// dependency layer and a code change leaves it cached.
fn copy_sbom(service: &Service) -> String {
    format!(
        "# What this image contains (CycloneDX 1.6, made from the lock by `cargo xtask gen`).\nCOPY {} {}\n",
        super::sbom_path(service),
        super::sbom_in_image(service)
    )
}

/// The code: the shared folders, then the service's own packages.
fn copy_code(stack: &Stack, service: &Service) -> String {
    let mut d = String::new();
    for shared in &stack.manifest.shared {
        let _ = writeln!(d, "COPY {} /app/{}", shared.path, last_component(&shared.path));
    }
    for package in &service.manifest.packages {
        let _ = writeln!(d, "COPY {}/{package} /app/{}", service.dir, last_component(package));
    }
    d
}

/// How the container runs: user, port, healthcheck, labels and command.
fn run_settings(service: &Service) -> String {
    let m = &service.manifest;
    let mut d = String::new();
    let _ = writeln!(d, "USER {APP_UID}:{APP_UID}");
    if let Some(port) = m.port {
        let _ = writeln!(d, "EXPOSE {port}");
    }
    // The manifest's timing, as compose and Kubernetes get it: a plain
    // `docker run` of the image probes the same way.
    let t = service.timing();
    let _ = writeln!(
        d,
        "HEALTHCHECK --interval={}s --timeout={}s --start-period={}s --retries={} \\\n    CMD {}",
        t.interval,
        t.timeout,
        t.start_period,
        t.retries,
        json_list(&health_command(service))
    );
    let _ = writeln!(
        d,
        "LABEL org.opencontainers.image.title=\"{}\" \\\n      org.opencontainers.image.description=\"{}\"",
        service.name,
        service.project.description.replace('"', "'")
    );
    let _ = writeln!(d, "CMD {}", json_list(&m.command));
    d
}

/// The install step's cache mount: the installer's cache and (uv) the
/// synced venv. `/var/cache` is in every Debian-based image, so mounting
/// there leaves no mount point behind.
const CACHE_MOUNT: &str = "/var/cache";
/// Where the proxy-CA folder is mounted: `/mnt`, for the same reason.
const CA_MOUNT: &str = "/mnt";
/// Where the service's exported requirements are mounted for the install step.
/// Where the install step reads the service's export: beside its SBOM,
/// both a record of what the image holds.
fn requirements_in_image(service: &Service) -> String {
    format!("/usr/share/sbom/{}.requirements.txt", service.name)
}

/// The cache-mount id of a service's install step: per service, installer,
/// bytecode setting and Python version, and not per compose project, so every
/// checkout and scratch copy of a service on one engine reuses the same
/// downloads and venv (each build first syncs the venv to its own
/// requirements; `sharing=locked` lets one build at a time use it).
///
/// A builder stage's cache is its own (`-build`): wheels compiled there with
/// the build packages never let a build without them pass on this engine
/// alone.
pub fn venv_cache_id(stack: &Stack, service: &Service, installer: Installer) -> String {
    let bytecode = if service.manifest.bytecode { "" } else { "-nobytecode" };
    let build = if has_builder(service) { "-build" } else { "" };
    format!("{CACHE_ID_PREFIX}-{}-{installer}{bytecode}{build}-py{}", service.name, stack.manifest.python_version)
}

/// What every venv cache-mount id starts with (the tool's name, not a project's).
const CACHE_ID_PREFIX: &str = "pysvc-venv";

fn last_component(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or(path)
}
