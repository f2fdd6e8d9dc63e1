//! The `.dockerignore` of a service: an allow-list of its build context.

use std::fmt::Write as _;

use super::{EXCLUDED_DIR_NAMES, EXCLUDED_SUFFIXES, HEADER_NOTE, PROXY_CA_DIR};
use crate::manifest::{Service, Stack};

/// Allow-list: only what this image copies or mounts. A change anywhere else
/// (another service, docs, the xtask) cannot invalidate this image's layers.
pub fn dockerignore(stack: &Stack, service: &Service) -> String {
    let mut d = format!("# {HEADER_NOTE}\n# context of {} (an allow-list)\n*\n", service.dockerfile_path());
    let _ = writeln!(d, "!{PROXY_CA_DIR}");
    let _ = writeln!(d, "!{}", super::sbom_path(service));
    for path in service.context_paths(&stack.manifest) {
        let _ = writeln!(d, "!{path}");
    }
    for dir in EXCLUDED_DIR_NAMES {
        let _ = writeln!(d, "**/{dir}");
    }
    for suffix in EXCLUDED_SUFFIXES {
        let _ = writeln!(d, "**/*{suffix}");
    }
    d
}
