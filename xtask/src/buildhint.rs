//! What a failed image build means when a dependency had to be compiled:
//! recognised from the failed step's log (uv's "Failed to build `X`", pip's
//! "Failed building wheel for X", a missing `gcc`, `pg_config` or header),
//! turned into a hint that names the package, the Debian packages to put in
//! `build_packages` (and `runtime_packages`), and a wheel to depend on
//! instead where one is well known. Pure text in, text out: `images.rs`
//! calls it where it reports a failed build.

/// What the log says about a dependency built from source.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Hint {
    /// The distribution whose build failed, when the log names it.
    pub package: Option<String>,
    /// What the build lacked, as the log says it (`gcc`, `pg_config`, `Python.h`).
    pub missing: Vec<String>,
    /// Debian packages for `build_packages`, a compiler's first.
    pub build_packages: Vec<String>,
    /// Debian packages the built module loads at run time (`runtime_packages`).
    pub runtime_packages: Vec<String>,
    /// A wheel to depend on instead, when one is well known.
    pub wheel: Option<&'static str>,
}

/// The C compiler and the C library's headers: what every C extension needs.
const COMPILER: [&str; 2] = ["gcc", "libc6-dev"];

/// Headers and the Debian package that ships each (bookworm).
const HEADERS: [(&str, &str); 12] = [
    ("Python.h", "python3-dev"),
    ("libpq-fe.h", "libpq-dev"),
    ("pg_config.h", "libpq-dev"),
    ("ffi.h", "libffi-dev"),
    ("openssl/", "libssl-dev"),
    ("zlib.h", "zlib1g-dev"),
    ("libxml/", "libxml2-dev"),
    ("libxslt/", "libxslt1-dev"),
    ("yaml.h", "libyaml-dev"),
    ("mysql.h", "default-libmysqlclient-dev"),
    ("sqlite3.h", "libsqlite3-dev"),
    ("jpeglib.h", "libjpeg-dev"),
];

/// Run-time libraries of the build packages above that have one.
const RUNTIME: [(&str, &str); 7] = [
    ("libpq-dev", "libpq5"),
    ("libffi-dev", "libffi8"),
    ("libssl-dev", "libssl3"),
    ("libxml2-dev", "libxml2"),
    ("libxslt1-dev", "libxslt1.1"),
    ("libyaml-dev", "libyaml-0-2"),
    ("default-libmysqlclient-dev", "libmariadb3"),
];

/// Distributions that build from source and the wheel that spares it.
const WHEELS: [(&str, &str); 1] = [("psycopg2", "psycopg2-binary (or psycopg[binary], psycopg 3 with its own wheels)")];

/// Reads a failed build's message; `None` when nothing in it says a
/// dependency was being compiled.
pub fn recognize(log: &str) -> Option<Hint> {
    let package = failed_package(log).or_else(|| suggested_package(log));
    let mut hint = Hint { package, ..Hint::default() };
    let mut add = |missing: &str, packages: &[&str]| {
        if !hint.missing.iter().any(|m| m == missing) {
            hint.missing.push(missing.to_owned());
        }
        for p in packages {
            if !hint.build_packages.iter().any(|b| b == p) {
                hint.build_packages.push((*p).to_owned());
            }
        }
    };
    if compiler_missing(log) {
        add("a C compiler (gcc)", &COMPILER);
    }
    let pg_config = [
        "pg_config executable not found",
        "pg_config is required",
        "containing pg_config",
        "--pg-config",
        "the pg_config option",
    ];
    if pg_config.iter().any(|p| log.contains(p)) {
        add("pg_config", &["libpq-dev"]);
    }
    for header in missing_headers(log) {
        let package = HEADERS.iter().find(|(h, _)| header.starts_with(h) || header == *h).map(|(_, p)| *p);
        match package {
            Some(p) => add(&header, &[p]),
            None if header.starts_with("std") || header.starts_with("sys/") || header == "limits.h" => {
                add(&header, &["libc6-dev"])
            }
            None => add(&header, &[]),
        }
    }
    if log.contains("can't find Rust compiler") || (log.contains("Rust compiler") && log.contains("not found")) {
        add("a Rust compiler", &["rustc", "cargo"]);
    }
    if hint.package.is_none() && hint.missing.is_empty() {
        return None;
    }
    if !hint.build_packages.is_empty() && !hint.build_packages.iter().any(|p| p == "gcc") {
        // A header or pg_config is missing: the compiler is the next thing the build needs.
        let mut all: Vec<String> = COMPILER.iter().map(|c| (*c).to_owned()).collect();
        all.append(&mut hint.build_packages);
        hint.build_packages = all;
    }
    hint.runtime_packages = hint
        .build_packages
        .iter()
        .filter_map(|b| RUNTIME.iter().find(|(dev, _)| dev == b).map(|(_, lib)| (*lib).to_owned()))
        .collect();
    hint.wheel = hint.package.as_deref().and_then(|p| WHEELS.iter().find(|(name, _)| *name == p)).map(|(_, w)| *w);
    Some(hint)
}

/// The distribution uv or pip says it could not build.
fn failed_package(log: &str) -> Option<String> {
    for line in log.lines() {
        let line = line.trim_start_matches(|c: char| c.is_whitespace() || "|×╰─▶".contains(c));
        // uv: "error: Failed to build `psycopg2==2.9.10`"
        if let Some(rest) = line.split("Failed to build `").nth(1) {
            let spec = rest.split('`').next().unwrap_or(rest);
            return Some(name_of(spec));
        }
        // pip: "ERROR: Failed building wheel for psycopg2", "Failed to build psycopg2"
        for marker in ["Failed building wheel for ", "Failed to build "] {
            if let Some(rest) = line.split(marker).nth(1) {
                if let Some(word) = rest.split_whitespace().next().filter(|w| *w != "installable") {
                    return Some(name_of(word));
                }
            }
        }
    }
    None
}

/// When uv's or pip's own line is not in the log's tail: the package a
/// build script names ("install 'psycopg2-binary' instead", "building
/// 'psycopg2._psycopg' extension").
fn suggested_package(log: &str) -> Option<String> {
    for line in log.lines() {
        if let Some(rest) = line.split("building '").nth(1) {
            if line.contains("' extension") {
                let module = rest.split('\'').next().unwrap_or(rest);
                return Some(name_of(module.split('.').next().unwrap_or(module)));
            }
        }
    }
    log.lines().find_map(|line| {
        let start = line.find('\'')? + 1;
        let quoted = line[start..].split('\'').next()?;
        quoted.strip_suffix("-binary").filter(|n| !n.is_empty() && !n.contains(' ')).map(name_of)
    })
}

/// `psycopg2==2.9.10`, `Psycopg2 @ https://...` -> `psycopg2`.
fn name_of(spec: &str) -> String {
    let end = spec.find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c))).unwrap_or(spec.len());
    spec[..end].trim_end_matches('.').to_ascii_lowercase().replace('_', "-")
}

fn compiler_missing(log: &str) -> bool {
    let compilers = ["gcc", "cc", "x86_64-linux-gnu-gcc", "aarch64-linux-gnu-gcc", "c++", "g++"];
    compilers.iter().any(|cc| {
        log.contains(&format!("command '{cc}' failed: No such file"))
            || log.contains(&format!("No such file or directory: '{cc}'"))
            || log.contains(&format!("unable to execute '{cc}'"))
            || log.contains(&format!("{cc}: not found"))
            || log.contains(&format!("{cc}: command not found"))
    })
}

/// The headers a compiler said it could not find (`fatal error: X.h: No such file or directory`).
fn missing_headers(log: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.split("fatal error: ").nth(1) else { continue };
        let Some(header) = rest.split(": No such file").next().filter(|_| rest.contains(": No such file")) else {
            continue;
        };
        let header = header.trim().to_owned();
        if !header.is_empty() && !found.contains(&header) {
            found.push(header);
        }
    }
    found
}

impl Hint {
    /// The hint under a failed build: which package, what to declare in
    /// `manifest` (the service's `service.yaml`), the wheel alternative.
    /// `debian_python`: the base image's Python is Debian's (the local base
    /// images), whose headers are not in the image (`python3-dev`).
    pub fn message(&self, manifest: &str, debian_python: bool) -> String {
        let package = self.package.as_deref().unwrap_or("a dependency");
        let mut m =
            format!("hint: {package} is built from source in this image (no wheel fits its Python and platform)");
        if self.missing.is_empty() {
            m.push_str(", and its build failed.\n");
        } else {
            m.push_str(&format!(", and the build lacks {}.\n", self.missing.join(", ")));
        }
        let mut build = self.build_packages.clone();
        if build.is_empty() {
            build = COMPILER.iter().map(|c| (*c).to_owned()).collect();
        }
        if debian_python && !build.iter().any(|p| p == "python3-dev") {
            build.push("python3-dev".to_owned());
        }
        m.push_str(&format!(
            "  Declare what it needs to build in {manifest}, then `cargo xtask gen`:\n    build_packages: [{}]",
            build.join(", ")
        ));
        m.push_str("   # a builder stage installs them; they never reach the image\n");
        if !self.runtime_packages.is_empty() {
            m.push_str(&format!(
                "    runtime_packages: [{}]   # what the built module loads at run time\n",
                self.runtime_packages.join(", ")
            ));
        }
        if debian_python {
            m.push_str("  (python3-dev: the base image runs Debian's python3, whose Python.h is not in it.)\n");
        }
        if self.missing.iter().any(|h| h.ends_with(".h") && !HEADERS.iter().any(|(k, _)| h.starts_with(k))) {
            m.push_str(
                "  For a header not listed, add the Debian -dev package that ships it (`apt-file search <header>`).\n",
            );
        }
        if let Some(wheel) = self.wheel {
            m.push_str(&format!("  Or depend on a wheel instead: {wheel}.\n"));
        }
        m.trim_end().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tail of uv's message when psycopg2 cannot find pg_config (uv 0.13).
    const UV_PG_CONFIG: &str = "error: Failed to build `psycopg2==2.9.10`
  cause: The build backend returned an error
  cause: Call to `setuptools.build_meta:__legacy__.get_requires_for_build_wheel` failed (exit status: 1)
         Error: pg_config executable not found.

         pg_config is required to build psycopg2 from source.  Please add the directory
         containing pg_config to the $PATH or specify the full executable path with the
         If you prefer to avoid building psycopg2 from source, please install the PyPI
         'psycopg2-binary' package instead.
hint: Build failures usually indicate a problem with the package or the build environment";

    /// The last lines of a failed step as the engine reports them: uv's own
    /// "Failed to build" line is cut off, the build script's is there.
    const UV_NO_GCC_TAIL: &str = "  | running build_ext
  | building 'psycopg2._psycopg' extension
  | You may install a binary package by installing 'psycopg2-binary' from PyPI.
  | error: [Errno 2] No such file or directory: 'gcc'
  | hint: Build failures usually indicate a problem with the package or the build environment";

    const PIP_NO_GCC: &str = "      error: command 'gcc' failed: No such file or directory
      [end of output]
  note: This error originates from a subprocess, and is likely not a problem with pip.
  ERROR: Failed building wheel for fastcrc
Failed to build fastcrc
ERROR: Could not build wheels for fastcrc, which is required to install pyproject.toml-based projects";

    /// The engine's message for the failed install step of a service that
    /// depends on psycopg2 on the local base image (uv 0.13.9, the step's last
    /// 15 log lines as the engine keeps them), then the same cut shorter.
    const ENGINE_MESSAGE: &str = "building pysvct-x/pgnobuild:latest failed
step: [runtime 4/7] RUN --mount=type=cache,id=pysvc-venv-pgnobuild-uv-py3.11,target=/var/cache uv pip sync \"$@\"
error: process \"/bin/sh -c uv pip sync\" did not complete successfully: exit code: 1
last log lines:
  |          pg_config is required to build psycopg2 from source.  Please add the directory
  |          containing pg_config to the $PATH or specify the full executable path with the
  |          option:
  | 
  |              python setup.py build_ext --pg-config /path/to/pg_config build ...
  | 
  |          or with the pg_config option in 'setup.cfg'.
  | 
  |          If you prefer to avoid building psycopg2 from source, please install the PyPI
  |          'psycopg2-binary' package instead.
  | 
  |          For further information please check the 'doc/src/install.rst' file (also at
  |          <https://www.psycopg.org/docs/install.html>).
  | 
  | hint: Build failures usually indicate a problem with the package or the build environment";

    #[test]
    fn the_engines_message_for_psycopg2_gets_the_hint_even_cut_short() {
        let cut = ENGINE_MESSAGE.replace("pg_config is required to build psycopg2 from source.", "");
        for message in [ENGINE_MESSAGE, cut.as_str()] {
            let hint = recognize(message).expect("recognised");
            assert_eq!(hint.package.as_deref(), Some("psycopg2"), "{message}");
            assert_eq!(hint.build_packages, ["gcc", "libc6-dev", "libpq-dev"]);
            assert_eq!(hint.runtime_packages, ["libpq5"]);
            assert!(hint.wheel.is_some());
        }
    }

    #[test]
    fn pg_config_names_psycopg2_libpq_and_the_binary_wheel() {
        let hint = recognize(UV_PG_CONFIG).expect("recognised");
        assert_eq!(hint.package.as_deref(), Some("psycopg2"));
        assert_eq!(hint.missing, ["pg_config"]);
        assert_eq!(hint.build_packages, ["gcc", "libc6-dev", "libpq-dev"]);
        assert_eq!(hint.runtime_packages, ["libpq5"]);
        assert!(hint.wheel.unwrap().starts_with("psycopg2-binary"));
        let m = hint.message("services/pgsvc/service.yaml", false);
        assert!(m.starts_with("hint: psycopg2 is built from source"), "{m}");
        assert!(m.contains("lacks pg_config"), "{m}");
        assert!(m.contains("in services/pgsvc/service.yaml, then `cargo xtask gen`"), "{m}");
        assert!(m.contains("build_packages: [gcc, libc6-dev, libpq-dev]"), "{m}");
        assert!(m.contains("runtime_packages: [libpq5]"), "{m}");
        assert!(m.contains("Or depend on a wheel instead: psycopg2-binary (or psycopg[binary]"), "{m}");
        assert!(!m.contains("python3-dev"), "the upstream image has Python's headers: {m}");
        let local = hint.message("services/pgsvc/service.yaml", true);
        assert!(local.contains("build_packages: [gcc, libc6-dev, libpq-dev, python3-dev]"), "{local}");
    }

    #[test]
    fn a_missing_compiler_without_uvs_line_still_names_the_package() {
        let hint = recognize(UV_NO_GCC_TAIL).expect("recognised");
        assert_eq!(hint.package.as_deref(), Some("psycopg2"), "from the extension being built");
        assert_eq!(hint.missing, ["a C compiler (gcc)"]);
        assert_eq!(hint.build_packages, ["gcc", "libc6-dev"]);
        assert!(hint.runtime_packages.is_empty());
    }

    #[test]
    fn pips_failed_wheel_names_the_package() {
        let hint = recognize(PIP_NO_GCC).expect("recognised");
        assert_eq!(hint.package.as_deref(), Some("fastcrc"));
        assert_eq!(hint.build_packages, ["gcc", "libc6-dev"]);
        assert_eq!(hint.wheel, None);
        let m = hint.message("services/x/service.yaml", false);
        assert!(m.contains("hint: fastcrc is built from source") && !m.contains("wheel instead"), "{m}");
    }

    #[test]
    fn missing_headers_map_to_their_dev_packages() {
        let log = "  × Failed to build `lxml==5.3.0`\n\
                   src/lxml/etree.c:96:10: fatal error: Python.h: No such file or directory\n\
                   x.c:1:10: fatal error: libxml/xmlversion.h: No such file or directory\n\
                   y.c:2:10: fatal error: weird/thing.h: No such file or directory\n";
        let hint = recognize(log).unwrap();
        assert_eq!(hint.package.as_deref(), Some("lxml"));
        assert_eq!(hint.missing, ["Python.h", "libxml/xmlversion.h", "weird/thing.h"]);
        assert_eq!(hint.build_packages, ["gcc", "libc6-dev", "python3-dev", "libxml2-dev"]);
        assert_eq!(hint.runtime_packages, ["libxml2"]);
        let m = hint.message("services/x/service.yaml", true);
        assert_eq!(m.matches("python3-dev").count(), 2, "listed once, explained once: {m}");
        assert!(m.contains("apt-file search"), "{m}");
    }

    #[test]
    fn a_failed_build_of_any_kind_names_the_package() {
        let hint = recognize("error: Failed to build `thing @ https://example.com/thing-1.0.tar.gz`").unwrap();
        assert_eq!(hint.package.as_deref(), Some("thing"));
        assert!(hint.missing.is_empty());
        let m = hint.message("services/x/service.yaml", false);
        assert!(m.contains("its build failed") && m.contains("build_packages: [gcc, libc6-dev]"), "{m}");
    }

    #[test]
    fn other_failures_get_no_hint() {
        for log in [
            "error: Hash mismatch for `psycopg-pool==3.2.6`\n  Expected: sha256:0000",
            "COPY failed: file not found in build context",
            "error: Failed to fetch: `https://pypi.org/simple/six/`",
            "E: Unable to locate package libpq-devv",
        ] {
            assert_eq!(recognize(log), None, "{log}");
        }
    }
}
