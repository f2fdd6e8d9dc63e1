//! Pinning each service's `requirements.in` into a `requirements.lock` with
//! hashes, with the pinned uv; shared by `lock` and `new-service`. The lock
//! is universal (markers for every platform) and installable by both uv and
//! pip (`--require-hashes`).

use std::path::Path;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::util::write_atomic;
use crate::{manifest, tools};

/// Locks every service that has a `requirements.in` (or only `only`);
/// `upgrade` drops the current pins, which otherwise stay as preferences.
/// `python` is the version the lock is resolved for (`stack.yaml`).
pub fn lock_services(sh: &Shell, root: &Path, python: &str, only: Option<&str>, upgrade: bool) -> Result<()> {
    let uv = tools::uv(sh, root)?;
    let mut dirs: Vec<_> = std::fs::read_dir(root.join(manifest::SERVICES_DIR))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("requirements.in").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if only.is_some_and(|s| s != name) {
            continue;
        }
        let input = dir.join("requirements.in");
        let tmp = dir.join("requirements.lock.xtask-tmp");
        let upgrade = upgrade.then_some("--upgrade");
        let existing = dir.join("requirements.lock");
        if existing.is_file() && upgrade.is_none() {
            // Keep current pins as preferences: relocking is stable.
            std::fs::copy(&existing, &tmp)?;
        }
        cmd!(sh, "{uv} pip compile --quiet --universal --python-version {python} --generate-hashes --no-header {upgrade...} --output-file {tmp} {input}")
            .env("UV_CUSTOM_COMPILE_COMMAND", "cargo xtask lock")
            .run()
            .with_context(|| format!("uv could not lock {}", input.display()))?;
        let body = std::fs::read_to_string(&tmp)?;
        std::fs::remove_file(&tmp)?;
        let header = format!("# {name}: pinned by `cargo xtask lock` from requirements.in; do not edit.\n");
        write_atomic(&existing, &(header + &body))?;
        println!("locked {}", existing.strip_prefix(root).unwrap_or(&existing).display());
    }
    Ok(())
}
