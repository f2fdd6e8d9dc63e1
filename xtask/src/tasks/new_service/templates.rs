//! The files of a scaffolded member: `pyproject.toml` (a uv_build package
//! next to it, so `uv sync` installs it editable), `service.yaml`, the typed
//! package with a real health signal, and a pytest file.

use super::{toml_string, Member, NewKind};
use crate::manifest::Stack;

pub(super) fn member(stack: &Stack, name: &str, kind: NewKind, host_port: u16) -> Member {
    let package = name.replace('-', "_");
    let files = match kind {
        NewKind::Http => http_files(stack, name, &package, host_port),
        NewKind::Worker => worker_files(stack, name, &package),
    };
    Member { name: name.to_owned(), files, copy_from: None, in_place: false, notes: Vec::new(), own_lock: false }
}

/// The `[project]` table every member has: PEP 621 metadata, requires-python
/// from `stack.yaml`, and its dependencies.
pub(super) fn project_table<S: AsRef<str>>(stack: &Stack, name: &str, description: &str, dependencies: &[S]) -> String {
    format!(
        "[project]\nname = {}\nversion = \"0.1.0\"\ndescription = {}\nrequires-python = \">={}\"\ndependencies = [\n{}]\n",
        toml_string(name),
        toml_string(description),
        stack.manifest.python_version,
        list(dependencies)
    )
}

fn list<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|d| format!("    {},\n", toml_string(d.as_ref()))).collect()
}

/// A package member's pyproject: the `[project]` table, a `dev` group, and
/// uv's build backend pinned to the stack's uv minor.
fn pyproject(stack: &Stack, name: &str, description: &str, dependencies: &[&str], dev: &[&str]) -> String {
    let uv = &stack.manifest.uv_version;
    let minor: Vec<u32> = uv.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    let next = format!("{}.{}", minor[0], minor[1] + 1);
    let mut text = project_table(stack, name, description, dependencies);
    if !dev.is_empty() {
        text.push_str(&format!("\n[dependency-groups]\ndev = [\n{}]\n", list(dev)));
    }
    text.push_str(&format!(
        "\n[build-system]\nrequires = [\"uv_build>={uv},<{next}\"]\nbuild-backend = \"uv_build\"\n\n\
         # The package is services/{name}/{}, next to this file (no src/ folder).\n\
         [tool.uv.build-backend]\nmodule-root = \"\"\n",
        name.replace('-', "_")
    ));
    text
}

fn http_files(stack: &Stack, name: &str, package: &str, host_port: u16) -> Vec<(String, String)> {
    vec![
        (
            "pyproject.toml".into(),
            pyproject(stack, name, &format!("{name} (FastAPI on uvicorn)"), &["fastapi", "uvicorn"], &["httpx"]),
        ),
        (
            "service.yaml".into(),
            format!(
                "# {name}: scaffolded by `cargo xtask new-service`; its dependencies are in pyproject.toml.\nkind: http\n\
                 packages: [{package}]\ncommand: [uvicorn, \"{package}.main:app\", --host, 0.0.0.0, --port, \"8000\"]\n\
                 port: 8000\nhost_port: {host_port}\nhealth:\n  path: /health\ndepends_on: []\n"
            ),
        ),
        (format!("{package}/__init__.py"), format!("\"\"\"The {name} service.\"\"\"\n")),
        // PEP 561: the package is typed (mypy checks its users against it).
        (format!("{package}/py.typed"), String::new()),
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

fn worker_files(stack: &Stack, name: &str, package: &str) -> Vec<(String, String)> {
    vec![
        ("pyproject.toml".into(), pyproject(stack, name, &format!("{name} (background worker)"), &[], &[])),
        (
            "service.yaml".into(),
            format!(
                "# {name}: scaffolded by `cargo xtask new-service`; its dependencies are in pyproject.toml.\nkind: worker\n\
                 packages: [{package}]\ncommand: [python, -m, {package}.main]\nhealth:\n  command: [python, -m, {package}.health]\n\
                 depends_on: []\n"
            ),
        ),
        (format!("{package}/__init__.py"), format!("\"\"\"The {name} worker.\"\"\"\n")),
        (format!("{package}/py.typed"), String::new()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{self, pyproject, tests::fixture};

    #[test]
    fn a_scaffolded_pyproject_is_a_member_the_manifest_reader_accepts() {
        let stack = manifest::load(&fixture()).unwrap();
        let text = pyproject(&stack, "hello", "hello (FastAPI on uvicorn)", &["fastapi", "uvicorn"], &["httpx"]);
        let (p, _) = pyproject::parse("pyproject.toml", &text).unwrap();
        assert_eq!((p.name.as_str(), p.requires_python.as_str()), ("hello", ">=3.11"));
        assert!(text.contains("dependencies = [\n    \"fastapi\",\n    \"uvicorn\",\n]\n"), "{text}");
        assert!(text.contains("dev = [\n    \"httpx\",\n]\n"), "{text}");
        assert!(text.contains("requires = [\"uv_build>=0.13.9,<0.14\"]"), "{text}");
        assert!(text.contains("module-root = \"\""), "{text}");
    }
}
