//! `.env`: the uncommitted settings compose reads (credentials, image
//! overrides). The xtask creates it from `.env.example` with a random
//! password, and changes only the keys it is asked to, keeping comments and
//! every other line as the user wrote them. It holds the database password,
//! so it is written readable by its owner only (0600), and an existing one
//! that others can read is tightened when loaded.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct DotEnv {
    path: PathBuf,
    lines: Vec<String>,
    /// True when this call created the file (a new random password).
    pub created: bool,
}

impl DotEnv {
    /// Loads `.env`, creating it from `.env.example` (with a fresh random
    /// POSTGRES_PASSWORD) when it does not exist.
    pub fn load_or_create(root: &Path) -> Result<DotEnv> {
        let path = root.join(".env");
        if !path.exists() {
            let example = std::fs::read_to_string(root.join(".env.example"))
                .context("cannot read .env.example: run `cargo xtask gen`")?;
            let mut env =
                DotEnv { path: path.clone(), lines: example.lines().map(str::to_owned).collect(), created: true };
            env.set("POSTGRES_PASSWORD", &random_secret()?);
            env.save()?;
            eprintln!("created .env with a random POSTGRES_PASSWORD (git-ignored; edit it freely)");
            return Ok(env);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        tighten(&path)?;
        Ok(DotEnv { path, lines: text.lines().map(str::to_owned).collect(), created: false })
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.vars().remove(key)
    }

    pub fn vars(&self) -> BTreeMap<String, String> {
        self.lines
            .iter()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
            .collect()
    }

    pub fn set(&mut self, key: &str, value: &str) {
        let line = format!("{key}={value}");
        match self.lines.iter_mut().find(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key)) {
            Some(existing) => *existing = line,
            None => self.lines.push(line),
        }
    }

    pub fn save(&self) -> Result<()> {
        write_private(&self.path, &(self.lines.join("\n") + "\n"))
    }
}

/// Writes a file only its owner can read or write (0600), whole or not at
/// all: a temp file created with that mode, then a rename.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("xtask-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// An existing `.env` others can read (written by an older version, or
/// copied by hand) is made private.
fn tighten(path: &Path) -> Result<()> {
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
            .with_context(|| format!("cannot make {} private (chmod 600 it)", path.display()))?;
        eprintln!("{} holds a password and was readable by others ({mode:o}): now {:o}", path.display(), mode & 0o700);
    }
    Ok(())
}

pub fn random_secret() -> Result<String> {
    let mut bytes = [0u8; 18];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a password")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::DotEnv;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn env_holding_the_password_is_private() {
        let dir = std::env::temp_dir().join(format!("pysvc-dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".env.example"), "POSTGRES_PASSWORD=\nIMAGE_TAG=latest\n").unwrap();
        let mut env = DotEnv::load_or_create(&dir).unwrap();
        assert!(env.created);
        assert_eq!(mode(&dir.join(".env")), 0o600, "created");
        env.set("IMAGE_TAG", "v1");
        env.save().unwrap();
        assert_eq!(mode(&dir.join(".env")), 0o600, "rewritten");
        // One left readable by others is tightened when loaded.
        std::fs::set_permissions(dir.join(".env"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let env = DotEnv::load_or_create(&dir).unwrap();
        assert!(!env.created);
        assert_eq!(env.get("IMAGE_TAG").as_deref(), Some("v1"));
        assert_eq!(mode(&dir.join(".env")), 0o600, "tightened");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
