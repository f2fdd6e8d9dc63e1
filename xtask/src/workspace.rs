//! The uv workspace, driven with the pinned uv (`tools::uv`): the root
//! `pyproject.toml` makes every `services/*/pyproject.toml` a member, and
//! `uv.lock` pins them all. Here: locking (`uv lock`), the stale-lock check
//! (`uv lock --check`), the development environment (`uv sync --locked`,
//! `.venv`), and each service's own locked dependencies
//! (`uv export --frozen --package <service> --no-emit-workspace`): what its
//! image installs, and nothing of any other member.
//!
//! A service with `lock: own` in its manifest is a uv project of its own
//! instead: excluded from the workspace (the root pyproject's `exclude`
//! lists its folder), with its own `services/<name>/uv.lock` and `.venv`,
//! and the shared packages as path sources. Every function here treats its
//! folder as that service's root: lock, check, export and sync there.
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
/// without any dependency group. A service with its own lock exports in its
/// folder: without itself and without path dependencies (the shared
/// packages, copied as code too), with theirs.
pub fn export_args(service: &Service) -> Vec<String> {
    let head = ["export", "--frozen", "--format", "requirements.txt", "--no-header"].map(str::to_owned);
    let tail = match service.own_lock() {
        true => vec!["--no-emit-project".to_owned(), "--no-emit-local".to_owned(), "--no-default-groups".to_owned()],
        false => ["--no-emit-workspace", "--no-default-groups", "--package", &service.project.name]
            .map(str::to_owned)
            .to_vec(),
    };
    head.into_iter().chain(tail).collect()
}

/// The lock that pins `service`: `uv.lock`, or `services/<name>/uv.lock`.
pub fn lock_path(service: &Service) -> String {
    match service.own_lock() {
        true => format!("{}/{LOCK_FILE}", service.dir),
        false => LOCK_FILE.to_owned(),
    }
}

/// The folder uv runs in for `service`: the root, or its own folder.
fn project_dir(root: &Path, service: &Service) -> PathBuf {
    match service.own_lock() {
        true => root.join(&service.dir),
        false => root.to_owned(),
    }
}

/// What fixes a stale or missing own lock of `service`.
fn own_lock_fix(service: &Service) -> String {
    format!(
        "run `cargo xtask lock` (or `uv lock` in {}, then `cargo xtask gen`) and commit {}",
        service.dir,
        lock_path(service)
    )
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

/// Fails when a service's own lock (`lock: own`) is missing or no longer
/// matches its pyproject, with uv's message and the fix.
pub fn check_own_lock(sh: &Shell, root: &Path, service: &Service) -> Result<()> {
    if !root.join(lock_path(service)).is_file() {
        bail!(
            "{} is missing ({}: `lock: own`): {}",
            lock_path(service),
            service.manifest_path(),
            own_lock_fix(service)
        );
    }
    let args = ["lock", "--check", "--quiet"].map(str::to_owned);
    let fix = format!("{} is stale: {}", lock_path(service), own_lock_fix(service));
    uv(sh, &project_dir(root, service), &args, &fix).map(drop)
}

/// Every lock of the stack is fresh and the workspace holds exactly the
/// services without a lock of their own.
pub fn check_locks(sh: &Shell, stack: &Stack) -> Result<()> {
    check_members(stack)?;
    check_lock(sh, &stack.root)?;
    for service in stack.services.iter().filter(|s| s.own_lock()) {
        check_own_lock(sh, &stack.root, service)?;
    }
    Ok(())
}

/// Every service's export, after checking that the locks are fresh.
pub fn exports(sh: &Shell, stack: &Stack) -> Result<Exports> {
    check_locks(sh, stack)?;
    let mut exports = Exports::default();
    for service in &stack.services {
        exports.insert(&service.name, export(sh, &stack.root, service)?);
    }
    Ok(exports)
}

/// One service's export from its lock as it is.
pub fn export(sh: &Shell, root: &Path, service: &Service) -> Result<String> {
    let fix = match service.own_lock() {
        true => format!("{} has `lock: own`: {}", service.manifest_path(), own_lock_fix(service)),
        false => format!(
            "is {} a workspace member? Its pyproject.toml must be under services/ (the root {ROOT_PYPROJECT} \
             includes services/*), named {:?}",
            service.dir, service.project.name
        ),
    };
    let mut args = export_args(service);
    args.push("--quiet".to_owned());
    uv(sh, &project_dir(root, service), &args, &fix)
}

/// The folders the root pyproject's `[tool.uv.workspace] exclude` lists,
/// with the line of `exclude` (a one-line or multi-line array of strings).
pub fn excluded(root: &Path) -> Result<(Vec<String>, usize)> {
    let text = std::fs::read_to_string(root.join(ROOT_PYPROJECT))
        .with_context(|| format!("cannot read {ROOT_PYPROJECT}: it declares the uv workspace"))?;
    let Some((line, start)) = exclude_array(&text) else { return Ok((Vec::new(), 0)) };
    let end = text[start..].find(']').map_or(text.len(), |e| start + e);
    let items = text[start..end].split(',').filter_map(|item| {
        let item = item.lines().map(|l| l.split('#').next().unwrap_or("")).collect::<String>();
        let item = item.trim().trim_matches(['"', '\'']);
        (!item.is_empty()).then(|| item.to_owned())
    });
    Ok((items.collect(), line))
}

/// Where `exclude = [` of `[tool.uv.workspace]` is: its 1-based line and
/// the byte offset just after its `[`.
fn exclude_array(text: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    let mut in_workspace = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && !trimmed.starts_with("[[") && trimmed.ends_with(']') {
            in_workspace = trimmed == "[tool.uv.workspace]";
        } else if in_workspace && trimmed.starts_with("exclude") {
            return line.find('[').map(|b| (i + 1, offset + b + 1));
        }
        offset += line.len();
    }
    None
}

/// Adds `dir` to the root pyproject's workspace `exclude` (a service that
/// keeps its own lock); the text before, to put back on failure.
pub fn exclude_from_workspace(root: &Path, dir: &str) -> Result<String> {
    let path = root.join(ROOT_PYPROJECT);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {ROOT_PYPROJECT}"))?;
    if excluded(root)?.0.iter().any(|d| d == dir) {
        return Ok(text);
    }
    let Some((_, start)) = exclude_array(&text) else {
        bail!("{ROOT_PYPROJECT} has no `exclude = [...]` in [tool.uv.workspace]: add `exclude = [{dir:?}]` there");
    };
    let end = text[start..].find(']').map_or(text.len(), |e| start + e);
    let before = text[start..end].trim_end();
    let sep = if before.is_empty() || before.ends_with(',') { "" } else { ", " };
    let new = format!("{}{sep}{dir:?}{}", &text[..start + before.len()], &text[end..]);
    std::fs::write(&path, new).with_context(|| format!("cannot write {ROOT_PYPROJECT}"))?;
    Ok(text)
}

/// The workspace holds exactly the services without a lock of their own:
/// each `lock: own` folder is in the root pyproject's `exclude`, and no
/// `lock: workspace` one is.
pub fn check_members(stack: &Stack) -> Result<()> {
    let (excluded, line) = excluded(&stack.root)?;
    for s in &stack.services {
        let out = excluded.contains(&s.dir);
        if s.own_lock() && !out {
            bail!(
                "{}: `lock: own`, but {ROOT_PYPROJECT}:{line}: [tool.uv.workspace] exclude does not list {:?}, so \
                 uv would lock it with the workspace: add {:?} to exclude, then `cargo xtask lock`",
                s.manifest_path(),
                s.dir,
                s.dir
            );
        }
        if !s.own_lock() && out {
            bail!(
                "{}: pinned by the workspace (no `lock: own`), but {ROOT_PYPROJECT}:{line}: [tool.uv.workspace] \
                 exclude lists {:?}: remove it from exclude (or set `lock: own`), then `cargo xtask lock`",
                s.manifest_path(),
                s.dir
            );
        }
    }
    Ok(())
}

/// `uv lock`'s arguments: every pin kept unless `upgrade`, or for `packages`.
fn lock_args(upgrade: bool, packages: &[String]) -> Vec<String> {
    let mut args = vec!["lock".to_owned(), "--quiet".to_owned()];
    if upgrade {
        args.push("--upgrade".to_owned());
    }
    for package in packages {
        args.extend(["--upgrade-package".to_owned(), package.clone()]);
    }
    args
}

/// `uv lock` (every pin kept unless `upgrade`, or for `packages`): on a
/// dependency that cannot resolve, uv's message, and uv.lock is left as it was.
pub fn lock(sh: &Shell, root: &Path, upgrade: bool, packages: &[String]) -> Result<()> {
    if !root.join(ROOT_PYPROJECT).is_file() {
        bail!("{ROOT_PYPROJECT} is missing at the repository root: it declares the uv workspace ([tool.uv.workspace])");
    }
    let args = lock_args(upgrade, packages);
    uv(sh, root, &args, "uv.lock was not changed; fix the dependency in the pyproject.toml named above").map(drop)
}

/// `uv lock` in the folder of every service with its own lock (as
/// [`lock`]: pins kept unless `upgrade` or named in `packages`).
pub fn lock_own(sh: &Shell, stack: &Stack, upgrade: bool, packages: &[String]) -> Result<()> {
    check_members(stack)?;
    for service in stack.services.iter().filter(|s| s.own_lock()) {
        let args = lock_args(upgrade, packages);
        let fix = format!(
            "{} was not changed; fix the dependency in {} (it keeps its own lock)",
            lock_path(service),
            service.pyproject_path()
        );
        uv(sh, &project_dir(&stack.root, service), &args, &fix)?;
    }
    Ok(())
}

/// `uv sync --locked` in the folder of a service with its own lock: its
/// `.venv` (its dependencies, the shared packages editable, its `dev`
/// group); its Python.
pub fn sync_own(sh: &Shell, root: &Path, service: &Service) -> Result<PathBuf> {
    check_own_lock(sh, root, service)?;
    let dir = project_dir(root, service);
    let args = ["sync", "--locked", "--quiet"].map(str::to_owned);
    uv(sh, &dir, &args, &own_lock_fix(service))?;
    Ok(dir.join(VENV_DIR).join("bin/python"))
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

/// [`add`] for a service: in its own folder (`uv add --no-sync`) when it
/// keeps its own lock.
pub fn add_to(sh: &Shell, root: &Path, service: &Service, dependency: &str) -> Result<()> {
    if !service.own_lock() {
        return add(sh, root, &service.project.name, dependency);
    }
    let args = ["add", "--no-sync", "--quiet", dependency].map(str::to_owned);
    uv(sh, &project_dir(root, service), &args, "nothing was changed").map(drop)
}

/// Copies what uv reads to lock the workspace (the root pyproject, uv.lock,
/// every member's pyproject) from `root` into `to` (emptied first): a place
/// to try a change without touching the checkout.
pub fn copy_project_files(root: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut files = vec![ROOT_PYPROJECT.to_owned(), LOCK_FILE.to_owned()];
    for entry in std::fs::read_dir(root.join(crate::manifest::SERVICES_DIR))?.flatten() {
        // A member's pyproject, and the lock of a service that keeps its own.
        for file in ["pyproject.toml", LOCK_FILE] {
            let rel = format!("{}/{}/{file}", crate::manifest::SERVICES_DIR, entry.file_name().to_string_lossy());
            if root.join(&rel).is_file() {
                files.push(rel);
            }
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
