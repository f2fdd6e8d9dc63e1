//! The Dockerfile of a service: uv (or pip) in a builder stage, the venv and
//! the code in a runtime stage that runs as a non-root user.

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
            // non-2xx answer, a refused connection or a timeout.
            vec![
                "python".to_owned(),
                "-c".to_owned(),
                format!("import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=2)"),
            ]
        }
        Kind::Worker => service.manifest.health.command.clone().unwrap_or_default(),
    }
}

pub fn dockerfile(stack: &Stack, service: &Service, installer: Installer) -> String {
    let m = &service.manifest;
    let mut d = String::new();
    if let Some(syntax) = &stack.manifest.dockerfile_syntax {
        // Must be the very first line to take effect.
        let _ = writeln!(d, "# syntax={syntax}");
    }
    let _ = writeln!(d, "# {HEADER_NOTE}");
    let _ = writeln!(d, "# source: {} and {}", service.manifest_path(), manifest::STACK_FILE);
    let _ = writeln!(d, "# build context: the repository root, filtered by {}", service.dockerignore_path());
    let _ = writeln!(d, "# installer: {installer}");
    d.push('\n');
    let _ = writeln!(d, "ARG BASE_IMAGE={}", upstream_python_image(stack));
    if installer == Installer::Uv {
        let _ = writeln!(d, "ARG UV_IMAGE={}", upstream_uv_image(stack));
        d.push_str("\nFROM ${UV_IMAGE} AS uv\n");
    }
    d.push_str("\n# Builder: only the virtual environment leaves this stage.\n");
    d.push_str("FROM ${BASE_IMAGE} AS builder\n");
    if installer == Installer::Uv {
        d.push_str("ENV UV_COMPILE_BYTECODE=1 \\\n    UV_LINK_MODE=copy \\\n    UV_PYTHON_DOWNLOADS=0 \\\n    UV_PYTHON=python3\n");
        d.push_str("COPY --from=uv /uv /usr/local/bin/uv\n");
    }
    d.push_str("# Dependency layer: rebuilt when the lock file changes, never for a code change.\n");
    let _ = writeln!(d, "# A TLS-inspecting proxy's CA ({PROXY_CA_FILE}, git-ignored) is mounted for this step");
    d.push_str("# only; it never lands in a layer.\n");
    let cache = match installer {
        Installer::Uv => "/root/.cache/uv",
        Installer::Pip => "/root/.cache/pip",
    };
    let _ = writeln!(d, "RUN --mount=type=cache,target={cache} \\");
    let _ = writeln!(d, "    --mount=type=bind,source={},target=/tmp/requirements.lock \\", service.lock_path());
    let _ = writeln!(d, "    --mount=type=bind,source={PROXY_CA_DIR},target=/tmp/proxy-ca \\");
    match installer {
        Installer::Uv => {
            d.push_str("    if [ -s /tmp/proxy-ca/proxy-ca.crt ]; then export SSL_CERT_FILE=/tmp/proxy-ca/proxy-ca.crt; fi \\\n");
            let _ = writeln!(d, "    && uv venv {VENV} \\");
            let _ = writeln!(
                d,
                "    && uv pip install --python {VENV}/bin/python --require-hashes --no-deps -r /tmp/requirements.lock"
            );
        }
        Installer::Pip => {
            d.push_str(
                "    if [ -s /tmp/proxy-ca/proxy-ca.crt ]; then export PIP_CERT=/tmp/proxy-ca/proxy-ca.crt; fi \\\n",
            );
            let _ = writeln!(d, "    && python3 -m venv {VENV} \\");
            let _ = writeln!(d, "    && {VENV}/bin/pip install --disable-pip-version-check --require-hashes --no-deps -r /tmp/requirements.lock");
        }
    }
    d.push_str("\n# Runtime: the same base, the venv, the code, nothing else.\n");
    d.push_str("FROM ${BASE_IMAGE} AS runtime\n");
    if !m.runtime_packages.is_empty() {
        let mut packages = m.runtime_packages.clone();
        packages.sort();
        packages.dedup();
        // DL3008 (pin apt versions) is ignored on purpose: Debian drops old
        // versions from its mirrors with every security update, so pins break
        // builds; the base image tag pins the release instead.
        let _ = writeln!(
            d,
            "# hadolint ignore=DL3008\nRUN apt-get update \\\n    && apt-get install -y --no-install-recommends {} \\\n    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin",
            packages.join(" ")
        );
    }
    let _ = writeln!(
        d,
        "ENV PATH={VENV}/bin:$PATH \\\n    PYTHONPATH=/app \\\n    PYTHONUNBUFFERED=1 \\\n    PYTHONDONTWRITEBYTECODE=1"
    );
    d.push_str("WORKDIR /app\n");
    let _ = writeln!(d, "COPY --from=builder {VENV} {VENV}");
    for shared in &stack.manifest.shared {
        let _ = writeln!(d, "COPY {} /app/{}", shared.path, last_component(&shared.path));
    }
    for package in &m.packages {
        let _ = writeln!(d, "COPY {}/{package} /app/{}", service.dir, last_component(package));
    }
    let _ = writeln!(d, "USER {APP_UID}:{APP_UID}");
    if let Some(port) = m.port {
        let _ = writeln!(d, "EXPOSE {port}");
    }
    let _ = writeln!(
        d,
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\\n    CMD {}",
        json_list(&health_command(service))
    );
    let _ = writeln!(
        d,
        "LABEL org.opencontainers.image.title=\"{}\" \\\n      org.opencontainers.image.description=\"{}\"",
        service.name,
        m.description.replace('"', "'")
    );
    let _ = writeln!(d, "CMD {}", json_list(&m.command));
    d
}

fn last_component(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or(path)
}
