//! Build progress that arrives as text instead of BuildKit's protobuf
//! traces, turned into the same [`Status`] records so one `BuildTrace`
//! keeps steps, cache hits, errors and logs whatever the builder:
//!
//! - `docker buildx build --progress=plain` (the containerd image store's
//!   path): `#<n> <name>` opens step n, then `#<n> CACHED`, `#<n> DONE 0.3s`,
//!   `#<n> ERROR: <why>` or `#<n> <log line>`;
//! - buildah behind Podman's `/build`: `STEP 2/7: RUN ...` opens a step,
//!   `--> Using cache <id>` marks it cached, `--> <id>` completes it, any
//!   other line is its log.

use std::collections::BTreeMap;

use super::trace::{Log, Status, Vertex};

/// Reads `docker buildx build --progress=plain` output, one line at a time.
#[derive(Default)]
pub struct Plain {
    names: BTreeMap<String, String>,
}

impl Plain {
    pub fn line(&mut self, line: &str) -> Option<Status> {
        let rest = line.strip_prefix('#')?;
        let (id, text) = rest.split_once(' ')?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id == "0" {
            return None;
        }
        let digest = format!("#{id}");
        let Some(name) = self.names.get(&digest).cloned() else {
            self.names.insert(digest.clone(), text.to_owned());
            return Some(vertex(Vertex { digest, name: text.to_owned(), started: true, ..Vertex::default() }));
        };
        let v = Vertex { digest: digest.clone(), name: name.clone(), started: true, ..Vertex::default() };
        let status = if text == "CACHED" {
            vertex(Vertex { cached: true, completed: true, ..v })
        } else if text.starts_with("DONE ") || text == "DONE" {
            vertex(Vertex { completed: true, ..v })
        } else if let Some(why) = text.strip_prefix("ERROR: ") {
            vertex(Vertex { completed: true, error: why.to_owned(), ..v })
        } else if text == name {
            return None;
        } else {
            log(&digest, log_text(text))
        };
        Some(status)
    }
}

/// A log line without its leading seconds-since-start stamp.
fn log_text(text: &str) -> &str {
    match text.split_once(' ') {
        Some((stamp, rest)) if stamp.parse::<f64>().is_ok() => rest,
        _ => text,
    }
}

/// Reads buildah's `stream` lines (Podman's `/build`).
#[derive(Default)]
pub struct Buildah {
    current: Option<(String, String)>,
    steps: usize,
    /// The name of the stage being built (`FROM … AS name`), so steps are
    /// named as BuildKit names them: `[runtime 4/16] RUN …`.
    stage: Option<String>,
}

impl Buildah {
    pub fn line(&mut self, line: &str) -> Option<Status> {
        let line = line.trim_end();
        // A multi-stage build prefixes each step with its stage: `[2/2] STEP 4/17: …`.
        let unstaged = match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
            Some((stage, rest)) if stage.contains('/') => rest,
            _ => line,
        };
        if let Some(step) = unstaged.strip_prefix("STEP ") {
            let (count, what) = step.split_once(": ")?;
            self.steps += 1;
            let digest = format!("step-{}", self.steps);
            if let Some(from) = what.strip_prefix("FROM ") {
                let words: Vec<&str> = from.split_whitespace().collect();
                self.stage = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                    _ => None,
                };
            }
            let name = match &self.stage {
                Some(stage) => format!("[{stage} {count}] {what}"),
                None => format!("[{count}] {what}"),
            };
            self.current = Some((digest.clone(), name.clone()));
            return Some(vertex(Vertex { digest, name, started: true, ..Vertex::default() }));
        }
        let (digest, name) = self.current.clone()?;
        let v = Vertex { digest: digest.clone(), name, started: true, ..Vertex::default() };
        if line.starts_with("--> Using cache ") {
            Some(vertex(Vertex { cached: true, completed: true, ..v }))
        } else if line.starts_with("--> ") {
            Some(vertex(Vertex { completed: true, ..v }))
        } else if line.is_empty() {
            None
        } else {
            Some(log(&digest, line))
        }
    }

    /// The step that was running when the build failed gets the error.
    pub fn fail(&self, error: &str) -> Option<Status> {
        let (digest, name) = self.current.clone()?;
        let v = Vertex { digest, name, started: true, completed: true, error: error.to_owned(), ..Vertex::default() };
        Some(vertex(v))
    }
}

fn vertex(v: Vertex) -> Status {
    Status { vertexes: vec![v], logs: vec![] }
}

fn log(digest: &str, text: &str) -> Status {
    Status { vertexes: vec![], logs: vec![Log { vertex: digest.to_owned(), msg: format!("{text}\n").into_bytes() }] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(lines: &str, mut read: impl FnMut(&str) -> Option<Status>) -> Vec<Status> {
        lines.lines().filter_map(&mut read).collect()
    }

    #[test]
    fn buildx_plain_progress_becomes_steps() {
        let out = "#0 building with \"default\" instance using docker driver\n\
                   #1 [internal] load build definition from api-server.Dockerfile\n\
                   #1 transferring dockerfile: 2.1kB done\n\
                   #1 DONE 0.0s\n\
                   #5 [runtime 2/7] WORKDIR /app\n\
                   #5 CACHED\n\
                   #6 [runtime 3/7] RUN pip install x\n\
                   #6 0.512 Collecting x\n\
                   #6 [runtime 3/7] RUN pip install x\n\
                   #6 ERROR: process \"/bin/sh -c pip install x\" did not complete successfully: exit code: 1\n\
                   ERROR: failed to solve: exit code: 1\n";
        let mut plain = Plain::default();
        let got = all(out, |l| plain.line(l));
        let vertexes: Vec<&Vertex> = got.iter().flat_map(|s| &s.vertexes).collect();
        assert_eq!(vertexes.len(), 6, "{got:?}");
        assert_eq!(vertexes[0].name, "[internal] load build definition from api-server.Dockerfile");
        assert!(vertexes[1].completed && !vertexes[1].cached);
        assert!(vertexes[3].cached && vertexes[3].name == "[runtime 2/7] WORKDIR /app");
        assert!(vertexes[5].error.ends_with("exit code: 1") && vertexes[5].name.contains("pip install"));
        let logs: Vec<String> =
            got.iter().flat_map(|s| &s.logs).map(|l| String::from_utf8_lossy(&l.msg).into()).collect();
        assert_eq!(logs, ["transferring dockerfile: 2.1kB done\n", "Collecting x\n"]);
    }

    #[test]
    fn buildah_steps_and_cache_hits() {
        let out = "[1/2] STEP 1/1: FROM pysvc/uv AS uv\n--> e083\nSTEP 1/3: FROM pysvc/python:3.11 AS runtime\n\
                   STEP 2/3: WORKDIR /app\n--> Using cache 1a2b\nSTEP 3/3: RUN false\nsomething failed\n";
        let mut buildah = Buildah::default();
        let got = all(out, |l| buildah.line(l));
        let vertexes: Vec<&Vertex> = got.iter().flat_map(|s| &s.vertexes).collect();
        assert_eq!(vertexes[0].name, "[uv 1/1] FROM pysvc/uv AS uv");
        assert!(vertexes[1].completed && !vertexes[1].cached);
        assert_eq!(vertexes[2].name, "[runtime 1/3] FROM pysvc/python:3.11 AS runtime");
        assert!(vertexes[4].cached && vertexes[4].digest == "step-3");
        assert_eq!(vertexes[5].name, "[runtime 3/3] RUN false");
        assert_eq!(got.last().unwrap().logs[0].msg, b"something failed\n");
        let failed = buildah.fail("exit status 1").unwrap();
        assert_eq!(
            (failed.vertexes[0].digest.as_str(), failed.vertexes[0].error.as_str()),
            ("step-4", "exit status 1")
        );
    }
}
