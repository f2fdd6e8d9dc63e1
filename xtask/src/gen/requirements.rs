//! A service's exported requirements (`docker/<service>.requirements.txt`):
//! its own locked dependencies from `uv.lock` (or its own lock) with hashes, as uv exports
//! them (`workspace::export`), under a header that says where they come from.
//! What its image installs, with uv or with pip; committed, so the
//! Dockerfiles build with plain `docker build` and a pip-only rollback has
//! its file.

use std::fmt::Write as _;

use super::HEADER_NOTE;
use crate::manifest::Service;
use crate::workspace::{self, Exports};

/// The file: the header, then uv's export, byte for byte.
pub fn requirements(service: &Service, exports: &Exports) -> String {
    let mut d = String::new();
    let _ = writeln!(d, "# {HEADER_NOTE}");
    let _ = writeln!(d, "# source: {} (pinned in {}) via", service.pyproject_path(), workspace::lock_path(service));
    let place = if service.own_lock() { format!("(in {}) ", service.dir) } else { String::new() };
    let _ = writeln!(d, "#   {place}uv {}", workspace::export_args(service).join(" "));
    d.push_str("# The service's own dependencies, locked, with hashes: what its image installs\n");
    d.push_str("# (uv pip sync --require-hashes, or pip install --require-hashes --no-deps -r).\n");
    d.push_str("# Workspace members (the service, shared packages) are copied into the image as code.\n");
    d.push_str(exports.get(&service.name));
    d
}
