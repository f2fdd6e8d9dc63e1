//! `cargo xtask lock` and `new-service` share this: the uv workspace's lock
//! (`workspace::lock`, with the pinned uv), the tool pins that live outside
//! it, and regenerating every file that depends on the lock.
//!
//! The OpenAPI fuzzer (`services/fuzz`) is a tool, not a workspace member:
//! its pins must never hold back a service's, so it keeps its own hashed
//! lock, pinned with `uv pip compile` (installable by uv and pip).

use std::path::Path;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::gen::{self, k8s, Mode};
use crate::util::write_atomic;
use crate::{manifest, tools, workspace};

/// Tool folders with a `requirements.in` pinned into `requirements.lock`.
pub const TOOL_LOCKS: [&str; 1] = ["services/fuzz"];

/// `uv lock` (keeping every pin unless `upgrade`, or those of `packages`),
/// in the workspace and in each service with its own lock, then the tool
/// locks; a lock is not written when uv cannot resolve it.
pub fn lock(sh: &Shell, root: &Path, upgrade: bool, packages: &[String]) -> Result<()> {
    let stack = manifest::load(root)?;
    workspace::check_members(&stack)?;
    workspace::lock(sh, root, upgrade, packages)?;
    println!("locked {}", workspace::LOCK_FILE);
    workspace::lock_own(sh, &stack, upgrade, packages)?;
    for service in stack.services.iter().filter(|s| s.own_lock()) {
        println!("locked {} (lock: own)", workspace::lock_path(service));
    }
    let python = stack.manifest.python_version;
    for dir in TOOL_LOCKS {
        lock_tool(sh, root, dir, &python, upgrade)?;
    }
    Ok(())
}

/// Pins `dir/requirements.in` (if there is one) into `dir/requirements.lock` with hashes.
fn lock_tool(sh: &Shell, root: &Path, dir: &str, python: &str, upgrade: bool) -> Result<()> {
    let input = root.join(dir).join("requirements.in");
    if !input.is_file() {
        return Ok(()); // a repository without that tool
    }
    let uv = tools::uv(sh)?;
    let existing = root.join(dir).join("requirements.lock");
    let tmp = existing.with_extension("lock.xtask-tmp");
    if existing.is_file() && !upgrade {
        // Keep current pins as preferences: relocking is stable.
        std::fs::copy(&existing, &tmp)?;
    }
    let upgrade = upgrade.then_some("--upgrade");
    cmd!(sh, "{uv} pip compile --quiet --universal --python-version {python} --generate-hashes --no-header {upgrade...} --output-file {tmp} {input}")
        .env("UV_CUSTOM_COMPILE_COMMAND", "cargo xtask lock")
        .run()
        .with_context(|| format!("uv could not lock {}", input.display()))?;
    let body = std::fs::read_to_string(&tmp)?;
    std::fs::remove_file(&tmp)?;
    let name = dir.rsplit('/').next().unwrap_or(dir);
    let header = format!("# {name}: pinned by `cargo xtask lock` from requirements.in; do not edit.\n");
    write_atomic(&existing, &(header + &body))?;
    println!("locked {dir}/requirements.lock");
    Ok(())
}

/// `cargo xtask gen`: every generated file from the manifests and the
/// exports of `uv.lock` (a stale lock fails with its fix), written or (check)
/// compared; the stale ones. Writing also makes the dev overlay's
/// credentials file once.
pub fn generate(sh: &Shell, root: &Path, mode: Mode) -> Result<Vec<String>> {
    let stack = manifest::load(root)?;
    let exports = workspace::exports(sh, &stack)?;
    let changed = gen::ensure_files(root, &gen::render_all(&stack, &exports), mode)?;
    if mode == Mode::Write {
        k8s::ensure_secret_env(root)?;
    }
    Ok(changed)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::manifest::tests::{fixture, pyproject, write};

    /// The manifest fixture as a uv workspace (its members have no
    /// dependencies, so uv locks it without an index), locked and generated.
    pub(crate) fn workspace_fixture(sh: &Shell) -> PathBuf {
        let root = fixture();
        write(
            &root,
            "pyproject.toml",
            "[tool.uv.workspace]\nmembers = [\"services/*\"]\nexclude = [\"services/database\", \"services/shared\"]\n",
        );
        workspace::lock(sh, &root, false, &[]).unwrap();
        generate(sh, &root, Mode::Write).unwrap();
        root
    }

    fn read(root: &Path, rel: &str) -> String {
        std::fs::read_to_string(root.join(rel)).unwrap()
    }

    #[test]
    fn a_stale_lock_is_caught_by_gen_check_with_the_fix_and_gen_writes_nothing() {
        let sh = Shell::new().unwrap();
        let root = workspace_fixture(&sh);
        assert!(generate(&sh, &root, Mode::Check).unwrap().is_empty());
        assert!(read(&root, "docker/worker.requirements.txt").contains("--package worker\n"));
        // A pyproject changed, uv.lock did not.
        write(&root, "services/worker/pyproject.toml", &pyproject("worker").replace("0.1.0", "0.2.0"));
        std::fs::remove_file(root.join("docker/web.Dockerfile")).unwrap();
        for mode in [Mode::Check, Mode::Write] {
            let err = format!("{:#}", generate(&sh, &root, mode).unwrap_err());
            assert!(err.contains("The lockfile at `uv.lock` needs to be updated"), "uv's own message: {err}");
            assert!(err.contains("uv.lock is stale: run `cargo xtask lock`"), "the fix: {err}");
        }
        assert!(!root.join("docker/web.Dockerfile").exists(), "gen wrote nothing with a stale lock");
        lock(&sh, &root, false, &[]).unwrap();
        generate(&sh, &root, Mode::Write).unwrap();
        assert!(generate(&sh, &root, Mode::Check).unwrap().is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }

    /// The fixture with a third service, `solo`, that keeps its own lock and
    /// depends on the shared package (`common`, a path source).
    fn own_lock_fixture(sh: &Shell) -> PathBuf {
        let root = workspace_fixture(sh);
        std::fs::create_dir_all(root.join("services/solo/solo_pkg")).unwrap();
        write(&root, "services/shared/common/__init__.py", "NAME = 'common'\n");
        let backend = "\n[build-system]\nrequires = [\"uv_build>=0.13.9,<0.14\"]\nbuild-backend = \"uv_build\"\n\
                       [tool.uv.build-backend]\nmodule-root = \"\"\n";
        write(&root, "services/shared/pyproject.toml", &(pyproject("common") + backend));
        let solo = pyproject("solo").replace("[]", "[\"common\"]")
            + "\n[tool.uv]\npackage = false\n\n[tool.uv.sources]\ncommon = { path = \"../shared\", editable = true }\n";
        write(&root, "services/solo/pyproject.toml", &solo);
        let manifest = crate::manifest::tests::WORKER.replace("worker_pkg", "solo_pkg") + "lock: own\n";
        write(&root, "services/solo/service.yaml", &manifest);
        root
    }

    #[test]
    fn a_service_with_its_own_lock_is_locked_checked_exported_and_synced_on_its_own() {
        let sh = Shell::new().unwrap();
        let root = own_lock_fixture(&sh);
        let web_export = read(&root, "docker/web.requirements.txt");
        // Not excluded from the workspace yet: refused with the fix.
        let err =
            format!("{:#}", lock(&sh, &root, false, &[]).and_then(|()| generate(&sh, &root, Mode::Check)).unwrap_err());
        assert!(err.contains("services/solo/service.yaml: `lock: own`, but pyproject.toml:3: [tool.uv.workspace] exclude does not list \"services/solo\""), "{err}");
        workspace::exclude_from_workspace(&root, "services/solo").unwrap();
        let err = format!("{:#}", generate(&sh, &root, Mode::Check).unwrap_err());
        assert!(err.contains("services/solo/uv.lock is missing"), "{err}");
        lock(&sh, &root, false, &[]).unwrap();
        generate(&sh, &root, Mode::Write).unwrap();
        assert!(!read(&root, "uv.lock").contains("name = \"solo\""), "not in the workspace's lock");
        assert!(read(&root, "services/solo/uv.lock").contains("name = \"common\""));
        let export = read(&root, "docker/solo.requirements.txt");
        assert!(export.contains("(pinned in services/solo/uv.lock) via\n#   (in services/solo) uv export"), "{export}");
        assert!(
            !export.contains("common") && !export.contains("-e "),
            "shared code is copied, not installed: {export}"
        );
        assert_eq!(read(&root, "docker/web.requirements.txt"), web_export, "web's image inputs unchanged");
        // Its venv: the shared package editable.
        let stack = crate::manifest::load(&root).unwrap();
        let solo = stack.services.iter().find(|s| s.name == "solo").unwrap();
        let python = workspace::sync_own(&sh, &root, solo).unwrap();
        assert!(python.starts_with(root.join("services/solo/.venv")));
        cmd!(sh, "{python} -c 'import common; assert common.NAME == \"common\"'").run().unwrap();
        // A copy of the project files (bench-build's "what if") carries its lock.
        let copy = root.join("target/copy");
        workspace::copy_project_files(&root, &copy).unwrap();
        assert_eq!(workspace::export(&sh, &copy, solo).unwrap(), workspace::export(&sh, &root, solo).unwrap());
        // Its pyproject changed, its lock did not: uv's message and the fix.
        write(
            &root,
            "services/solo/pyproject.toml",
            &read(&root, "services/solo/pyproject.toml").replace("0.1.0", "0.2.0"),
        );
        let err = format!("{:#}", generate(&sh, &root, Mode::Check).unwrap_err());
        assert!(err.contains("The lockfile at `uv.lock` needs to be updated"), "uv's own message: {err}");
        assert!(
            err.contains("services/solo/uv.lock is stale: run `cargo xtask lock` (or `uv lock` in services/solo"),
            "{err}"
        );
        lock(&sh, &root, false, &[]).unwrap();
        assert!(generate(&sh, &root, Mode::Check).unwrap().is_empty());
        // A workspace service excluded by mistake is named too.
        workspace::exclude_from_workspace(&root, "services/web").unwrap();
        let err = format!("{:#}", generate(&sh, &root, Mode::Check).unwrap_err());
        assert!(err.contains("services/web/service.yaml: pinned by the workspace (no `lock: own`)"), "{err}");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_dependency_that_cannot_resolve_shows_uvs_message_and_changes_nothing() {
        let sh = Shell::new().unwrap();
        let root = workspace_fixture(&sh);
        let before = read(&root, "uv.lock");
        // A requirement uv cannot find (offline: a path that is not there).
        let missing = "nothing-here @ file:///nonexistent/nothing-here";
        write(&root, "services/worker/pyproject.toml", &pyproject("worker").replace("[]", &format!("[{missing:?}]")));
        let err = format!("{:#}", lock(&sh, &root, false, &[]).unwrap_err());
        assert!(err.contains("Distribution not found at: file:///nonexistent/nothing-here"), "uv's own message: {err}");
        assert!(err.contains("uv.lock was not changed"), "{err}");
        assert_eq!(read(&root, "uv.lock"), before);
        std::fs::remove_dir_all(root).unwrap();
    }
}
