//! The SBOM of a service image: CycloneDX 1.6 JSON made from its hashed
//! requirements file (every package the image installs, with version and
//! hashes), its base image and its Debian runtime packages. Pure: the same
//! inputs give the same bytes (no timestamp, no serial number), so an
//! unchanged lock keeps the SBOM's layer cached.
//!
//! The requirements are read from their text by [`parse_requirements`], which
//! takes the hashed format uv and pip share (`name==version ; marker \`
//! followed by `--hash=sha256:…` lines), whichever file holds it.

use serde_json::{json, Value};

use super::upstream_python_image;
use crate::manifest::{Service, Stack};

/// Where the SBOM is inside every image (README documents it).
pub const SBOM_DIR_IN_IMAGE: &str = "/usr/share/sbom";

/// The committed SBOM of a service (what `docker build` from the repository copies).
pub fn sbom_path(service: &Service) -> String {
    format!("docker/{}.cdx.json", service.name)
}

pub fn sbom_in_image(service: &Service) -> String {
    format!("{SBOM_DIR_IN_IMAGE}/{}.cdx.json", service.name)
}

/// The image the service is built on: its reference and, when the engine
/// knows it, its image id (`sha256:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    pub reference: String,
    pub id: Option<String>,
}

impl BaseImage {
    /// The Dockerfile's default base (what a plain `docker build` uses).
    pub fn upstream(stack: &Stack) -> BaseImage {
        BaseImage { reference: upstream_python_image(stack), id: None }
    }
}

/// One pinned package of a hashed requirements file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Normalised (PEP 503): lower case, runs of `-_.` as one `-`.
    pub name: String,
    pub version: String,
    /// sha256 hex digests, as listed.
    pub hashes: Vec<String>,
    pub marker: Option<String>,
}

/// The pinned packages of a hashed requirements file's text, in file order.
/// Comments and option lines (`--index-url`, `-e <path>`) are skipped; a
/// requirement that is not pinned with `==` or has no sha256 hash is an
/// error naming its line.
pub fn parse_requirements(text: &str) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    for (line_no, logical) in logical_lines(text) {
        let mut parts = logical.split_whitespace().filter(|p| !p.is_empty()).peekable();
        let Some(first) = parts.peek().copied() else { continue };
        if first.starts_with('-') && !first.starts_with("--hash") {
            continue;
        }
        let (spec, marker) = match logical.split_once(';') {
            Some((spec, rest)) => {
                let marker: String = rest.split(" --hash").next().unwrap_or("").trim().to_owned();
                (spec.trim().to_owned(), Some(marker).filter(|m| !m.is_empty()))
            }
            None => (logical.split(" --hash").next().unwrap_or("").trim().to_owned(), None),
        };
        let Some((name, version)) = spec.split_once("==") else {
            return Err(format!("line {line_no}: {spec:?} is not pinned with `==` (run `cargo xtask lock`)"));
        };
        let name = name.split('[').next().unwrap_or(name).trim();
        let hashes: Vec<String> =
            logical.split_whitespace().filter_map(|p| p.strip_prefix("--hash=sha256:")).map(str::to_owned).collect();
        if hashes.is_empty() || hashes.iter().any(|h| h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit())) {
            return Err(format!("line {line_no}: {name} has no valid --hash=sha256:<64 hex> (run `cargo xtask lock`)"));
        }
        out.push(Requirement { name: normalise(name), version: version.trim().to_owned(), hashes, marker });
    }
    Ok(out)
}

/// Joins `\`-continued lines and drops comments: (first line number, text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = match raw.find(" #").or_else(|| raw.trim_start().starts_with('#').then_some(0)) {
            Some(at) => &raw[..at],
            None => raw,
        };
        let (body, continues) = match line.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (line, false),
        };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        entry.1.push(' ');
        entry.1.push_str(body.trim());
        if !continues {
            out.extend(current.take().filter(|(_, t)| !t.trim().is_empty()).map(|(n, t)| (n, t.trim().to_owned())));
        }
    }
    out.extend(current.filter(|(_, t)| !t.trim().is_empty()).map(|(n, t)| (n, t.trim().to_owned())));
    out
}

fn normalise(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if "-_.".contains(c) {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Whether a PEP 508 marker holds in the image: CPython on Linux, the
/// stack's Python version. A variable it does not know (the machine's
/// architecture) counts as true, so nothing installed is left out.
pub fn marker_holds(marker: &str, python_version: &str) -> bool {
    let tokens = marker_tokens(marker);
    let mut pos = 0;
    marker::or(&tokens, &mut pos, python_version).unwrap_or(true)
}

fn marker_tokens(marker: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = marker.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == ')' {
            tokens.push(c.to_string());
            chars.next();
        } else if c == '\'' || c == '"' {
            chars.next();
            let quoted: String = chars.by_ref().take_while(|&q| q != c).collect();
            tokens.push(format!("'{quoted}"));
        } else if "<>=!~".contains(c) {
            let op: String = std::iter::from_fn(|| chars.next_if(|o| "<>=!~".contains(*o))).collect();
            tokens.push(op);
        } else {
            let word: String =
                std::iter::from_fn(|| chars.next_if(|w| w.is_alphanumeric() || "_.-".contains(*w))).collect();
            if word.is_empty() {
                chars.next();
            } else {
                tokens.push(word);
            }
        }
    }
    tokens
}

/// A small recursive-descent evaluator of marker tokens; `None` when the
/// marker is beyond it (then the package is listed).
mod marker {
    pub(super) fn or(t: &[String], pos: &mut usize, py: &str) -> Option<bool> {
        let mut value = and(t, pos, py)?;
        while t.get(*pos).is_some_and(|w| w == "or") {
            *pos += 1;
            value |= and(t, pos, py)?;
        }
        Some(value)
    }

    fn and(t: &[String], pos: &mut usize, py: &str) -> Option<bool> {
        let mut value = atom(t, pos, py)?;
        while t.get(*pos).is_some_and(|w| w == "and") {
            *pos += 1;
            value &= atom(t, pos, py)?;
        }
        Some(value)
    }

    fn atom(t: &[String], pos: &mut usize, py: &str) -> Option<bool> {
        if t.get(*pos)? == "(" {
            *pos += 1;
            let value = or(t, pos, py)?;
            (t.get(*pos)? == ")").then_some(())?;
            *pos += 1;
            return Some(value);
        }
        let left = value(t.get(*pos)?, py);
        let mut op = t.get(*pos + 1)?.clone();
        *pos += 2;
        if op == "not" && t.get(*pos)? == "in" {
            op = "not in".to_owned();
            *pos += 1;
        }
        let right = value(t.get(*pos)?, py);
        *pos += 1;
        compare(left?, &op, right?)
    }

    /// A literal, or the image's value of a marker variable.
    fn value(token: &str, py: &str) -> Option<String> {
        if let Some(literal) = token.strip_prefix('\'') {
            return Some(literal.to_owned());
        }
        let known = match token {
            "sys_platform" => "linux",
            "platform_system" => "Linux",
            "os_name" => "posix",
            "implementation_name" => "cpython",
            "platform_python_implementation" => "CPython",
            "python_version" => return Some(py.split('.').take(2).collect::<Vec<_>>().join(".")),
            "python_full_version" => return Some(py.to_owned()),
            _ => return None,
        };
        Some(known.to_owned())
    }

    fn compare(left: String, op: &str, right: String) -> Option<bool> {
        let version = |v: &str| -> Option<Vec<u64>> { v.split('.').map(|p| p.parse().ok()).collect() };
        let ordering = match (version(&left), version(&right)) {
            (Some(mut a), Some(mut b)) => {
                let n = a.len().max(b.len());
                a.resize(n, 0);
                b.resize(n, 0);
                a.cmp(&b)
            }
            _ => left.cmp(&right),
        };
        use std::cmp::Ordering::*;
        Some(match op {
            "==" | "===" => ordering == Equal,
            "!=" => ordering != Equal,
            "<" => ordering == Less,
            "<=" => ordering != Greater,
            ">" => ordering == Greater,
            ">=" => ordering != Less,
            "in" => right.contains(&left),
            "not in" => !right.contains(&left),
            _ => return None,
        })
    }
}

/// The SBOM of `service` built on `base`, listing the `requirements` the
/// image installs (those whose marker holds there).
pub fn sbom(stack: &Stack, service: &Service, requirements: &[Requirement], base: &BaseImage) -> String {
    let python = &stack.manifest.python_version;
    let mut components = vec![base_component(base)];
    let mut refs = vec![Value::from("base-image")];
    for r in requirements.iter().filter(|r| r.marker.as_deref().is_none_or(|m| marker_holds(m, python))) {
        let purl = format!("pkg:pypi/{}@{}", r.name, r.version);
        let mut c = json!({
            "type": "library",
            "bom-ref": purl,
            "name": r.name,
            "version": r.version,
            "purl": purl,
            "hashes": r.hashes.iter().map(|h| json!({"alg": "SHA-256", "content": h})).collect::<Vec<_>>(),
        });
        if let Some(m) = &r.marker {
            c["properties"] = json!([{"name": "pysvc:marker", "value": m}]);
        }
        refs.push(Value::from(purl));
        components.push(c);
    }
    let mut packages = service.manifest.runtime_packages.clone();
    packages.sort();
    packages.dedup();
    for p in packages {
        let purl = format!("pkg:deb/debian/{p}?distro=bookworm");
        refs.push(Value::from(purl.clone()));
        components.push(json!({
            "type": "library",
            "bom-ref": purl,
            "name": p,
            "purl": purl,
            "properties": [{"name": "pysvc:version", "value": "the Debian bookworm release's, installed at build time"}],
        }));
    }
    let bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": service.name,
                "description": service.project.description,
            },
            "tools": {"components": [{"type": "application", "name": "cargo xtask"}]},
            "properties": [
                {"name": "pysvc:requirements", "value": service.requirements_path()},
                {"name": "pysvc:path-in-image", "value": sbom_in_image(service)},
            ],
        },
        "components": components,
        "dependencies": [{"ref": "image", "dependsOn": refs}],
    });
    serde_json::to_string_pretty(&bom).expect("JSON values serialize") + "\n"
}

/// The base image as a container component; its image id as its hash.
fn base_component(base: &BaseImage) -> Value {
    let (name, tag) = match base.reference.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (base.reference.as_str(), "latest"),
    };
    let mut c = json!({
        "type": "container",
        "bom-ref": "base-image",
        "name": name,
        "version": tag,
        "purl": format!("pkg:docker/{name}@{tag}"),
        "properties": [{"name": "pysvc:role", "value": "base image"}],
    });
    if let Some(hex) = base.id.as_deref().and_then(|id| id.strip_prefix("sha256:")) {
        c["hashes"] = json!([{"alg": "SHA-256", "content": hex}]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = "# api: pinned by `cargo xtask lock`\n\
Annotated_Doc==0.0.7 \\\n    --hash=sha256:0a30ef8f5322a4173720ae6712dc9a5e58f5a19868f3f167b4b5778db066c2b5 \\\n    \
--hash=sha256:6bc31bbbec6dfaaedc1676dbc11dbda96fe22a2b5c400e9ebad113fec44a9dc6\n    # via fastapi\n\
--index-url https://pypi.org/simple\n\
-e ./services/shared\n\
tzdata==2026.6 ; sys_platform == 'win32' \\\n    --hash=sha256:1111111111111111111111111111111111111111111111111111111111111111\n\
psycopg-binary==3.3.9 ; implementation_name != 'pypy' \\\n    \
--hash=sha256:2222222222222222222222222222222222222222222222222222222222222222\n";

    #[test]
    fn the_hashed_format_is_read_with_markers_and_without_options() {
        let reqs = parse_requirements(LOCK).unwrap();
        let names: Vec<&str> = reqs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["annotated-doc", "tzdata", "psycopg-binary"]);
        assert_eq!(reqs[0].version, "0.0.7");
        assert_eq!(reqs[0].hashes.len(), 2);
        assert_eq!(reqs[0].marker, None);
        assert_eq!(reqs[1].marker.as_deref(), Some("sys_platform == 'win32'"));
        let err = parse_requirements("ok==1 \\\n  --hash=sha256:abc\n").unwrap_err();
        assert!(err.starts_with("line 1: ok has no valid --hash"), "{err}");
        let err = parse_requirements("\n\nfastapi>=1 \\\n  --hash=sha256:00\n").unwrap_err();
        assert!(err.starts_with("line 3: \"fastapi>=1\" is not pinned"), "{err}");
    }

    #[test]
    fn markers_are_evaluated_for_cpython_on_linux() {
        let holds = |m| marker_holds(m, "3.11");
        assert!(!holds("sys_platform == 'win32'"));
        assert!(holds("implementation_name != 'pypy'"));
        assert!(holds("platform_python_implementation != 'PyPy' and python_version >= '3.9'"));
        assert!(!holds("python_full_version < '3.10'"));
        assert!(holds("(sys_platform == 'darwin' or sys_platform == 'linux') and python_version < '3.12'"));
        assert!(holds("platform_machine == 'aarch64'"), "an unknown variable keeps the package");
        assert!(holds("'linux' in sys_platform") && !holds("sys_platform not in 'linux'"));
    }
}
