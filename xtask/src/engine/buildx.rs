//! Builds through `docker buildx build`: a BuildKit session that sends the
//! context by filesync. The path for engines that cannot take a tar body
//! (Docker's containerd image store, moby/moby#47717). The context tar is
//! unpacked into a private temporary folder, removed afterwards; progress
//! is BuildKit's plain text, read by [`super::textprogress::Plain`].

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;

use super::{BuildSpec, BuildTrace};

/// The `docker` program whose buildx plugin builds (`PYSVC_DOCKER_CLI`
/// overrides the one on PATH).
pub fn docker_cli() -> String {
    std::env::var("PYSVC_DOCKER_CLI").unwrap_or_else(|_| "docker".to_owned())
}

/// Whether `docker buildx` answers.
pub fn available() -> bool {
    Command::new(docker_cli())
        .args(["buildx", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the build; returns what the progress said and the CLI's own last
/// error line (None when it exited successfully).
pub async fn build(spec: &BuildSpec, session: String, bar: ProgressBar) -> Result<(BuildTrace, Option<String>)> {
    if !available() {
        bail!(
            "this engine (Docker's containerd image store) builds only through a BuildKit session, and `{} buildx` \
             is missing: install the buildx plugin (Debian: `apt-get install docker-buildx`; \
             `cargo xtask setup --yes` does it), or switch the engine to the overlay2 store",
            docker_cli()
        );
    }
    let dir = TempDir(std::env::temp_dir().join(format!("pysvc-build-{session}")));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("cannot create {}", dir.0.display()))?;
    tar::Archive::new(spec.context.as_slice())
        .unpack(&dir.0)
        .with_context(|| format!("cannot unpack the build context into {}", dir.0.display()))?;
    let args = args(spec, &dir.0);
    tokio::task::spawn_blocking(move || run(args, &bar)).await.context("the build thread failed")?
}

/// The command line: tags, labels, arguments and cache sources as the
/// Engine API path sends them; the image lands in the engine's store.
fn args(spec: &BuildSpec, dir: &std::path::Path) -> Vec<String> {
    let mut a: Vec<String> =
        ["buildx", "build", "--progress=plain", "--load", "--provenance=false"].map(str::to_owned).to_vec();
    a.extend(["-f".to_owned(), dir.join(&spec.dockerfile).display().to_string()]);
    a.extend(["-t".to_owned(), spec.tag.clone()]);
    for (k, v) in &spec.build_args {
        a.extend(["--build-arg".to_owned(), format!("{k}={v}")]);
    }
    for (k, v) in &spec.labels {
        a.extend(["--label".to_owned(), format!("{k}={v}")]);
    }
    for image in &spec.cache_from {
        a.extend(["--cache-from".to_owned(), format!("type=registry,ref={image}")]);
    }
    if spec.no_cache {
        a.push("--no-cache".to_owned());
    }
    a.push(dir.display().to_string());
    a
}

fn run(args: Vec<String>, bar: &ProgressBar) -> Result<(BuildTrace, Option<String>)> {
    let mut child = Command::new(docker_cli())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{} buildx build`", docker_cli()))?;
    let mut trace = BuildTrace::default();
    let mut plain = super::textprogress::Plain::default();
    let mut last_error = None;
    for line in std::io::BufReader::new(child.stderr.take().expect("piped")).lines() {
        let line = line.context("reading buildx's progress")?;
        if let Some(status) = plain.line(&line) {
            trace.record(status, bar);
        } else if let Some(e) = line.strip_prefix("ERROR: ").or_else(|| line.strip_prefix("error: ")) {
            last_error = Some(e.to_owned());
        }
    }
    let status = child.wait().context("waiting for buildx")?;
    if status.success() {
        return Ok((trace, None));
    }
    let why = last_error.unwrap_or_else(|| format!("`docker buildx build` exited with {status}"));
    trace.failure = Some(why.clone());
    Ok((trace, Some(why)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    #[test]
    fn the_command_line_carries_every_setting() {
        let spec = super::BuildSpec {
            tag: "p/api:latest".into(),
            extra_tags: vec![],
            dockerfile: "docker/api.Dockerfile".into(),
            context: vec![],
            build_args: BTreeMap::from([("A".to_owned(), "1".to_owned())]),
            labels: BTreeMap::from([("pysvc.inputs".to_owned(), "abc".to_owned())]),
            no_cache: true,
            cache_from: vec!["r:5000/p/api:cache".into()],
            cache_to: None,
        };
        let a = super::args(&spec, std::path::Path::new("/tmp/ctx")).join(" ");
        assert_eq!(
            a,
            "buildx build --progress=plain --load --provenance=false -f /tmp/ctx/docker/api.Dockerfile -t p/api:latest \
             --build-arg A=1 --label pysvc.inputs=abc --cache-from type=registry,ref=r:5000/p/api:cache --no-cache /tmp/ctx"
        );
    }
}
