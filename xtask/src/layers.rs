//! The layering rule as a test: every module imports only from its own layer
//! or below, a task never imports another task, and no two modules import
//! each other, directly or around a circle. It reads the `crate::` paths of
//! every source file (test code excepted) and names file and line of a
//! violation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module and its layer, lowest first (ARCHITECTURE.md
/// explains them). `tasks::*` modules are layer 7, one module per task.
const LAYERS: [(&str, u8); 22] = [
    ("dotenv", 1),
    ("manifest", 1),
    ("proxy_ca", 1),
    ("tools", 1),
    ("util", 1),
    ("workspace", 1),
    ("buildhint", 2),
    ("engine", 2),
    ("kube", 2),
    ("context", 3),
    ("gen", 3),
    ("cluster", 4),
    ("provision", 4),
    ("prepared", 5),
    ("bench", 6),
    ("devloop", 6),
    ("images", 6),
    ("lockfile", 6),
    ("scratch", 6),
    ("stack", 6),
    ("tasks", 7),
    ("main", 8),
];

/// The module a source file belongs to: its top-level module, or
/// `tasks::<task>` for a task.
fn module_of(rel: &Path) -> String {
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned()).collect();
    match parts.as_slice() {
        [tasks, task, ..] if tasks == "tasks" => format!("tasks::{task}"),
        [first, ..] => first.clone(),
        [] => String::new(),
    }
}

fn layer(module: &str) -> Option<u8> {
    let top = module.split("::").next().unwrap_or(module);
    LAYERS.iter().find(|(m, _)| *m == top).map(|(_, l)| *l)
}

/// The modules a line names through `crate::` (`crate::a::b`, `crate::{a, b::c}`),
/// as top-level modules (or `tasks::<task>`).
fn referenced(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').map(str::trim).collect()
        } else {
            vec![rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).next().unwrap_or("")]
        };
        for name in names {
            let mut parts = name.split("::").filter(|p| !p.is_empty());
            match (parts.next(), parts.next()) {
                (Some("tasks"), Some(task)) if task != "*" && !task.starts_with('{') => {
                    out.push(format!("tasks::{task}"))
                }
                (Some(top), _) if top != "self" => out.push(top.to_owned()),
                _ => {}
            }
        }
    }
    out
}

/// (file, line number, from module, to module) for every `crate::` path outside tests.
fn imports(src: &Path) -> Vec<(String, usize, String, String)> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(src).sort_by_file_name().into_iter().filter_map(|e| e.ok()) {
        let path = entry.path();
        let rel = path.strip_prefix(src).expect("below src");
        let name = rel.to_string_lossy().into_owned();
        let is_test_file = name.ends_with("tests.rs") || name == "layers.rs" || name == "tidy.rs";
        if path.extension().is_none_or(|e| e != "rs") || is_test_file {
            continue;
        }
        let from = module_of(rel);
        let text = std::fs::read_to_string(path).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break; // Test code below: helpers may reach anywhere.
            }
            if line.trim_start().starts_with("//") {
                continue;
            }
            for to in referenced(line) {
                if to != from && !(to == "tasks" && from == "main") {
                    found.push((name.clone(), n + 1, from.clone(), to));
                }
            }
        }
    }
    found
}

/// A circle in the module graph, if there is one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn modules_import_only_downwards_and_tasks_never_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, line, from, to) in imports(&src) {
        let (Some(lf), Some(lt)) = (layer(&from), layer(&to)) else {
            problems.push(format!("xtask/src/{file}:{line}: {from} -> {to}: add the module to `LAYERS` in layers.rs"));
            continue;
        };
        if lt > lf {
            problems.push(format!(
                "xtask/src/{file}:{line}: {from} (layer {lf}) imports {to} (layer {lt}): move what it needs down"
            ));
        }
        if from.starts_with("tasks::") && to.starts_with("tasks") {
            problems.push(format!(
                "xtask/src/{file}:{line}: task {from} imports {to}: move what both need into a shared module below the tasks"
            ));
        }
        let top = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
        if !from.starts_with("tasks") {
            edges.entry(top(&from)).or_default().insert(top(&to));
        }
    }
    if let Some(c) = circle(&edges) {
        problems.push(format!("modules import each other in a circle: {}", c.join(" -> ")));
    }
    assert!(problems.is_empty(), "the layering rule (ARCHITECTURE.md) is broken:\n{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_every_form_of_crate_path() {
    assert_eq!(referenced("use crate::engine;"), ["engine"]);
    assert_eq!(referenced("use crate::{gen, lockfile};"), ["gen", "lockfile"]);
    assert_eq!(referenced("use crate::gen::{self, Mode};"), ["gen"]);
    assert_eq!(referenced("let x = crate::tasks::up::Up {};"), ["tasks::up"]);
    assert_eq!(referenced("use crate::bench::stats::{median, percentile};"), ["bench"]);
    assert_eq!(referenced("no path here"), Vec::<String>::new());
    assert_eq!(module_of(Path::new("tasks/up.rs")), "tasks::up");
    assert_eq!(module_of(Path::new("gen/compose.rs")), "gen");
}

#[test]
fn a_circle_is_found() {
    let edges = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(circle(&edges), Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()]));
    let acyclic = BTreeMap::from([("a".to_owned(), BTreeSet::from(["b".to_owned()]))]);
    assert_eq!(circle(&acyclic), None);
}
