//! Build contexts: a minimal, deterministic tar of exactly the files an image
//! needs (the same allow-list `gen` writes into the `.dockerignore`), and a
//! hash of those inputs that decides whether an image is stale.

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use walkdir::WalkDir;

use crate::gen::{EXCLUDED_DIR_NAMES, EXCLUDED_SUFFIXES};

/// A build context under construction.
#[derive(Default)]
pub struct ContextTar {
    /// (path in the tar, mode, contents), sorted before writing.
    entries: Vec<(String, u32, Vec<u8>)>,
    /// Entries that reach the build but do not make an image stale (the proxy CA).
    unhashed: Vec<(String, u32, Vec<u8>)>,
}

fn excluded(path: &Path) -> bool {
    path.components().any(|c| EXCLUDED_DIR_NAMES.contains(&c.as_os_str().to_string_lossy().as_ref()))
        || EXCLUDED_SUFFIXES.iter().any(|s| path.to_string_lossy().ends_with(s))
}

impl ContextTar {
    /// Adds a repository file or folder (recursively), minus excluded names.
    pub fn add_path(&mut self, root: &Path, rel: &str) -> Result<()> {
        let base = root.join(rel);
        anyhow::ensure!(base.exists(), "{rel} is part of a build context but does not exist");
        for entry in WalkDir::new(&base).sort_by_file_name() {
            let entry = entry.with_context(|| format!("cannot walk {rel}"))?;
            let path = entry.path();
            let rel_path = path.strip_prefix(root).expect("under root");
            if excluded(rel_path) || !entry.file_type().is_file() {
                continue;
            }
            let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let mode = if is_executable(&entry) { 0o755 } else { 0o644 };
            self.entries.push((rel_path.to_string_lossy().into_owned(), mode, data));
        }
        Ok(())
    }

    /// Adds a repository file or folder under another path in the tar.
    pub fn add_path_as(&mut self, root: &Path, rel: &str, as_path: &str) -> Result<()> {
        let mut inner = ContextTar::default();
        inner.add_path(root, rel)?;
        for (path, mode, data) in inner.entries {
            let suffix = path.strip_prefix(rel.trim_end_matches('/')).unwrap_or(&path);
            self.entries.push((format!("{}{suffix}", as_path.trim_end_matches('/')), mode, data));
        }
        Ok(())
    }

    /// Adds `path`, replacing an entry already there.
    pub fn replace_bytes(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.entries.retain(|(p, _, _)| p != path);
        self.add_bytes(path, mode, data);
    }

    pub fn add_bytes(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.entries.push((path.to_owned(), mode, data));
    }

    pub fn add_unhashed(&mut self, path: &str, data: Vec<u8>) {
        self.unhashed.push((path.to_owned(), 0o644, data));
    }

    /// sha256 over every hashed entry's path, mode and contents, plus `extra`
    /// (build arguments, base image ids).
    pub fn hash(&mut self, extra: &[String]) -> String {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut h = Sha256::new();
        for (path, mode, data) in &self.entries {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(mode.to_le_bytes());
            h.update((data.len() as u64).to_le_bytes());
            h.update(data);
        }
        for e in extra {
            h.update(e.as_bytes());
            h.update([0]);
        }
        format!("{:x}", h.finalize())
    }

    /// The tar body: fixed owners and mtimes, so it is reproducible.
    pub fn into_tar(mut self) -> Result<Vec<u8>> {
        self.entries.append(&mut self.unhashed);
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tar = tar::Builder::new(Vec::new());
        for (path, mode, data) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            tar.append_data(&mut header, path, data.as_slice())
                .with_context(|| format!("cannot add {path} to the context"))?;
        }
        Ok(tar.into_inner()?)
    }
}

#[cfg(unix)]
fn is_executable(entry: &walkdir::DirEntry) -> bool {
    use std::os::unix::fs::PermissionsExt;
    entry.metadata().map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(_entry: &walkdir::DirEntry) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_names_are_left_out() {
        assert!(excluded(Path::new("services/a/pkg/__pycache__/x.py")));
        assert!(excluded(Path::new("services/a/pkg/mod.pyc")));
        assert!(excluded(Path::new("services/a/tests/test_x.py")));
        assert!(!excluded(Path::new("services/a/pkg/mod.py")));
    }

    #[test]
    fn hash_ignores_unhashed_entries_and_insertion_order() {
        let mut a = ContextTar::default();
        a.add_bytes("b", 0o644, b"2".to_vec());
        a.add_bytes("a", 0o644, b"1".to_vec());
        let mut b = ContextTar::default();
        b.add_bytes("a", 0o644, b"1".to_vec());
        b.add_bytes("b", 0o644, b"2".to_vec());
        b.add_unhashed("docker/ca/proxy-ca.crt", b"CA".to_vec());
        assert_eq!(a.hash(&[]), b.hash(&[]));
        assert_ne!(a.hash(&["BASE=x".into()]), b.hash(&[]));
        let tar = b.into_tar().unwrap();
        assert!(tar.windows(2).any(|w| w == b"CA"));
    }

    #[test]
    fn paths_can_be_renamed_and_replaced() {
        let dir = std::env::temp_dir().join(format!("ctx-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("svc/pkg")).unwrap();
        std::fs::write(dir.join("svc/pkg/a.py"), "a").unwrap();
        let mut c = ContextTar::default();
        c.add_path_as(&dir, "svc/pkg", "src/svc/pkg").unwrap();
        c.add_bytes("lock", 0o644, b"old".to_vec());
        c.replace_bytes("lock", 0o644, b"new".to_vec());
        let paths: Vec<&str> = c.entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(paths, ["src/svc/pkg/a.py", "lock"]);
        assert_eq!(c.entries[1].2, b"new");
        std::fs::remove_dir_all(&dir).ok();
        let tar = c.into_tar().unwrap();
        assert!(!tar.windows(3).any(|w| w == b"old"));
    }
}
