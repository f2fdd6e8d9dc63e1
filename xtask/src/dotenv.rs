//! `.env`: the uncommitted settings compose reads (credentials, image
//! overrides). The xtask creates it from `.env.example` with a random
//! password, and changes only the keys it is asked to, keeping comments and
//! every other line as the user wrote them.

use std::collections::BTreeMap;
use std::io::Read;
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
        crate::gen::write_atomic(&self.path, &(self.lines.join("\n") + "\n"))
    }
}

pub fn random_secret() -> Result<String> {
    let mut bytes = [0u8; 18];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a password")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
