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
/// then the tool locks; nothing is written when uv cannot resolve.
pub fn lock(sh: &Shell, root: &Path, upgrade: bool, packages: &[String]) -> Result<()> {
    workspace::lock(sh, root, upgrade, packages)?;
    println!("locked {}", workspace::LOCK_FILE);
    let python = manifest::load_stack_manifest(root)?.python_version;
    for dir in TOOL_LOCKS {
        lock_tool(sh, root, dir, &python, upgrade)?;
    }
    Ok(())
}

/// Pins `dir/requirements.in` into `dir/requirements.lock` with hashes.
fn lock_tool(sh: &Shell, root: &Path, dir: &str, python: &str, upgrade: bool) -> Result<()> {
    let uv = tools::uv(sh)?;
    let input = root.join(dir).join("requirements.in");
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
    let header = format!("# {dir}: pinned by `cargo xtask lock` from requirements.in; do not edit.\n");
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
