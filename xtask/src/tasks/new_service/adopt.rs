//! `new-service --from <dir>`: adopts a service folder as the design
//! documents have them (`src/<service>/` with a `requirements.txt` and the
//! code, run as `uvicorn main:app` or `python main.py`). The code keeps its
//! layout: its top-level modules and packages become the manifest's
//! `packages`, copied to `/app` in the image as the documents' Dockerfiles
//! copied them. Its requirements become the pyproject's `dependencies` (the
//! requirements.txt is not carried over: pyproject.toml holds them now).
//!
//! The member is not built or installed (`[tool.uv] package = false`): a
//! flat layout is not a distribution, and two flat services' `main` modules
//! would shadow each other in one environment. `uv sync` installs its
//! dependencies; a `conftest.py` puts its folder on pytest's path.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::templates::project_table;
use super::{Member, NewKind};
use crate::manifest::{self, pyproject, Stack};

/// Names never copied from an adopted folder: environments, caches, and
/// what the member replaces (its requirements and a hand-written Dockerfile).
const SKIPPED: [&str; 10] = [
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    "requirements.txt",
    "Dockerfile",
    ".dockerignore",
    "node_modules",
];

pub(super) fn member(stack: &Stack, from: &Path, name: &str, kind: NewKind, host_port: u16) -> Result<Member> {
    let from = from.canonicalize().with_context(|| format!("{} does not exist", from.display()))?;
    let dest = stack.root.join(manifest::SERVICES_DIR).join(name);
    let in_place = dest.canonicalize().is_ok_and(|d| d == from);
    if !in_place && dest.exists() {
        bail!("{} already exists: adopt it in place with `--from {}`", dest.display(), dest.display());
    }
    let req_file = from.join("requirements.txt");
    let text = std::fs::read_to_string(&req_file).with_context(|| {
        format!("{} has no requirements.txt: --from adopts a service folder with one", from.display())
    })?;
    let dependencies = requirements(&req_file.display().to_string(), &text)?;
    let (modules, packages) = code(&from)?;
    let entry = entry_module(&from, &modules, &packages)?;
    for existing in ["pyproject.toml", "service.yaml"] {
        if in_place && dest.join(existing).exists() {
            bail!("{} already has {existing}: it is already a member", dest.display());
        }
    }
    let code: Vec<String> = modules.iter().map(|m| format!("{m}.py")).chain(packages.iter().cloned()).collect();
    let source = from.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut files = vec![
        ("pyproject.toml".to_owned(), pyproject(stack, name, &source, &dependencies)?),
        ("service.yaml".to_owned(), service_yaml(name, kind, &code, &entry, host_port)),
    ];
    if !modules.is_empty() && !from.join("conftest.py").exists() {
        files.push(("conftest.py".to_owned(), conftest(name)));
    }
    let mut notes = vec![format!(
        "services/{name}/pyproject.toml lists the {} requirement(s) of {}; add more with `uv add --package {name} <dependency>`",
        dependencies.len(),
        req_file.display()
    )];
    notes.push(match kind {
        NewKind::Http => {
            format!("services/{name}/service.yaml probes GET /health: change `health.path` if the app serves another")
        }
        NewKind::Worker => format!(
            "services/{name}/service.yaml's health check only asks whether the worker's process runs: \
             give it a real signal (see services/search-worker/search_worker/health.py)"
        ),
    });
    if in_place {
        notes.push(format!(
            "services/{name}/requirements.txt is no longer read (pyproject.toml holds its dependencies): delete it"
        ));
    }
    Ok(Member {
        name: name.to_owned(),
        files,
        copy_from: (!in_place).then_some(from),
        in_place,
        notes,
        own_lock: false,
    })
}

/// The PEP 508 requirements of a requirements.txt: comments, blank lines,
/// `--hash` options and line continuations dropped. Other pip options
/// (`-r`, `-e`, `--index-url`, ...) cannot live in a pyproject: refused with
/// `file:line`.
pub(super) fn requirements(file: &str, text: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    for (i, line) in text.lines().enumerate() {
        if logical.is_empty() {
            start = i + 1;
        }
        let line = match line.find('#') {
            Some(0) => "",
            Some(p) if line[..p].ends_with(char::is_whitespace) => &line[..p],
            _ => line,
        };
        match line.trim_end().strip_suffix('\\') {
            Some(part) => {
                logical.push_str(part);
                logical.push(' ');
                continue;
            }
            None => logical.push_str(line),
        }
        let tokens: Vec<&str> = logical.split_whitespace().filter(|t| !t.starts_with("--hash")).collect();
        if let Some(first) = tokens.first() {
            if first.starts_with('-') {
                bail!(
                    "{file}:{start}: `{}` is a pip option, which a pyproject cannot hold: list the requirements \
                     themselves (add the rest after with `uv add --package`)",
                    tokens.join(" ")
                );
            }
            out.push(tokens.join(" "));
        }
        logical.clear();
    }
    Ok(out)
}

/// The folder's top-level modules (`main` for `main.py`; not conftest.py or
/// setup.py) and packages (folders with an `__init__.py`, not `tests`).
fn code(dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let (mut modules, mut packages) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(module) = name.strip_suffix(".py").filter(|_| path.is_file()) {
            if !["conftest", "setup"].contains(&module) {
                modules.push(module.to_owned());
            }
        } else if path.join("__init__.py").is_file() && name != "tests" && !SKIPPED.contains(&name.as_str()) {
            packages.push(name);
        }
    }
    modules.sort();
    packages.sort();
    for name in modules.iter().chain(&packages) {
        manifest::validate::repo_path(name).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    Ok((modules, packages))
}

/// The module the service runs: `main` (main.py at the top), else
/// `<package>.main`.
fn entry_module(dir: &Path, modules: &[String], packages: &[String]) -> Result<String> {
    if modules.iter().any(|m| m == "main") {
        return Ok("main".to_owned());
    }
    if let Some(package) = packages.iter().find(|p| dir.join(p).join("main.py").is_file()) {
        return Ok(format!("{package}.main"));
    }
    bail!(
        "{} has no main.py (nor a package with one): --from runs `uvicorn main:app` (http) or `python -m main` \
         (worker); add one, or scaffold with `cargo xtask new-service <name>` and move the code in",
        dir.display()
    )
}

fn pyproject(stack: &Stack, name: &str, source: &str, dependencies: &[String]) -> Result<String> {
    let mut text =
        project_table(stack, name, &format!("{name} (adopted from {source}/requirements.txt)"), dependencies);
    // A requirement naming a shared package is that workspace member.
    let shared = super::shared_projects(stack)?;
    let named = |package: &str| dependencies.iter().any(|d| pyproject::normalize(requirement_name(d)) == package);
    let sources: String =
        shared.iter().filter(|(p, _)| named(p)).map(|(p, _)| format!("{p} = {{ workspace = true }}\n")).collect();
    if !sources.is_empty() {
        text.push_str(&format!("\n[tool.uv.sources]\n{sources}"));
    }
    text.push_str(
        "\n# Not built or installed: the code keeps its flat layout (modules at the top of\n\
         # this folder, as in /app in its image). `uv sync` installs its dependencies, and\n\
         # conftest.py puts this folder on pytest's path.\n[tool.uv]\npackage = false\n\n\
         # `cargo xtask test` type-checks it with these settings (scaffolded services: --strict).\n\
         [tool.mypy]\nignore_missing_imports = true\n",
    );
    Ok(text)
}

/// The distribution name a PEP 508 requirement starts with.
fn requirement_name(requirement: &str) -> &str {
    let end =
        requirement.find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c))).unwrap_or(requirement.len());
    &requirement[..end]
}

fn service_yaml(name: &str, kind: NewKind, code: &[String], entry: &str, host_port: u16) -> String {
    let head = format!(
        "# {name}: adopted by `cargo xtask new-service --from`; its dependencies are in\n\
         # pyproject.toml, its code keeps its layout (copied to /app in the image).\n"
    );
    let packages = code.join(", ");
    match kind {
        NewKind::Http => format!(
            "{head}kind: http\npackages: [{packages}]\ncommand: [uvicorn, \"{entry}:app\", --host, 0.0.0.0, --port, \"8000\"]\n\
             port: 8000\nhost_port: {host_port}\nhealth:\n  # The app answers 2xx here once it can serve: change it to the app's own path.\n  \
             path: /health\ndepends_on: []\n"
        ),
        NewKind::Worker => format!(
            "{head}kind: worker\npackages: [{packages}]\ncommand: [python, -m, {entry}]\nhealth:\n  \
             # Only \"is the worker's process running\": replace it with a real signal.\n  command: {}\n\
             depends_on: []\n",
            process_check(entry)
        ),
    }
}

/// A health command that passes while a process runs `python -m <entry>`
/// (its /proc cmdline), as a YAML flow list (the script has no `"` or `\`).
fn process_check(entry: &str) -> String {
    let script = format!(
        "import pathlib, sys; want = bytes(chr(0).join(['python', '-m', '{entry}', '']), 'ascii'); \
         sys.exit(0 if any(p.read_bytes() == want for p in pathlib.Path('/proc').glob('[0-9]*/cmdline')) else 1)"
    );
    format!("[python, -c, \"{script}\"]")
}

fn conftest(name: &str) -> String {
    format!(
        "\"\"\"pytest settings of {name}, written by `cargo xtask new-service --from`.\n\n\
         The service keeps its flat layout: its modules sit at the top of this folder, as\n\
         they sit in /app in its image. This puts the folder on the import path, so its\n\
         tests import them the same way.\n\"\"\"\n\nimport sys\nfrom pathlib import Path\n\n\
         sys.path.insert(0, str(Path(__file__).parent))\n"
    )
}

/// Copies `from`'s files into `to` (made here), minus [`SKIPPED`] names and
/// compiled files; symbolic links are not followed.
pub(super) fn copy_code(from: &Path, to: &Path) -> Result<()> {
    let walk = walkdir::WalkDir::new(from).follow_links(false).into_iter().filter_entry(|e| {
        let name = e.file_name().to_string_lossy();
        e.depth() == 0 || !(SKIPPED.contains(&name.as_ref()) || name.ends_with(".pyc"))
    });
    for entry in walk {
        let entry = entry.with_context(|| format!("cannot walk {}", from.display()))?;
        let target: PathBuf = to.join(entry.path().strip_prefix(from).expect("below the root"));
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &target).with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_become_pep_508_strings() {
        let text = "# the api\nfastapi==0.110.0  # web\nuvicorn[standard]\n\npsycopg[binary]>=3.1 \\\n    \
                    --hash=sha256:00 \\\n    --hash=sha256:11\nfoo; python_version < \"3.12\"\n";
        let reqs = requirements("r.txt", text).unwrap();
        assert_eq!(
            reqs,
            ["fastapi==0.110.0", "uvicorn[standard]", "psycopg[binary]>=3.1", "foo; python_version < \"3.12\""]
        );
        let err = requirements("src/a/requirements.txt", "fastapi\n-r base.txt\n").unwrap_err().to_string();
        assert!(err.starts_with("src/a/requirements.txt:2: `-r base.txt` is a pip option"), "{err}");
    }

    #[test]
    fn a_flat_folder_is_read_as_modules_and_packages() {
        let dir = std::env::temp_dir().join(format!("adopt-code-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["helpers", "tests", "__pycache__", "docs"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        for f in ["main.py", "conftest.py", "helpers/__init__.py", "tests/__init__.py", "__pycache__/x.py"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let (modules, packages) = code(&dir).unwrap();
        assert_eq!((modules.as_slice(), packages.as_slice()), (&["main".to_owned()][..], &["helpers".to_owned()][..]));
        assert_eq!(entry_module(&dir, &modules, &packages).unwrap(), "main");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_manifests_it_writes_load() {
        let yaml = service_yaml("legacy", NewKind::Worker, &["main.py".to_owned()], "main", 8001);
        let manifest: manifest::ServiceManifest = serde_yaml::from_str(&yaml).unwrap();
        let check = manifest.health.command.unwrap();
        assert_eq!(check[..2], ["python", "-c"]);
        assert!(check[2].contains("['python', '-m', 'main', '']"), "{}", check[2]);
        let yaml = service_yaml("legacy", NewKind::Http, &["main.py".to_owned(), "helpers".to_owned()], "main", 8001);
        let manifest: manifest::ServiceManifest = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(manifest.packages, ["main.py", "helpers"]);
        assert_eq!(manifest.command[1], "main:app");
    }
}
