//! What `cargo xtask dev` decides, kept pure and tested: which files changed
//! (a snapshot of modification times, polled), what a change means for each
//! service (`classify`, from the manifests' own paths: never a file name
//! written here), and what a service reports after a reload (its
//! `pysvc-dev:` log lines, with container paths turned back into
//! repository paths).

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::gen::{self, EXCLUDED_DIR_NAMES, EXCLUDED_SUFFIXES};
use crate::manifest::{self, Stack};
use crate::workspace;

/// Every watched file: repository path -> (modified, length).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot(BTreeMap<String, (SystemTime, u64)>);

/// One changed file, and when it was written (when it was seen gone, for a removed one).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: String,
    pub removed: bool,
    pub written: SystemTime,
}

impl Snapshot {
    /// The manifests, the services' folders and the shared packages.
    pub fn take(stack: &Stack) -> Snapshot {
        let root = &stack.root;
        let mut files = BTreeMap::new();
        let roots =
            [manifest::STACK_FILE.to_owned(), manifest::SERVICES_DIR.to_owned(), workspace::LOCK_FILE.to_owned()];
        for top in roots.iter().chain(stack.manifest.shared.iter().map(|s| &s.path)) {
            let walk = walkdir::WalkDir::new(root.join(top)).into_iter().filter_entry(|e| {
                let name = e.file_name().to_string_lossy();
                // A service with its own lock has its own `.venv` in its folder.
                !(EXCLUDED_DIR_NAMES.contains(&name.as_ref()) || name == workspace::VENV_DIR) || e.depth() == 0
            });
            for entry in walk.filter_map(|e| e.ok()).filter(|e| e.file_type().is_file()) {
                let Ok(meta) = entry.metadata() else { continue };
                let Ok(rel) = entry.path().strip_prefix(root) else { continue };
                let rel = rel.to_string_lossy().replace('\\', "/");
                files.insert(rel, (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
            }
        }
        Snapshot(files)
    }

    /// What differs in `newer`: added, written or removed files.
    pub fn changes(&self, newer: &Snapshot) -> Vec<Change> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for (path, (modified, len)) in &newer.0 {
            if self.0.get(path) != Some(&(*modified, *len)) {
                out.push(Change { path: path.clone(), removed: false, written: *modified });
            }
        }
        for path in self.0.keys().filter(|p| !newer.0.contains_key(*p)) {
            out.push(Change { path: path.clone(), removed: true, written: now });
        }
        out
    }
}

/// What a set of changed files asks for, per service.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// A manifest changed: the generated files are written again.
    pub regenerate: bool,
    /// Services whose image is rebuilt and container recreated (a lock or
    /// other dependency file of its build context, or its manifest).
    pub rebuild: BTreeSet<String>,
    /// Services whose code is reloaded in place (their packages or a shared package).
    pub reload: BTreeSet<String>,
    /// Changed paths that no service is affected by (tests, docs, caches).
    pub ignored: Vec<String>,
}

fn under(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// The one place that decides what a change means. From the manifests
/// only: `stack.yaml` regenerates and rebuilds every service; `uv.lock` or
/// a member's `pyproject.toml` regenerates (the exports of the lock: the
/// caller rebuilds the services whose export changed); a
/// `services/<name>/service.yaml` (new ones too) regenerates and rebuilds
/// that service; a path in a service's build context (`context_paths`) is
/// code when it lies in one of its code folders (`gen::code_dirs`: its
/// packages and the shared ones), so it is reloaded, and otherwise a
/// dependency file (the lock), so the image is rebuilt. Caches and tests
/// are ignored. A rebuild includes the reload.
pub fn classify(stack: &Stack, paths: &[String]) -> Plan {
    let mut plan = Plan::default();
    for path in paths {
        if path == manifest::STACK_FILE {
            plan.regenerate = true;
            plan.rebuild.extend(stack.services.iter().map(|s| s.name.clone()));
            continue;
        }
        // A workspace member's pyproject (a service's or a shared package's).
        let pyproject =
            under(path, manifest::SERVICES_DIR) && path.ends_with(&format!("/{}", manifest::PYPROJECT_FILE));
        // The lock of a service that keeps its own (`lock: own`).
        let own_lock = stack.services.iter().any(|s| s.own_lock() && *path == workspace::lock_path(s));
        if path == workspace::LOCK_FILE || pyproject || own_lock {
            plan.regenerate = true;
            continue;
        }
        let parts: Vec<&str> = path.split('/').collect();
        if let [dir, name, file] = parts.as_slice() {
            if *dir == manifest::SERVICES_DIR && *file == manifest::SERVICE_FILE {
                plan.regenerate = true;
                plan.rebuild.insert((*name).to_owned());
                continue;
            }
        }
        let cache =
            parts.iter().any(|p| EXCLUDED_DIR_NAMES.contains(p)) || EXCLUDED_SUFFIXES.iter().any(|s| path.ends_with(s));
        let mut used = false;
        for service in stack.services.iter().filter(|_| !cache) {
            let code: Vec<String> = gen::code_dirs(stack, service).into_iter().map(|(host, _)| host).collect();
            for input in service.context_paths(&stack.manifest).iter().filter(|p| under(path, p)) {
                used = true;
                let set = if code.contains(input) { &mut plan.reload } else { &mut plan.rebuild };
                set.insert(service.name.clone());
            }
        }
        if !used {
            plan.ignored.push(path.clone());
        }
    }
    let rebuilt = plan.rebuild.clone();
    plan.reload.retain(|s| !rebuilt.contains(s));
    plan
}

/// What a service's `pysvc-dev:` log line reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reloaded,
    /// `FILE:LINE: what` (container paths), the previous code still serving.
    Failed(String),
}

pub fn outcome(line: &str) -> Option<Outcome> {
    let (_, said) = line.split_once("pysvc-dev: ")?;
    if said.starts_with("reloaded ") {
        return Some(Outcome::Reloaded);
    }
    let what = said.strip_prefix("reload failed: ")?.trim_end();
    // The service adds what keeps serving; the xtask says it in its own words.
    let what =
        what.rsplit_once("; ").filter(|(_, tail)| tail.starts_with("the previous code")).map_or(what, |(w, _)| w);
    Some(Outcome::Failed(what.to_owned()))
}

/// `text` with the container paths of the service's code folders written
/// as repository paths (`/app/api_server/app.py` -> `services/api-server/api_server/app.py`).
pub fn host_paths(stack: &Stack, service: &str, text: &str) -> String {
    let Some(service) = stack.services.iter().find(|s| s.name == service) else { return text.to_owned() };
    gen::code_dirs(stack, service)
        .iter()
        .fold(text.to_owned(), |t, (host, app)| t.replace(&format!("{app}/"), &format!("{host}/")))
}

/// The newest write among `changes` (what the times are measured from).
pub fn written(changes: &[Change]) -> SystemTime {
    changes.iter().map(|c| c.written).max().unwrap_or_else(SystemTime::now)
}

/// The changes, as printed: the paths, one word for a removal.
pub fn describe(changes: &[Change]) -> String {
    let mut names: Vec<String> =
        changes.iter().map(|c| if c.removed { format!("{} (removed)", c.path) } else { c.path.clone() }).collect();
    names.dedup();
    if names.len() > 3 {
        let more = names.len() - 3;
        names.truncate(3);
        names.push(format!("{more} more"));
    }
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::{fixture, write};

    fn plan(paths: &[&str]) -> Plan {
        let stack = manifest::load(&fixture()).unwrap();
        classify(&stack, &paths.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn code_reloads_its_service_and_shared_code_every_service() {
        let p = plan(&["services/web/web_pkg/app.py"]);
        assert_eq!((p.reload, p.rebuild, p.regenerate), (set(&["web"]), set(&[]), false));
        let p = plan(&["services/shared/common/util.py"]);
        assert_eq!(p.reload, set(&["web", "worker"]));
    }

    #[test]
    fn an_export_rebuilds_only_its_service_and_a_lock_or_manifest_regenerates() {
        let p = plan(&["docker/worker.requirements.txt", "services/worker/worker_pkg/x.py"]);
        assert_eq!((p.reload, p.rebuild, p.regenerate), (set(&[]), set(&["worker"]), false));
        // uv.lock and a pyproject: the exports are made again; the caller
        // rebuilds the services whose export changed.
        let p = plan(&["uv.lock", "services/worker/pyproject.toml", "services/web/web_pkg/x.py"]);
        assert_eq!((p.reload, p.rebuild, p.regenerate), (set(&["web"]), set(&[]), true));
        let p = plan(&["services/web/service.yaml"]);
        assert_eq!((p.rebuild, p.regenerate), (set(&["web"]), true));
        let p = plan(&["services/fresh/service.yaml"]);
        assert_eq!((p.rebuild, p.regenerate), (set(&["fresh"]), true), "a new service is built");
        let p = plan(&["stack.yaml"]);
        assert_eq!((p.rebuild, p.regenerate), (set(&["web", "worker"]), true));
    }

    #[test]
    fn a_services_own_lock_regenerates_and_its_venv_is_not_watched() {
        let root = fixture();
        write(&root, "services/worker/service.yaml", &format!("{}lock: own\n", crate::manifest::tests::WORKER));
        let stack = manifest::load(&root).unwrap();
        let p = classify(&stack, &["services/worker/uv.lock".to_owned()]);
        assert_eq!((p.rebuild.len(), p.regenerate), (0, true), "its export follows its lock: {p:?}");
        let p = classify(&stack, &["services/web/uv.lock".to_owned()]);
        assert!(!p.regenerate, "web has no lock of its own: {p:?}");
        std::fs::create_dir_all(root.join("services/worker/.venv/lib")).unwrap();
        write(&root, "services/worker/.venv/lib/x.py", "");
        let snapshot = Snapshot::take(&stack);
        assert!(!snapshot.0.keys().any(|k| k.contains(".venv")), "{:?}", snapshot.0.keys());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn tests_caches_and_other_files_are_ignored() {
        let p = plan(&[
            "services/web/tests/test_app.py",
            "services/web/web_pkg/__pycache__/app.cpython-311.pyc",
            "services/web/README.md",
            "services/database/init/01.sql",
        ]);
        assert_eq!((p.reload.len(), p.rebuild.len(), p.ignored.len()), (0, 0, 4), "{p:?}");
    }

    #[test]
    fn the_snapshot_sees_writes_additions_and_removals() {
        let root = fixture();
        let stack = manifest::load(&root).unwrap();
        write(&root, "services/web/web_pkg/a.py", "A = 1\n");
        let before = Snapshot::take(&stack);
        write(&root, "services/web/web_pkg/a.py", "A = 22\n");
        write(&root, "services/web/web_pkg/b.py", "B = 1\n");
        std::fs::remove_file(root.join("services/web/pyproject.toml")).unwrap();
        std::fs::create_dir_all(root.join("services/web/web_pkg/__pycache__")).unwrap();
        write(&root, "services/web/web_pkg/__pycache__/a.pyc", "x");
        let changes = before.changes(&Snapshot::take(&stack));
        let seen: Vec<(&str, bool)> = changes.iter().map(|c| (c.path.as_str(), c.removed)).collect();
        assert_eq!(
            seen,
            [
                ("services/web/web_pkg/a.py", false),
                ("services/web/web_pkg/b.py", false),
                ("services/web/pyproject.toml", true)
            ]
        );
    }

    #[test]
    fn reload_reports_are_read_and_name_repository_paths() {
        let stack = manifest::load(&fixture()).unwrap();
        assert_eq!(outcome("2024 x pysvc-dev: reloaded web_pkg.main in 0.2s"), Some(Outcome::Reloaded));
        let line = "pysvc-dev: reload failed: /app/web_pkg/app.py:3: SyntaxError: invalid syntax; the previous code keeps serving";
        let Some(Outcome::Failed(what)) = outcome(line) else { panic!("not read") };
        assert_eq!(host_paths(&stack, "web", &what), "services/web/web_pkg/app.py:3: SyntaxError: invalid syntax");
        assert_eq!(host_paths(&stack, "web", "/app/common/x.py:1"), "services/shared/common/x.py:1");
        assert_eq!(outcome("INFO uvicorn started"), None);
    }
}
