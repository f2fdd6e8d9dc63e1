//! The uv workspace, driven with the pinned uv (`tools::uv`): the root
//! `pyproject.toml` makes every `services/*/pyproject.toml` a member, and
//! `uv.lock` pins them all. Here: locking (`uv lock`), the stale-lock check
//! (`uv lock --check`), the development environment (`uv sync --locked`,
//! `.venv`), and each service's own locked dependencies
//! (`uv export --frozen --package <service> --no-emit-workspace`): what its
//! image installs, and nothing of any other member.
//!
//! uv's own messages are passed on as they are; nothing here writes a file
//! but uv itself, which writes `uv.lock` only after a resolution succeeded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::manifest::{Service, Stack};
use crate::tools;

pub const ROOT_PYPROJECT: &str = "pyproject.toml";
pub const LOCK_FILE: &str = "uv.lock";
/// The development environment `uv sync` makes at the root (uv's default).
pub const VENV_DIR: &str = ".venv";

/// What fixes a stale or missing lock.
pub const LOCK_FIX: &str =
    "run `cargo xtask lock` (`uv lock` with the pinned uv, then `cargo xtask gen`) and commit uv.lock";

/// Each service's exported requirements: name -> the `uv export` text
/// (pins with hashes and markers, no workspace member, no dev group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exports(BTreeMap<String, String>);

impl Exports {
    /// The export of `service` (empty when it has none, e.g. in a fixture).
    pub fn get(&self, service: &str) -> &str {
        self.0.get(service).map(String::as_str).unwrap_or_default()
    }

    pub fn insert(&mut self, service: &str, text: String) {
        self.0.insert(service.to_owned(), text);
    }
}

/// The arguments of one service's export: its own dependencies, locked,
/// without the workspace members (copied into the image as code) and
/// without any dependency group.
pub fn export_args(service: &str) -> Vec<String> {
    ["export", "--frozen", "--format", "requirements.txt", "--no-header", "--no-emit-workspace"]
        .into_iter()
        .map(str::to_owned)
        .chain(["--no-default-groups".to_owned(), "--package".to_owned(), service.to_owned()])
        .collect()
}

/// A uv command in `root`; fails with uv's own message (its stderr) and `fix`.
fn uv(sh: &Shell, root: &Path, args: &[String], fix: &str) -> Result<String> {
    let uv = tools::uv(sh)?;
    let _dir = sh.push_dir(root);
    let out = cmd!(sh, "{uv} {args...}")
        .env("UV_NO_PROGRESS", "1")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run {}", uv.display()))?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        bail!("`uv {}` failed in {}:\n{message}\n{fix}", args.join(" "), root.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The root files the workspace needs: its pyproject and its lock.
fn require_files(root: &Path) -> Result<()> {
    if !root.join(ROOT_PYPROJECT).is_file() {
        bail!("{ROOT_PYPROJECT} is missing at the repository root: it declares the uv workspace ([tool.uv.workspace])");
    }
    if !root.join(LOCK_FILE).is_file() {
        bail!("{LOCK_FILE} is missing: {LOCK_FIX}");
    }
    Ok(())
}

/// Fails when `uv.lock` no longer matches the pyprojects (a dependency
/// added, removed or changed without `uv lock`), with uv's message and the fix.
pub fn check_lock(sh: &Shell, root: &Path) -> Result<()> {
    require_files(root)?;
    let args = ["lock", "--check", "--quiet"].map(str::to_owned);
    uv(sh, root, &args, &format!("uv.lock is stale: {LOCK_FIX}")).map(drop)
}

/// Every service's export, after checking that the lock is fresh.
pub fn exports(sh: &Shell, stack: &Stack) -> Result<Exports> {
    check_lock(sh, &stack.root)?;
    let mut exports = Exports::default();
    for service in &stack.services {
        exports.insert(&service.name, export(sh, &stack.root, service)?);
    }
    Ok(exports)
}

/// One service's export from the lock as it is.
pub fn export(sh: &Shell, root: &Path, service: &Service) -> Result<String> {
    let fix = format!(
        "is {} a workspace member? Its pyproject.toml must be under services/ (the root {ROOT_PYPROJECT} \
         includes services/*), named {:?}",
        service.dir, service.project.name
    );
    let mut args = export_args(&service.project.name);
    args.push("--quiet".to_owned());
    uv(sh, root, &args, &fix)
}

/// `uv lock` (every pin kept unless `upgrade`, or for `packages`): on a
/// dependency that cannot resolve, uv's message, and uv.lock is left as it was.
pub fn lock(sh: &Shell, root: &Path, upgrade: bool, packages: &[String]) -> Result<()> {
    if !root.join(ROOT_PYPROJECT).is_file() {
        bail!("{ROOT_PYPROJECT} is missing at the repository root: it declares the uv workspace ([tool.uv.workspace])");
    }
    let mut args = vec!["lock".to_owned(), "--quiet".to_owned()];
    if upgrade {
        args.push("--upgrade".to_owned());
    }
    for package in packages {
        args.extend(["--upgrade-package".to_owned(), package.clone()]);
    }
    uv(sh, root, &args, "uv.lock was not changed; fix the dependency in the pyproject.toml named above").map(drop)
}

/// `uv sync --locked`, as a developer runs it: the root `.venv` with every
/// member (editable; the root is virtual, so all of them) and every `dev`
/// group, exactly as locked; its Python.
pub fn sync(sh: &Shell, root: &Path) -> Result<PathBuf> {
    require_files(root)?;
    let args = ["sync", "--locked", "--quiet"].map(str::to_owned);
    uv(sh, root, &args, &format!("if uv.lock is stale: {LOCK_FIX}"))?;
    Ok(root.join(VENV_DIR).join("bin/python"))
}

/// `uv add --no-sync --package <package> <dependency>`: what a developer
/// runs to add a dependency (the pyproject edited, the lock updated).
pub fn add(sh: &Shell, root: &Path, package: &str, dependency: &str) -> Result<()> {
    let args = ["add", "--no-sync", "--quiet", "--package", package, dependency].map(str::to_owned);
    uv(sh, root, &args, "nothing was changed").map(drop)
}

/// Copies what uv reads to lock the workspace (the root pyproject, uv.lock,
/// every member's pyproject) from `root` into `to` (emptied first): a place
/// to try a change without touching the checkout.
pub fn copy_project_files(root: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut files = vec![ROOT_PYPROJECT.to_owned(), LOCK_FILE.to_owned()];
    for entry in std::fs::read_dir(root.join(crate::manifest::SERVICES_DIR))?.flatten() {
        let rel = format!("{}/{}/pyproject.toml", crate::manifest::SERVICES_DIR, entry.file_name().to_string_lossy());
        if root.join(&rel).is_file() {
            files.push(rel);
        }
    }
    for rel in files {
        let target = to.join(&rel);
        std::fs::create_dir_all(target.parent().unwrap_or(to))?;
        std::fs::copy(root.join(&rel), &target).with_context(|| format!("cannot copy {rel}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the workspace's project files is a workspace uv can export
    /// from: the same text as from the checkout (bench-build's "what if"
    /// starts from such a copy).
    #[test]
    fn a_copy_of_the_project_files_exports_like_the_checkout() {
        let root = crate::project_root();
        let sh = Shell::new().unwrap();
        let stack = crate::manifest::load(&root).unwrap();
        let copy = std::env::temp_dir().join(format!("workspace-copy-{}", std::process::id()));
        copy_project_files(&root, &copy).unwrap();
        assert!(!copy.join("services/api-server/api_server").exists(), "pyprojects and the lock only");
        for service in &stack.services {
            assert_eq!(export(&sh, &copy, service).unwrap(), export(&sh, &root, service).unwrap());
        }
        std::fs::remove_dir_all(copy).unwrap();
    }
}
