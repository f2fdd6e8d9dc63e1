//! What the xtask reads from a workspace member's `pyproject.toml`: the
//! `[project]` table's `name`, `description` and `requires-python` (PEP 621),
//! and whether a `[tool.mypy]` table is there. uv reads everything else
//! (dependencies, groups, sources, the build backend); the xtask never
//! writes or resolves them.
//!
//! A reader for these few keys, not a TOML parser: each must be a one-line
//! string (basic `"..."` or literal `'...'`) in the `[project]` table, the
//! form `uv init` and `cargo xtask new-service` write. Anything else is
//! reported as `file:line:column` with the form to use.

use super::InputError;

/// A member's PEP 621 metadata, as far as the images need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The distribution name (`api-server`), as uv's `--package` takes it.
    pub name: String,
    /// One line; the image's OCI description label.
    pub description: String,
    /// The Python versions the member supports (`>=3.11`).
    pub requires_python: String,
    /// Whether the file has a `[tool.mypy]` table (its own type-check settings).
    pub has_mypy_config: bool,
}

/// Where a key was found: 1-based line and the column of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub line: usize,
    pub column: usize,
}

/// The `[project]` string values (with where each is) and the tables seen.
struct Scan {
    values: Vec<(String, String, At)>,
    project_line: Option<usize>,
    has_mypy_config: bool,
}

const KEYS: [&str; 3] = ["name", "description", "requires-python"];

/// Reads `text` (the contents of `file`); errors name the file, line and column.
pub fn parse(file: &str, text: &str) -> Result<(Project, Vec<(String, At)>), InputError> {
    let scan = scan(file, text)?;
    let err = |line: usize, column: usize, message: String| InputError { file: file.to_owned(), line, column, message };
    let Some(project_line) = scan.project_line else {
        return Err(err(1, 1, "no [project] table: a workspace member needs PEP 621 metadata (name, version, description, requires-python, dependencies)".to_owned()));
    };
    let get = |key: &str| -> Result<(String, At), InputError> {
        scan.values.iter().find(|(k, _, _)| k == key).map(|(_, v, at)| (v.clone(), *at)).ok_or_else(|| {
            err(project_line, 1, format!("[project] has no `{key}`: add `{key} = \"...\"` (a one-line string)"))
        })
    };
    let (name, at_name) = get("name")?;
    let (description, at_description) = get("description")?;
    let (requires_python, at_python) = get("requires-python")?;
    let project = Project { name, description, requires_python, has_mypy_config: scan.has_mypy_config };
    let places = vec![
        ("name".to_owned(), at_name),
        ("description".to_owned(), at_description),
        ("requires-python".to_owned(), at_python),
    ];
    Ok((project, places))
}

fn scan(file: &str, text: &str) -> Result<Scan, InputError> {
    let mut scan = Scan { values: Vec::new(), project_line: None, has_mypy_config: false };
    let mut table = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let indent = raw.len() - line.len();
        if let Some(header) = line.strip_prefix('[') {
            table = header.split(']').next().unwrap_or_default().trim().to_owned();
            if table == "project" {
                scan.project_line = Some(i + 1);
            }
            scan.has_mypy_config |= table == "tool.mypy";
            continue;
        }
        if table != "project" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim().trim_matches('"');
        if !KEYS.contains(&key) {
            continue;
        }
        let column = indent + line.len() - value.trim_start().len() + 1;
        let value = string_value(value.trim()).map_err(|message| InputError {
            file: file.to_owned(),
            line: i + 1,
            column,
            message: format!("`{key}`: {message}"),
        })?;
        scan.values.push((key.to_owned(), value, At { line: i + 1, column }));
    }
    Ok(scan)
}

/// A one-line TOML string, with a comment after it allowed.
fn string_value(v: &str) -> Result<String, String> {
    let fix = "write it as a one-line string, like \"Search API\"";
    if v.starts_with("\"\"\"") || v.starts_with("'''") {
        return Err(format!("multi-line strings are not read here: {fix}"));
    }
    if let Some(rest) = v.strip_prefix('\'') {
        let end = rest.find('\'').ok_or_else(|| format!("unterminated string: {fix}"))?;
        return Ok(rest[..end].to_owned());
    }
    let Some(rest) = v.strip_prefix('"') else {
        return Err(format!("not a string: {fix}"));
    };
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Ok(out),
            '\\' => match chars.next() {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(other) => return Err(format!("the escape \\{other} is not read here: {fix}")),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(format!("unterminated string: {fix}"))
}

/// A distribution name as uv compares them (PEP 503: lowercase, runs of
/// `-`, `_` and `.` become one `-`).
pub fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: &str = "# a service\n[project]\nname = \"api-server\"\nversion = \"0.1.0\"\n\
        description = \"Search \\\"API\\\"\"  # shown in the image label\nrequires-python = '>=3.11'\n\
        dependencies = [\n    \"fastapi\",\n]\n\n[tool.uv.sources]\nname = \"not this one\"\n";

    #[test]
    fn reads_the_three_keys_of_the_project_table() {
        let (p, places) = parse("pyproject.toml", MEMBER).unwrap();
        assert_eq!(p.name, "api-server");
        assert_eq!(p.description, "Search \"API\"");
        assert_eq!(p.requires_python, ">=3.11");
        assert!(!p.has_mypy_config);
        assert_eq!(places[2], ("requires-python".to_owned(), At { line: 6, column: 19 }));
        let (p, _) = parse("p", &format!("{MEMBER}[tool.mypy]\nstrict = false\n")).unwrap();
        assert!(p.has_mypy_config);
    }

    #[test]
    fn forms_it_cannot_read_are_located_with_the_fix() {
        let err = parse("s/pyproject.toml", &MEMBER.replace("'>=3.11'", "[\">=3.11\"]")).unwrap_err();
        assert_eq!(err.to_string().split(": `").next(), Some("s/pyproject.toml:6:19"), "{err}");
        assert!(err.message.contains("one-line string"), "{err}");
        let err = parse("p", &MEMBER.replace("description = ", "description = \"\"\"")).unwrap_err();
        assert!(err.message.contains("multi-line"), "{err}");
        let err = parse("p", &MEMBER.replace("requires-python", "python")).unwrap_err();
        assert!(err.to_string().starts_with("p:2:1: [project] has no `requires-python`"), "{err}");
        let err = parse("p", "[tool.uv.workspace]\nmembers = []\n").unwrap_err();
        assert!(err.message.starts_with("no [project] table"), "{err}");
    }

    #[test]
    fn names_are_normalized_like_uv() {
        assert_eq!(normalize("Api_Server"), "api-server");
        assert_eq!(normalize("a.-_b"), "a-b");
    }
}
