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
    /// Keep its own lock (service.yaml `lock: own`): a uv project of its own with services/<name>/uv.lock
    /// and .venv, for pins that clash with another service's.
    #[arg(long)]
    pub own_lock: bool,
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
    /// It keeps its own lock (`lock: own`) instead of the workspace's.
    pub own_lock: bool,
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
        let mut member = match &self.from {
            None if dir.exists() => bail!("{} already exists (adopt it with --from {})", dir.display(), dir.display()),
            None => templates::member(&stack, &name, self.kind, host_port),
            Some(from) => adopt::member(&stack, from, &name, self.kind, host_port)?,
        };
        if self.own_lock {
            own_lock(&stack, &mut member)?;
        }
        place(repo, &member)?;
        if member.own_lock {
            println!(
                "added services/{name} ({:?}) with its own lock (service.yaml `lock: own`): services/{name}/uv.lock; \
                 the root pyproject.toml excludes it from the workspace; generated files updated",
                self.kind
            );
        } else {
            println!(
                "added services/{name} ({:?}) to the uv workspace; uv.lock and generated files updated",
                self.kind
            );
        }
        for note in &member.notes {
            println!("note: {note}");
        }
        match member.own_lock {
            true => println!("next: `cd services/{name} && uv sync && uv run pytest`, then `cargo xtask up`"),
            false => println!("next: `uv sync`, `uv run pytest services/{name}`, then `cargo xtask up`"),
        }
        Ok(())
    }
}

/// A TOML basic string (`"..."`): quotes and backslashes escaped. The
/// values it gets (names, descriptions, PEP 508 requirements) have no
/// control characters: they come from validated names and single lines.
pub(crate) fn toml_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Turns `member` into a service that keeps its own lock: `lock: own` in its
/// manifest; in its pyproject, the test tools (the root's `dev` group does
/// not reach it), the shared packages as editable path sources, and a
/// pytest table of its own (`uv run pytest` in its folder is rooted there).
fn own_lock(stack: &manifest::Stack, member: &mut Member) -> Result<()> {
    let name = member.name.clone();
    let shared = shared_projects(stack)?;
    let mut sources = String::new();
    for (package, project) in &shared {
        let rel = match project.strip_prefix(&format!("{}/", manifest::SERVICES_DIR)) {
            Some(sibling) => format!("../{sibling}"),
            None => format!("../../{project}"),
        };
        sources.push_str(&format!("{package} = {{ path = {}, editable = true }}\n", toml_string(&rel)));
    }
    for (rel, text) in &mut member.files {
        if rel == manifest::SERVICE_FILE {
            text.push_str(&format!(
                "# Pinned by its own lock, services/{name}/uv.lock (a uv project of its own), not the workspace's.\n\
                 lock: own\n"
            ));
        } else if rel == manifest::PYPROJECT_FILE {
            let tools = "    \"mypy\",\n    \"pytest\",\n";
            match text.find("[dependency-groups]\ndev = [\n") {
                Some(at) => text.insert_str(at + "[dependency-groups]\ndev = [\n".len(), tools),
                None => text.push_str(&format!("\n[dependency-groups]\ndev = [\n{tools}]\n")),
            }
            // An adopted member's workspace sources give way to the path sources.
            if let Some(at) = text.find("[tool.uv.sources]\n") {
                let end = text[at..].find("\n\n").map_or(text.len(), |e| at + e + 2);
                text.replace_range(at..end, "");
            }
            text.push_str(&format!(
                "\n# Its own lock (service.yaml `lock: own`): this folder is a uv project of its own,\n\
                 # excluded from the workspace, pinned by its own uv.lock. Here: `uv sync` (its own\n\
                 # .venv), `uv run pytest`, `uv add <dependency>`. The shared packages, as path sources\n\
                 # (`uv add` one to use it; its code is copied into the image as for every service):\n\
                 [tool.uv.sources]\n{sources}\n[tool.pytest.ini_options]\naddopts = [\"--import-mode=importlib\"]\n"
            ));
        }
    }
    member.own_lock = true;
    let workspace_add = format!("`uv add --package {name} <dependency>`");
    for note in &mut member.notes {
        *note = note.replace(&workspace_add, &format!("`uv add <dependency>` in services/{name}"));
    }
    member.notes.push(format!(
        "services/{name} keeps its own lock: `uv add <dependency>` and `uv run pytest` in services/{name}; \
         `cargo xtask lock` relocks it with the workspace"
    ));
    Ok(())
}

/// The shared packages that are uv projects: (distribution name, project
/// folder), e.g. (`pysvc-common`, `services/shared`) for
/// `services/shared/pysvc_common`.
pub(crate) fn shared_projects(stack: &manifest::Stack) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for shared in &stack.manifest.shared {
        let project = Path::new(&shared.path).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let file = format!("{project}/{}", manifest::PYPROJECT_FILE);
        let Ok(text) = std::fs::read_to_string(stack.root.join(&file)) else { continue };
        let (shared_project, _) = manifest::pyproject::parse(&file, &text)?;
        out.push((shared_project.name, project));
    }
    Ok(out)
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
    let root_pyproject = root.join(workspace::ROOT_PYPROJECT);
    let old_pyproject = std::fs::read_to_string(&root_pyproject).ok();
    let had_own_lock = dir.join(workspace::LOCK_FILE).exists();
    let finish = || -> Result<()> {
        write_member(&dir, member)?;
        if member.own_lock {
            workspace::exclude_from_workspace(root, &format!("{}/{}", manifest::SERVICES_DIR, member.name))?;
        }
        workspace::lock(&repo.sh, root, false, &[]).map_err(|e| offer_own_lock(e, member))?;
        workspace::lock_own(&repo.sh, &manifest::load(root)?, false, &[])?;
        lockfile::generate(&repo.sh, root, Mode::Write)?;
        Ok(())
    };
    let Err(err) = finish() else { return Ok(()) };
    if let Some(old) = old_pyproject {
        if std::fs::read_to_string(&root_pyproject).ok().as_ref() != Some(&old) {
            write_atomic(&root_pyproject, &old)?;
        }
    }
    if member.in_place {
        for (rel, _) in &member.files {
            let _ = std::fs::remove_file(dir.join(rel));
        }
        if member.own_lock && !had_own_lock {
            let _ = std::fs::remove_file(dir.join(workspace::LOCK_FILE));
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

/// A workspace that cannot resolve with the new member (uv's "No solution
/// found": its pins clash with another member's): uv's message, and the
/// way to keep the member's own versions.
fn offer_own_lock(err: anyhow::Error, member: &Member) -> anyhow::Error {
    let message = format!("{err:#}");
    let name = &member.name;
    // Not when the member cannot resolve even on its own.
    let clash = message.contains("conflicting URLs")
        || (message.contains("No solution found")
            && !message.contains(&format!("{name}'s requirements are unsatisfiable")));
    if member.own_lock || !clash {
        return err;
    }
    let again = match &member.copy_from {
        Some(from) => format!("cargo xtask new-service {name} --from {} --own-lock", from.display()),
        None if member.in_place => format!("cargo xtask new-service {name} --from services/{name} --own-lock"),
        None => format!("cargo xtask new-service {name} --own-lock"),
    };
    anyhow::anyhow!(
        "{message}\n{name}'s requirements conflict with the workspace's (uv's message above names the packages \
         and who pins them): the workspace has one version of each package for every service. To keep {name}'s \
         own versions, give it its own lock (service.yaml `lock: own`: services/{name}/uv.lock and its own \
         .venv, its own export for its image): `{again}`"
    )
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
        NewService { name: Some("legacy".into()), kind: NewKind::Http, from: Some(from.to_owned()), own_lock: false }
            .run(&repo)
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

    /// A local package `dep` of `version` (offline: what two folders pin differently).
    fn local_dep(version: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dep-{}-{version}", std::process::id()));
        std::fs::create_dir_all(dir.join("dep")).unwrap();
        std::fs::write(dir.join("dep/__init__.py"), "").unwrap();
        let backend = "[build-system]\nrequires = [\"uv_build>=0.13.9,<0.14\"]\nbuild-backend = \"uv_build\"\n\
                       [tool.uv.build-backend]\nmodule-root = \"\"\n";
        let project = format!("[project]\nname = \"dep\"\nversion = \"{version}\"\nrequires-python = \">=3.11\"\n");
        std::fs::write(dir.join("pyproject.toml"), project + backend).unwrap();
        dir
    }

    fn folder(name: &str, requirements: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("requirements.txt"), requirements).unwrap();
        std::fs::write(dir.join("main.py"), "import dep\n").unwrap();
        dir
    }

    fn adopt_as(root: &Path, from: &Path, name: &str, own_lock: bool) -> Result<()> {
        let repo = Repo::new(root.to_owned())?;
        NewService { name: Some(name.into()), kind: NewKind::Http, from: Some(from.to_owned()), own_lock }.run(&repo)
    }

    #[test]
    fn from_offers_an_own_lock_when_the_pins_clash_and_adopts_with_it() {
        let sh = xshell::Shell::new().unwrap();
        let root = workspace_fixture(&sh);
        let (one, two) = (local_dep("1.0"), local_dep("2.0"));
        let first = folder("first", &format!("dep @ file://{}\n", one.display()));
        let second = folder("second", &format!("dep @ file://{}\n", two.display()));
        adopt_as(&root, &first, "first", false).unwrap();
        let (lock, pyproject) = (read(&root, "uv.lock"), read(&root, "pyproject.toml"));
        let first_export = read(&root, "docker/first.requirements.txt");
        let err = format!("{:#}", adopt_as(&root, &second, "second", false).unwrap_err());
        assert!(err.contains("adding second failed; nothing was kept"), "{err}");
        assert!(err.contains("conflicting URLs for package `dep`"), "uv's message: {err}");
        let offer = format!("`cargo xtask new-service second --from {} --own-lock`", second.display());
        assert!(err.contains(&offer), "the way out: {err}");
        assert!(!root.join("services/second").exists());
        assert_eq!((read(&root, "uv.lock"), read(&root, "pyproject.toml")), (lock.clone(), pyproject));
        // With its own lock: both versions, each in its own lock.
        adopt_as(&root, &second, "second", true).unwrap();
        assert!(read(&root, "services/second/service.yaml").ends_with("lock: own\n"));
        assert!(read(&root, "pyproject.toml").contains("\"services/second\"]"), "excluded from the workspace");
        assert_eq!(read(&root, "uv.lock"), lock, "the workspace's lock is as it was");
        assert!(read(&root, "services/second/uv.lock").contains("version = \"2.0\""));
        assert_eq!(read(&root, "docker/first.requirements.txt"), first_export, "first's image inputs unchanged");
        let export = read(&root, "docker/second.requirements.txt");
        assert!(export.contains("pinned in services/second/uv.lock"), "{export}");
        assert!(crate::lockfile::generate(&sh, &root, Mode::Check).unwrap().is_empty());
        for dir in [root, one, two, first, second] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    fn read(root: &Path, rel: &str) -> String {
        std::fs::read_to_string(root.join(rel)).unwrap()
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
