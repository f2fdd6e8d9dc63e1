//! `cargo xtask new-service <name>`: scaffolds a uv workspace member that
//! builds and comes up healthy (pyproject, manifest, a typed Python package
//! with a real health signal, a pytest file); `--from <dir>` adopts an
//! existing service folder with a requirements.txt instead (its code kept as
//! it is, its requirements moved into a pyproject). Either way it then adds
//! the member to `uv.lock` (`uv lock`, every other pin kept) and regenerates.
//!
//! All or nothing: a new folder is assembled beside `services/` and moved in
//! with one rename (an adopted folder already there only gets new files); if
//! locking or generating fails (uv's message is shown), those files are
//! removed and `uv.lock` is put back as it was.

mod adopt;
mod templates;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::gen::Mode;
use crate::lockfile;
use crate::manifest;
use crate::prepared::Repo;
use crate::util::write_atomic;
use crate::workspace;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NewKind {
    Http,
    Worker,
}

/// Add a service (pyproject, manifest, code, tests) to the uv workspace that builds and comes up healthy.
#[derive(Args, Debug)]
pub struct NewService {
    /// Service name: lowercase letters, digits and '-' (with --from: the folder's name by default).
    pub name: Option<String>,
    #[arg(long, value_enum, default_value = "http")]
    pub kind: NewKind,
    /// Adopt this service folder (a requirements.txt and its code, e.g. main.py) instead of scaffolding one.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
}

/// What a new member is made of, before anything is written.
pub(crate) struct Member {
    pub name: String,
    /// Files to create in the service folder (relative paths); none exists yet.
    pub files: Vec<(String, String)>,
    /// A folder whose contents are copied in first (adoption from elsewhere).
    pub copy_from: Option<PathBuf>,
    /// The service folder is already there (adoption in place).
    pub in_place: bool,
    /// What to tell the user at the end.
    pub notes: Vec<String>,
}

impl NewService {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let root = &repo.root;
        let name = match (&self.name, &self.from) {
            (Some(name), _) => name.clone(),
            (None, Some(dir)) => dir
                .canonicalize()
                .with_context(|| format!("{} does not exist", dir.display()))?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .context("--from needs a folder")?,
            (None, None) => {
                bail!("name the service: `cargo xtask new-service <name>` (or adopt one with --from <dir>)")
            }
        };
        check_name(&name)?;
        let stack = repo.stack().context("the current stack must be valid before adding a service")?;
        let host_port = stack.services.iter().filter_map(|s| s.manifest.host_port).max().map_or(8000, |p| p + 1);
        let dir = root.join(manifest::SERVICES_DIR).join(&name);
        let member = match &self.from {
            None if dir.exists() => bail!("{} already exists (adopt it with --from {})", dir.display(), dir.display()),
            None => templates::member(&stack, &name, self.kind, host_port),
            Some(from) => adopt::member(&stack, from, &name, self.kind, host_port)?,
        };
        place(repo, &member)?;
        println!("added services/{name} ({:?}) to the uv workspace; uv.lock and generated files updated", self.kind);
        for note in &member.notes {
            println!("note: {note}");
        }
        println!("next: `uv sync`, `uv run pytest services/{name}`, then `cargo xtask up`");
        Ok(())
    }
}

/// A TOML basic string (`"..."`): quotes and backslashes escaped. The
/// values it gets (names, descriptions, PEP 508 requirements) have no
/// control characters: they come from validated names and single lines.
pub(crate) fn toml_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn check_name(name: &str) -> Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!("service name {name:?} must start with a letter and hold only lowercase letters, digits and '-'");
    }
    // It also names the image: no '-' at the end.
    manifest::validate::image_component(name).map_err(anyhow::Error::msg)?;
    if manifest::INFRA.contains(&name) {
        bail!("{name:?} is reserved for infrastructure");
    }
    Ok(())
}

/// Writes the member, locks it into the workspace and regenerates; on any
/// failure, undoes all of it.
fn place(repo: &Repo, member: &Member) -> Result<()> {
    let root = &repo.root;
    let dir = root.join(manifest::SERVICES_DIR).join(&member.name);
    let lock_path = root.join(workspace::LOCK_FILE);
    let old_lock = std::fs::read_to_string(&lock_path).ok();
    let finish = || -> Result<()> {
        write_member(&dir, member)?;
        workspace::lock(&repo.sh, root, false, &[])?;
        lockfile::generate(&repo.sh, root, Mode::Write)?;
        Ok(())
    };
    let Err(err) = finish() else { return Ok(()) };
    if member.in_place {
        for (rel, _) in &member.files {
            let _ = std::fs::remove_file(dir.join(rel));
        }
    } else {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(scratch_dir(&dir, member));
    }
    if let Some(old) = old_lock {
        if std::fs::read_to_string(&lock_path).ok().as_ref() != Some(&old) {
            write_atomic(&lock_path, &old)?;
        }
    }
    Err(err.context(format!("adding {} failed; nothing was kept (uv.lock is as it was)", member.name)))
}

fn scratch_dir(dir: &Path, member: &Member) -> PathBuf {
    dir.with_file_name(format!(".{}.xtask-new", member.name))
}

/// The member's folder: assembled beside `services/` and renamed into place,
/// or (in place) only its new files added.
fn write_member(dir: &Path, member: &Member) -> Result<()> {
    let target = if member.in_place {
        dir.to_owned()
    } else {
        let scratch = scratch_dir(dir, member);
        let _ = std::fs::remove_dir_all(&scratch);
        if let Some(from) = &member.copy_from {
            adopt::copy_code(from, &scratch)?;
        }
        scratch
    };
    for (rel, text) in &member.files {
        let path = target.join(rel);
        std::fs::create_dir_all(path.parent().expect("files live in folders"))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !member.in_place {
        std::fs::rename(&target, dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockfile::tests::workspace_fixture;

    /// A folder as the design documents have one: requirements.txt, main.py, a helper package.
    fn legacy_folder(requirements: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("legacy-{}-{}", std::process::id(), requirements.len()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("helpers")).unwrap();
        std::fs::write(dir.join("requirements.txt"), requirements).unwrap();
        std::fs::write(dir.join("main.py"), "from helpers import NAME\n").unwrap();
        std::fs::write(dir.join("helpers/__init__.py"), "NAME = 'legacy'\n").unwrap();
        std::fs::write(dir.join("Dockerfile"), "FROM python:3.11-slim\n").unwrap();
        dir
    }

    fn adopt(root: &Path, from: &Path) -> Result<()> {
        let repo = Repo::new(root.to_owned())?;
        NewService { name: Some("legacy".into()), kind: NewKind::Http, from: Some(from.to_owned()) }.run(&repo)
    }

    #[test]
    fn from_adopts_a_folder_into_the_workspace_and_its_generated_files() {
        let root = workspace_fixture(&xshell::Shell::new().unwrap());
        let from = legacy_folder("# nothing from an index: the fixture locks offline\n");
        adopt(&root, &from).unwrap();
        let dir = root.join("services/legacy");
        for kept in ["main.py", "helpers/__init__.py", "conftest.py", "pyproject.toml", "service.yaml"] {
            assert!(dir.join(kept).is_file(), "{kept} missing");
        }
        for dropped in ["requirements.txt", "Dockerfile"] {
            assert!(!dir.join(dropped).exists(), "{dropped} must not be carried over");
        }
        let stack = manifest::load(&root).unwrap();
        let legacy = stack.services.iter().find(|s| s.name == "legacy").unwrap();
        assert_eq!(legacy.manifest.packages, ["main.py", "helpers"]);
        assert_eq!(legacy.manifest.command[..2], ["uvicorn", "main:app"]);
        assert!(std::fs::read_to_string(root.join("uv.lock")).unwrap().contains("name = \"legacy\""));
        let dockerfile = std::fs::read_to_string(root.join("docker/legacy.Dockerfile")).unwrap();
        assert!(dockerfile.contains("COPY services/legacy/main.py /app/main.py\n"), "{dockerfile}");
        assert!(root.join("docker/legacy.requirements.txt").is_file());
        assert!(crate::lockfile::generate(&xshell::Shell::new().unwrap(), &root, Mode::Check).unwrap().is_empty());
        assert!(from.join("requirements.txt").is_file(), "the source folder is left as it was");
        std::fs::remove_dir_all(root).unwrap();
        std::fs::remove_dir_all(from).unwrap();
    }

    #[test]
    fn from_with_a_requirement_uv_cannot_find_keeps_nothing() {
        let root = workspace_fixture(&xshell::Shell::new().unwrap());
        let lock = std::fs::read_to_string(root.join("uv.lock")).unwrap();
        let from = legacy_folder("nothing-here @ file:///nonexistent/nothing-here\n");
        let err = format!("{:#}", adopt(&root, &from).unwrap_err());
        assert!(err.contains("adding legacy failed; nothing was kept"), "{err}");
        assert!(err.contains("Distribution not found at: file:///nonexistent/nothing-here"), "uv's message: {err}");
        assert!(!root.join("services/legacy").exists());
        assert!(!root.join("docker/legacy.Dockerfile").exists());
        assert_eq!(std::fs::read_to_string(root.join("uv.lock")).unwrap(), lock);
        std::fs::remove_dir_all(root).unwrap();
        std::fs::remove_dir_all(from).unwrap();
    }
}
