//! The grammar of every manifest value that lands in a generated file
//! (Dockerfiles, compose.yaml, .env.example), checked when the manifests are
//! loaded, so `gen` reports `file:line:column: what is wrong` plus the fix
//! before it writes anything, and no build or `compose up` fails later on a
//! value it should never have been given.
//!
//! Each rule is a pure function from the value to `Err(message with the
//! fix)`; `stack` and `service` apply them and locate the failing key.

use anyhow::Result;

use super::{input_error, Service, StackManifest, STACK_FILE};

type Rule = std::result::Result<(), String>;

/// A Python version as the `python:<version>-slim-bookworm` tag takes it:
/// `MAJOR.MINOR` or `MAJOR.MINOR.PATCH`, numbers without leading zeros.
pub fn python_version(v: &str) -> Rule {
    let parts: Vec<&str> = v.split('.').collect();
    if (2..=3).contains(&parts.len()) && parts.iter().all(|p| number(p)) && parts[0] == "3" {
        return Ok(());
    }
    Err(format!("python_version {v:?} is not a Python 3 version: write MAJOR.MINOR (quoted), like \"3.11\""))
}

/// A uv release as its image tag and its PyPI pin take it: `X.Y.Z`.
pub fn uv_version(v: &str) -> Rule {
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() == 3 && parts.iter().all(|p| number(p)) {
        return Ok(());
    }
    Err(format!("uv_version {v:?} is not a uv release: write X.Y.Z (quoted), like \"0.13.9\""))
}

fn number(p: &str) -> bool {
    !p.is_empty() && p.len() <= 9 && p.chars().all(|c| c.is_ascii_digit()) && (p == "0" || !p.starts_with('0'))
}

/// Kafka's own rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not
/// `.` or `..`.
pub fn kafka_topic(t: &str) -> Rule {
    let fix = "use 1 to 249 letters, digits, '.', '_' or '-', like \"search-requests\"";
    if t.is_empty() || t.len() > 249 {
        return Err(format!("Kafka topic {t:?} has {} characters: {fix}", t.len()));
    }
    if t == "." || t == ".." {
        return Err(format!("Kafka topic {t:?} is reserved: {fix}"));
    }
    match t.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        Some(c) => Err(format!("Kafka topic {t:?} contains {c:?}, which Kafka refuses: {fix}")),
        None => Ok(()),
    }
}

/// One path component of an image name (OCI distribution grammar):
/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
pub fn image_component(c: &str) -> Rule {
    let separator_ok = |seps: &str| matches!(seps, "." | "_" | "__") || seps.chars().all(|s| s == '-');
    let mut seps = String::new();
    let mut ok = !c.is_empty();
    for (i, ch) in c.char_indices() {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            ok &= separator_ok(&seps);
            seps.clear();
        } else {
            ok &= ".-_".contains(ch) && i > 0;
            seps.push(ch);
        }
    }
    if ok && seps.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{c:?} cannot be part of an image name: use lowercase letters and digits, joined by single '.', '_' or '-' \
         (not at either end), like \"search-worker\""
    ))
}

/// An image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn image_tag(t: &str) -> Rule {
    let ok = (1..=128).contains(&t.len())
        && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{t:?} is not an image tag: use up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'"
        ))
    }
}

/// A full image reference: `[host[:port]/]path[:tag][@algorithm:digest]`.
pub fn image_reference(r: &str) -> Rule {
    let fix = "write it like \"docker/dockerfile:1\" or \"registry.example.com:5000/team/image:1.2\"";
    let (name, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c))
        });
        if !ok {
            return Err(format!("image {r:?} has a malformed digest (want sha256:<64 hex>): {fix}"));
        }
    }
    // A tag is the part after the last ':' that is not followed by a '/'.
    let (path, tag) = match name.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, Some(t)),
        _ => (name, None),
    };
    if let Some(t) = tag {
        image_tag(t).map_err(|e| format!("image {r:?}: {e}"))?;
    }
    if path.is_empty() || path.len() > 255 {
        return Err(format!("image {r:?} has no valid name: {fix}"));
    }
    let mut components: Vec<&str> = path.split('/').collect();
    // The first component is a registry host when it looks like one.
    if components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost") {
        let host = components.remove(0);
        registry_host(host).map_err(|e| format!("image {r:?}: {e}"))?;
    }
    for c in components {
        image_component(c).map_err(|e| format!("image {r:?}: {e}"))?;
    }
    Ok(())
}

fn registry_host(h: &str) -> Rule {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (h, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if host.split('.').all(label_ok) && port_ok {
        Ok(())
    } else {
        Err(format!("{h:?} is not a registry host[:port]"))
    }
}

/// A port a container listens on or the host publishes: 1 to 65535.
pub fn port(p: u16) -> Rule {
    if p == 0 {
        return Err("port 0 cannot be published: pick a port from 1 to 65535, like 8000".to_owned());
    }
    Ok(())
}

/// A repository-relative path the generated files copy or mount: plain
/// characters only (COPY, compose's `src:dst:ro` and `$` interpolation would
/// misread others), inside the repository.
pub fn repo_path(p: &str) -> Rule {
    let fix = "use a relative path inside the repository made of letters, digits, '.', '_', '-' and '/', \
               like \"services/shared/pysvc_common\"";
    if p.is_empty() || p.starts_with('/') {
        return Err(format!("path {p:?} is not relative: {fix}"));
    }
    if p.split('/').any(|c| c == "..") {
        return Err(format!("path {p:?} leaves the repository: {fix}"));
    }
    match p.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-/".contains(*c))) {
        Some(c) => Err(format!("path {p:?} contains {c:?}: {fix}")),
        None => Ok(()),
    }
}

/// The HTTP path of a health probe: it lands in a Python string inside the
/// healthcheck, so only URL path characters, no quotes, spaces or `$`.
pub fn http_path(p: &str) -> Rule {
    let fix = "write an absolute URL path like \"/ready\" (letters, digits and -._~!&()*+,;=:@%/)";
    if !p.starts_with('/') {
        return Err(format!("health.path {p:?} must start with '/': {fix}"));
    }
    match p.chars().find(|c| !(c.is_ascii_alphanumeric() || "-._~!&()*+,;=:@%/".contains(*c))) {
        Some(c) => Err(format!("health.path {p:?} contains {c:?}: {fix}")),
        None => Ok(()),
    }
}

/// An environment variable name: `[A-Z_][A-Z0-9_]*`.
pub fn env_key(k: &str) -> Rule {
    let ok = k.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("environment name {k:?} must be UPPER_SNAKE_CASE, not starting with a digit, like \"LOG_LEVEL\""))
    }
}

/// An environment value: one line. A `$` is fine: the compose renderer
/// writes it as `$$`, so it reaches the service literally.
pub fn env_value(k: &str, v: &str) -> Rule {
    if v.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "environment value of {k} contains a line break or control character: keep it on one line"
        ));
    }
    Ok(())
}

/// One exec-form argument (command, health command): no line breaks or
/// control characters (a `$` is escaped by the compose renderer).
pub fn command_arg(what: &str, a: &str) -> Rule {
    if a.chars().any(|c| c.is_control()) {
        return Err(format!(
            "{what} argument {a:?} contains a line break or control character: split it into arguments"
        ));
    }
    if a.is_empty() {
        return Err(format!("{what} has an empty argument: remove it"));
    }
    Ok(())
}

/// A health command's argument: also no space, since Podman 4's Docker API
/// splits a healthcheck's arguments on spaces (the probe would run broken).
pub fn health_arg(a: &str) -> Rule {
    command_arg("health.command", a)?;
    if a.contains(' ') {
        return Err(format!(
            "health.command argument {a:?} contains a space, which Podman splits into several arguments: \
             move the check into a module (e.g. `[python, -m, mypkg.health]`)"
        ));
    }
    Ok(())
}

/// The image description label: one line, no `$` or `\` (the Dockerfile
/// would expand or escape them).
pub fn description(d: &str) -> Rule {
    match d.chars().find(|c| c.is_control() || *c == '$' || *c == '\\') {
        Some(c) => Err(format!("description contains {c:?}: keep it to one line of plain text")),
        None => Ok(()),
    }
}

/// A Debian package name: `[a-z0-9][a-z0-9+.-]+`.
pub fn debian_package(p: &str) -> Rule {
    let ok = p.len() >= 2
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("{p:?} is not a Debian package name (lowercase letters, digits, '+', '.', '-'), like \"libpq5\""))
    }
}

/// `stack.yaml`'s values.
pub(super) fn stack(m: &StackManifest, text: &str) -> Result<()> {
    let at = |key: &str, rule: Rule| rule.map_err(|msg| input_error(STACK_FILE, text, key, msg));
    at("project", image_component(&m.project))?;
    at("python_version", python_version(&m.python_version))?;
    at("uv_version", uv_version(&m.uv_version))?;
    if let Some(syntax) = &m.dockerfile_syntax {
        at("dockerfile_syntax", image_reference(syntax))?;
    }
    for shared in &m.shared {
        at(&shared.path, repo_path(&shared.path))?;
    }
    at("init_scripts", repo_path(&m.postgres.init_scripts))?;
    at("host_port", port(m.postgres.host_port))?;
    for topic in &m.kafka.topics {
        at(topic, kafka_topic(topic))?;
    }
    Ok(())
}

/// One `service.yaml`'s values (its pyproject's are checked as it is read).
pub(super) fn service(s: &Service, text: &str) -> Result<()> {
    let file = s.manifest_path();
    let at = |key: &str, rule: Rule| rule.map_err(|msg| input_error(&file, text, key, msg));
    let m = &s.manifest;
    at("kind", image_component(&s.name).map_err(|e| format!("service folder name: {e}")))?;
    for arg in &m.command {
        at("command", command_arg("command", arg))?;
    }
    for arg in m.health.command.iter().flatten() {
        at("command", health_arg(arg))?;
    }
    if let Some(path) = &m.health.path {
        at("path", http_path(path))?;
    }
    for package in &m.packages {
        at("packages", repo_path(package))?;
    }
    for (key, p) in [("port", m.port), ("host_port", m.host_port)] {
        if let Some(p) = p {
            at(key, port(p))?;
        }
    }
    for pkg in &m.runtime_packages {
        at("runtime_packages", debian_package(pkg))?;
    }
    for pkg in &m.build_packages {
        at("build_packages", debian_package(pkg))?;
    }
    for (key, value) in &m.environment {
        at(key, env_key(key))?;
        at(key, env_value(key, value))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(rule: Rule, needle: &str) {
        let msg = rule.expect_err("must be refused");
        assert!(msg.contains(needle), "{msg}");
    }

    #[test]
    fn python_versions() {
        for ok in ["3.11", "3.12.4", "3.9"] {
            python_version(ok).unwrap();
        }
        for no in ["3.11 ", "3", "3.11-slim", "03.11", "3.x", "2.7", ""] {
            bad(python_version(no), "like \"3.11\"");
        }
    }

    #[test]
    fn uv_versions() {
        uv_version("0.13.9").unwrap();
        for no in ["latest", "0.13", "0.13.9 ", "v0.13.9", "0.13.9rc1"] {
            bad(uv_version(no), "like \"0.13.9\"");
        }
    }

    #[test]
    fn kafka_topics() {
        for ok in ["search-requests", "a.b_c", &"x".repeat(249)] {
            kafka_topic(ok).unwrap();
        }
        bad(kafka_topic("search requests"), "contains ' '");
        bad(kafka_topic("topic/1"), "contains '/'");
        bad(kafka_topic(""), "0 characters");
        bad(kafka_topic(&"x".repeat(250)), "250 characters");
        bad(kafka_topic(".."), "reserved");
        bad(kafka_topic("."), "reserved");
    }

    #[test]
    fn image_components() {
        for ok in ["pysvc", "search-worker", "a__b", "a.b", "a--b", "x1"] {
            image_component(ok).unwrap();
        }
        for no in ["Pysvc", "pysvc-", "-pysvc", "a..b", "a___b", "a_.b", "", "a b"] {
            bad(image_component(no), "cannot be part of an image name");
        }
    }

    #[test]
    fn image_tags() {
        for ok in ["latest", "3.11-slim-bookworm", "_x", "0.13.9"] {
            image_tag(ok).unwrap();
        }
        for no in ["", ".hidden", "-x", "a:b", &"x".repeat(129)] {
            bad(image_tag(no), "is not an image tag");
        }
    }

    #[test]
    fn image_references() {
        for ok in [
            "docker/dockerfile:1",
            "python:3.11-slim-bookworm",
            "ghcr.io/astral-sh/uv:0.13.9",
            "localhost:5000/team/app",
            "registry.example.com:5000/a/b:1.2",
            "alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            image_reference(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        bad(image_reference("Docker/dockerfile:1"), "cannot be part of an image name");
        bad(image_reference("docker/dockerfile:"), "is not an image tag");
        bad(image_reference("registry:99999/a"), "not a registry host");
        bad(image_reference("alpine@sha256:xyz"), "malformed digest");
        bad(image_reference("docker/dockerfile:1 # comment"), "is not an image tag");
    }

    #[test]
    fn ports() {
        port(8000).unwrap();
        bad(port(0), "port 0");
    }

    #[test]
    fn repo_paths() {
        repo_path("services/shared/pysvc_common").unwrap();
        bad(repo_path("/etc"), "not relative");
        bad(repo_path("services/../../etc"), "leaves the repository");
        bad(repo_path("init:rw"), "contains ':'");
        bad(repo_path("my dir"), "contains ' '");
        bad(repo_path("$HOME"), "contains '$'");
    }

    #[test]
    fn http_paths() {
        http_path("/ready").unwrap();
        bad(http_path("ready"), "must start with '/'");
        bad(http_path("/ready'); import os; ('"), "contains '\\''");
        bad(http_path("/a b"), "contains ' '");
        bad(http_path("/$HOME"), "contains '$'");
    }

    #[test]
    fn env_keys_and_values() {
        env_key("LOG_LEVEL").unwrap();
        bad(env_key("log_level"), "UPPER_SNAKE_CASE");
        bad(env_key("1ABC"), "not starting with a digit");
        env_value("K", "costs $5").unwrap();
        bad(env_value("K", "a\nb"), "line break");
    }

    #[test]
    fn command_args() {
        command_arg("command", "uvicorn").unwrap();
        bad(command_arg("command", "a\nb"), "line break");
        bad(command_arg("command", ""), "empty argument");
        command_arg("command", "a b").unwrap();
        bad(health_arg("import os; os"), "contains a space");
    }

    #[test]
    fn descriptions() {
        description("Search API (FastAPI)").unwrap();
        bad(description("two\nlines"), "one line");
        bad(description("costs $5"), "'$'");
    }

    /// Through `load`: located at the value, and the pyproject a service needs.
    #[test]
    fn load_locates_a_bad_value_and_a_missing_pyproject() {
        use crate::manifest::tests::{fixture, write, STACK};
        let root = fixture();
        write(&root, "stack.yaml", &STACK.replace("topics: [jobs]", "topics: [jobs, bad topic]"));
        let err = format!("{:#}", crate::manifest::load(&root).unwrap_err());
        assert!(err.starts_with("stack.yaml:10:18: Kafka topic \"bad topic\" contains ' '"), "{err}");
        write(&root, "stack.yaml", STACK);
        std::fs::remove_file(root.join("services/web/pyproject.toml")).unwrap();
        let err = format!("{:#}", crate::manifest::load(&root).unwrap_err());
        assert!(err.starts_with("services/web/service.yaml:1:1: services/web/pyproject.toml is missing"), "{err}");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn debian_packages() {
        debian_package("libpq5").unwrap();
        debian_package("g++").unwrap();
        bad(debian_package("LibPQ"), "not a Debian package name");
        bad(debian_package("a"), "not a Debian package name");
        bad(debian_package("curl;rm"), "not a Debian package name");
    }
}
