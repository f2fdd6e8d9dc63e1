//! `cargo xtask new-service <name>`: scaffolds a service that builds and
//! comes up healthy: manifest, requirements, a typed Python package with a
//! real health signal, a pytest file; then locks it and regenerates.
//!
//! All or nothing: the files are written to a scratch folder and moved into
//! `services/` in one rename; if locking or generation fails, it is removed.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::manifest::{self, Kind};
use crate::prepared::Repo;
use crate::{gen, lockfile};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NewKind {
    Http,
    Worker,
}

/// Add a service (manifest, code, tests, lock) that builds and comes up healthy.
#[derive(Args, Debug)]
pub struct NewService {
    /// Service name: lowercase letters, digits and '-'.
    pub name: String,
    #[arg(long, value_enum, default_value = "http")]
    pub kind: NewKind,
}

impl NewService {
    pub fn run(self, repo: &Repo) -> Result<()> {
        let root = &repo.root;
        let name = self.name.as_str();
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
        let dir = root.join(manifest::SERVICES_DIR).join(name);
        if dir.exists() {
            bail!("{} already exists", dir.display());
        }
        let stack = repo.stack().context("the current stack must be valid before adding a service")?;
        let host_port = stack.services.iter().filter_map(|s| s.manifest.host_port).max().map_or(8000, |p| p + 1);
        let package = name.replace('-', "_");
        let files = match self.kind {
            NewKind::Http => http_files(name, &package, host_port),
            NewKind::Worker => worker_files(name, &package),
        };
        let scratch = root.join(manifest::SERVICES_DIR).join(format!(".{name}.xtask-new"));
        let _ = std::fs::remove_dir_all(&scratch);
        for (rel, text) in &files {
            let path = scratch.join(rel);
            std::fs::create_dir_all(path.parent().expect("files live in folders"))?;
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }
        std::fs::rename(&scratch, &dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let finish = || -> Result<()> {
            lockfile::lock_services(&repo.sh, root, &stack.manifest.python_version, Some(name), false)?;
            let stack = repo.stack()?;
            gen::ensure_files(root, &gen::render_all(&stack), gen::Mode::Write)?;
            Ok(())
        };
        if let Err(err) = finish() {
            std::fs::remove_dir_all(&dir).ok();
            return Err(err.context(format!("adding {name} failed; nothing was kept")));
        }
        let kind = match self.kind {
            NewKind::Http => Kind::Http,
            NewKind::Worker => Kind::Worker,
        };
        println!("added services/{name} ({kind:?}); generated files updated");
        println!("next: edit services/{name}/{package}/, then `cargo xtask up`");
        Ok(())
    }
}

fn http_files(name: &str, package: &str, host_port: u16) -> Vec<(String, String)> {
    vec![
        (
            "service.yaml".into(),
            format!(
                "# {name}: scaffolded by `cargo xtask new-service`.\nkind: http\ndescription: {name} (FastAPI on uvicorn)\n\
                 packages: [{package}]\ncommand: [uvicorn, \"{package}.main:app\", --host, 0.0.0.0, --port, \"8000\"]\n\
                 port: 8000\nhost_port: {host_port}\nhealth:\n  path: /health\ndepends_on: []\n"
            ),
        ),
        ("requirements.in".into(), format!("# Direct dependencies of {name}; `cargo xtask lock` pins them.\nfastapi\nuvicorn\n")),
        (format!("{package}/__init__.py"), format!("\"\"\"The {name} service.\"\"\"\n")),
        (
            format!("{package}/main.py"),
            format!(
                "\"\"\"HTTP entry point: `uvicorn {package}.main:app`.\"\"\"\n\nfrom fastapi import FastAPI\n\n\
                 app = FastAPI(title=\"{name}\")\n\n\n@app.get(\"/health\")\ndef health() -> dict[str, str]:\n    \
                 return {{\"status\": \"ok\"}}\n"
            ),
        ),
        (
            "tests/test_main.py".into(),
            format!(
                "from fastapi.testclient import TestClient\nfrom {package}.main import app\n\n\n\
                 def test_health() -> None:\n    assert TestClient(app).get(\"/health\").json() == {{\"status\": \"ok\"}}\n"
            ),
        ),
    ]
}

fn worker_files(name: &str, package: &str) -> Vec<(String, String)> {
    vec![
        (
            "service.yaml".into(),
            format!(
                "# {name}: scaffolded by `cargo xtask new-service`.\nkind: worker\ndescription: {name} (background worker)\n\
                 packages: [{package}]\ncommand: [python, -m, {package}.main]\nhealth:\n  command: [python, -m, {package}.health]\n\
                 depends_on: []\n"
            ),
        ),
        ("requirements.in".into(), format!("# Direct dependencies of {name}; `cargo xtask lock` pins them.\n")),
        (format!("{package}/__init__.py"), format!("\"\"\"The {name} worker.\"\"\"\n")),
        (
            format!("{package}/health.py"),
            "\"\"\"Health probe: exit 0 while the work loop's heartbeat file is fresh.\"\"\"\n\nimport sys\nimport time\n\
             from pathlib import Path\n\nHEARTBEAT = Path(\"/tmp/heartbeat\")\nMAX_AGE_SECONDS = 15.0\n\n\n\
             def is_fresh(path: Path = HEARTBEAT, max_age: float = MAX_AGE_SECONDS) -> bool:\n    try:\n        \
             return time.time() - path.stat().st_mtime <= max_age\n    except FileNotFoundError:\n        return False\n\n\n\
             if __name__ == \"__main__\":\n    sys.exit(0 if is_fresh() else 1)\n"
                .to_owned(),
        ),
        (
            format!("{package}/main.py"),
            format!(
                "\"\"\"Work loop: beats a heartbeat each turn, stops cleanly on SIGTERM.\"\"\"\n\nimport logging\nimport signal\n\
                 import threading\nfrom types import FrameType\n\nfrom {package}.health import HEARTBEAT\n\n\
                 log = logging.getLogger(\"{name}\")\n\n\ndef main() -> None:\n    logging.basicConfig(level=logging.INFO)\n    \
                 stop = threading.Event()\n\n    def on_signal(signum: int, _frame: FrameType | None) -> None:\n        \
                 stop.set()\n\n    signal.signal(signal.SIGTERM, on_signal)\n    signal.signal(signal.SIGINT, on_signal)\n    \
                 log.info(\"{name} started\")\n    while not stop.wait(1.0):\n        HEARTBEAT.touch()  # do one unit of work here\n    \
                 log.info(\"{name} stopped cleanly\")\n\n\nif __name__ == \"__main__\":\n    main()\n"
            ),
        ),
        (
            "tests/test_health.py".into(),
            format!(
                "from pathlib import Path\n\nfrom {package}.health import is_fresh\n\n\n\
                 def test_heartbeat(tmp_path: Path) -> None:\n    beat = tmp_path / \"hb\"\n    assert not is_fresh(beat)\n    \
                 beat.touch()\n    assert is_fresh(beat)\n"
            ),
        ),
    ]
}
