use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

pub(crate) const STACK: &str = "project: demo
python_version: \"3.11\"
uv_version: \"0.13.9\"
shared:
  - path: services/shared/common
postgres:
  host_port: 5432
  init_scripts: services/database/init
kafka:
  topics: [jobs]
";

pub(crate) const HTTP: &str = "kind: http
packages: [web_pkg]
command: [uvicorn, \"web_pkg.main:app\"]
port: 8000
host_port: 8000
health:
  path: /ready
depends_on: [postgres, kafka]
";

pub(crate) const WORKER: &str = "kind: worker
packages: [worker_pkg]
command: [python, -m, worker_pkg]
health:
  command: [python, -m, worker_pkg.health]
depends_on: [kafka]
";

/// A throwaway repository with a valid stack of two services: `web` and `worker`.
pub(crate) fn fixture() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let root =
        std::env::temp_dir().join(format!("xtask-fixture-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&root);
    for dir in
        ["services/shared/common", "services/database/init", "services/web/web_pkg", "services/worker/worker_pkg"]
    {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    write(&root, "stack.yaml", STACK);
    write(&root, "services/web/service.yaml", HTTP);
    write(&root, "services/worker/service.yaml", WORKER);
    for s in ["web", "worker"] {
        write(&root, &format!("services/{s}/pyproject.toml"), &pyproject(s));
    }
    root
}

/// A member's pyproject.toml in the fixture: no dependencies, so uv locks it
/// without an index.
pub(crate) fn pyproject(name: &str) -> String {
    format!(
        "[project]\nname = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"{name}\"\n\
         requires-python = \">=3.11\"\ndependencies = []\n"
    )
}

pub(crate) fn write(root: &Path, rel: &str, text: &str) {
    std::fs::write(root.join(rel), text).unwrap();
}

fn load_err(root: &Path) -> String {
    format!("{:#}", load(root).expect_err("the stack should be rejected"))
}

#[test]
fn the_fixture_is_valid_and_sorted() {
    let stack = load(&fixture()).unwrap();
    let names: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "worker"]);
    assert_eq!(stack.services[0].env_name(), "WEB");
}

#[test]
fn the_repository_stack_is_valid() {
    let stack = load(&crate::project_root()).unwrap();
    assert!(stack.services.iter().any(|s| s.name == "api-server"));
    assert!(stack.services.iter().any(|s| s.name == "search-worker"));
}

#[test]
fn unknown_key_names_file_line_and_column() {
    let root = fixture();
    write(&root, "services/web/service.yaml", &HTTP.replace("port: 8000\n", "port: 8000\nprot: 1\n"));
    let err = load_err(&root);
    assert!(err.starts_with("services/web/service.yaml:"), "{err}");
    assert!(err.contains("unknown field `prot`"), "{err}");
    assert!(err.contains(":5:"), "the line of `prot` is 5: {err}");
}

#[test]
fn wrong_type_is_located() {
    let root = fixture();
    write(&root, "stack.yaml", &STACK.replace("host_port: 5432", "host_port: lots"));
    let err = load_err(&root);
    assert!(err.starts_with("stack.yaml:7:"), "{err}");
    assert!(err.contains("invalid"), "{err}");
}

#[test]
fn dependency_cycle_is_rejected() {
    let root = fixture();
    write(&root, "services/web/service.yaml", &HTTP.replace("[postgres, kafka]", "[worker]"));
    write(&root, "services/worker/service.yaml", &WORKER.replace("[kafka]", "[web]"));
    let err = load_err(&root);
    assert!(err.contains("dependency cycle: web -> worker -> web"), "{err}");
    assert!(err.contains("services/web/service.yaml:8:"), "{err}");
}

#[test]
fn unknown_dependency_is_rejected() {
    let root = fixture();
    write(&root, "services/worker/service.yaml", &WORKER.replace("[kafka]", "[redis]"));
    let err = load_err(&root);
    assert!(err.contains("services/worker/service.yaml:6:"), "{err}");
    assert!(err.contains("\"redis\""), "{err}");
}

#[test]
fn duplicate_host_port_is_rejected() {
    let root = fixture();
    write(&root, "services/web/service.yaml", &HTTP.replace("host_port: 8000", "host_port: 5432"));
    let err = load_err(&root);
    assert!(err.contains("host_port 5432 is already used by stack.yaml"), "{err}");
    assert!(err.contains("services/web/service.yaml:5:"), "{err}");
}

#[test]
fn missing_files_are_rejected() {
    let root = fixture();
    std::fs::remove_file(root.join("services/worker/pyproject.toml")).unwrap();
    let e = load_err(&root);
    assert!(e.starts_with("services/worker/service.yaml:1:1: services/worker/pyproject.toml is missing"), "{e}");
    assert!(e.contains("name = \"worker\"") && e.contains("requires-python = \">=3.11\""), "{e}");

    let root = fixture();
    std::fs::remove_dir_all(root.join("services/web/web_pkg")).unwrap();
    let err = load_err(&root);
    assert!(err.contains("services/web/service.yaml:2:") && err.contains("does not exist"), "{err}");

    let root = fixture();
    std::fs::remove_dir_all(root.join("services/database/init")).unwrap();
    assert!(load_err(&root).contains("init_scripts"));
}

#[test]
fn kind_rules_are_enforced() {
    let root = fixture();
    write(&root, "services/worker/service.yaml", &format!("{WORKER}port: 9000\n"));
    assert!(load_err(&root).contains("a worker service has no port"));

    let root = fixture();
    write(&root, "services/web/service.yaml", &HTTP.replace("  path: /ready\n", "  path: ready\n"));
    assert!(load_err(&root).contains("must start with '/'"));
}

#[test]
fn secrets_do_not_belong_in_manifests() {
    let root = fixture();
    write(&root, "services/worker/service.yaml", &format!("{WORKER}environment:\n  DB_PASSWORD: hunter2\n"));
    let err = load_err(&root);
    assert!(err.contains("services/worker/service.yaml:8:") && err.contains(".env"), "{err}");
}

#[test]
fn bad_durations_and_names_are_rejected() {
    let root = fixture();
    write(&root, "services/web/service.yaml", &format!("{HTTP}stop_grace_period: soon\n"));
    assert!(load_err(&root).contains("\"soon\""));

    let root = fixture();
    write(&root, "stack.yaml", &STACK.replace("project: demo", "project: Demo_X"));
    assert!(load_err(&root).starts_with("stack.yaml:1:1:"));
}

#[test]
fn partitions_and_replicas_are_checked() {
    let root = fixture();
    write(&root, "stack.yaml", &STACK.replace("topics: [jobs]", "topics: [jobs]\n  partitions: 0"));
    assert!(load_err(&root).starts_with("stack.yaml:11:3: kafka.partitions must be at least 1"), "{}", load_err(&root));
    write(&root, "stack.yaml", &STACK.replace("topics: [jobs]", "topics: [jobs]\n  partitions: 2"));
    write(&root, "services/worker/service.yaml", &format!("{WORKER}replicas: 3\n"));
    let e = load_err(&root);
    assert!(e.starts_with("services/worker/service.yaml:7:1: replicas: 3 exceeds kafka.partitions: 2"), "{e}");
    write(&root, "services/worker/service.yaml", &format!("{WORKER}replicas: 2\n"));
    let stack = load(&root).unwrap();
    assert_eq!(stack.manifest.kafka.partitions, 2);
    assert_eq!(stack.services[1].manifest.replicas, 2);
    write(&root, "services/web/service.yaml", &format!("{HTTP}replicas: 2\n"));
    assert!(load_err(&root).contains("cannot share host_port 8000"), "{}", load_err(&root));
}

#[test]
fn the_pyproject_names_the_service_and_supports_the_images_python() {
    let root = fixture();
    let stack = load(&root).unwrap();
    assert_eq!(stack.services[0].project.description, "web");
    write(&root, "services/web/pyproject.toml", &pyproject("Web"));
    assert!(load(&root).is_ok(), "names compare as uv normalizes them");
    write(&root, "services/web/pyproject.toml", &pyproject("website"));
    let e = load_err(&root);
    assert!(
        e.starts_with("services/web/pyproject.toml:2:8: name \"website\" must be the service's folder name"),
        "{e}"
    );
    write(&root, "services/web/pyproject.toml", &pyproject("web").replace(">=3.11", ">=3.12"));
    let e = load_err(&root);
    assert!(e.starts_with("services/web/pyproject.toml:5:19: requires-python \">=3.12\" must be \">=3.11\""), "{e}");
    write(
        &root,
        "services/web/pyproject.toml",
        &pyproject("web").replace("description = \"web\"", "description = \"$5\""),
    );
    assert!(
        load_err(&root).starts_with("services/web/pyproject.toml:4:15: description contains '$'"),
        "{}",
        load_err(&root)
    );
}

#[test]
fn a_description_in_service_yaml_says_where_it_moved() {
    let root = fixture();
    write(&root, "services/web/service.yaml", &format!("description: web\n{HTTP}"));
    let e = load_err(&root);
    assert!(e.starts_with("services/web/service.yaml:1:1: `description` moved to the service's pyproject.toml"), "{e}");
}

#[test]
fn a_package_may_be_a_module_file() {
    let root = fixture();
    write(&root, "services/web/service.yaml", &HTTP.replace("[web_pkg]", "[web_pkg, main.py]"));
    assert!(load_err(&root).contains("package folder (or .py module) services/web/main.py does not exist"));
    write(&root, "services/web/main.py", "app = None\n");
    assert_eq!(load(&root).unwrap().services[0].manifest.packages, ["web_pkg", "main.py"]);
}

#[test]
fn build_packages_are_read_and_checked_like_runtime_packages() {
    let root = fixture();
    let text = format!("{WORKER}build_packages: [gcc, libpq-dev]\nruntime_packages: [libpq5]\n");
    write(&root, "services/worker/service.yaml", &text);
    let stack = load(&root).unwrap();
    let worker = &stack.services[1].manifest;
    assert_eq!(worker.build_packages, ["gcc", "libpq-dev"]);
    assert_eq!(worker.runtime_packages, ["libpq5"]);
    assert!(stack.services[0].manifest.build_packages.is_empty(), "none by default");

    write(&root, "services/worker/service.yaml", &format!("{WORKER}build_packages: [gcc, \"libpq-dev;rm\"]\n"));
    let err = load_err(&root);
    assert!(
        err.starts_with("services/worker/service.yaml:7:1: \"libpq-dev;rm\" is not a Debian package name"),
        "{err}"
    );
    assert!(err.contains("like \"libpq5\""), "the fix: {err}");
    write(&root, "services/worker/service.yaml", &format!("{WORKER}build_packages: gcc\n"));
    let err = load_err(&root);
    assert!(err.starts_with("services/worker/service.yaml:7:") && err.contains("a sequence"), "{err}");
}
