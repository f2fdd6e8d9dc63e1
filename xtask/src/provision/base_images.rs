//! Local base images, behind `cargo xtask base-images` and the base-image
//! step of `Prepared`: builds, without any container registry, local images
//! for everything the stack would pull on a connected machine, and points
//! `.env` at them. Recipes live in `docker/base/`.
//!
//! Each image carries a `pysvc.recipe` label (hash of its recipe, its files
//! and its parent's id); an image whose label matches is not rebuilt.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use bollard::Docker;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::context::ContextTar;
use crate::dotenv::DotEnv;
use crate::provision::kafka_jars;
use crate::{engine, tools};

pub const DEBIAN_IMAGE: &str = "pysvc/debian:bookworm";
pub const PYTHON_IMAGE: &str = "pysvc/python:3.11-bookworm";
pub const UV_IMAGE: &str = "pysvc/uv:0.13.9";
pub const POSTGRES_IMAGE: &str = "pysvc/postgres:15-bookworm";
/// Apache Kafka built from Maven Central jars (`kafka_jars`); its tag's
/// version is `kafka_jars::KAFKA_VERSION` (a test holds them together).
pub const APACHE_KAFKA_IMAGE: &str = "pysvc/kafka:4.4.0";
pub const RECIPE_LABEL: &str = "pysvc.recipe";

/// The `.env` keys that select the local images.
pub fn env_overrides() -> [(&'static str, &'static str); 4] {
    [
        ("PYTHON_BASE_IMAGE", PYTHON_IMAGE),
        ("UV_IMAGE", UV_IMAGE),
        ("POSTGRES_IMAGE", POSTGRES_IMAGE),
        ("KAFKA_IMAGE", APACHE_KAFKA_IMAGE),
    ]
}

/// Every local base image (each skipped when its recipe is unchanged, unless
/// `force`), then `.env` selects them (`env` is changed and saved).
pub async fn ensure_all(sh: &Shell, root: &Path, docker: &Docker, env: &mut DotEnv, force: bool) -> Result<()> {
    let keys = env_overrides().map(|(k, _)| k);
    Local { sh, root, docker, force, chatty: true }.build(&keys).await?;
    for (key, image) in env_overrides() {
        env.set(key, image);
    }
    env.save()?;
    eprintln!("base images ready; .env now selects them ({})", keys.join(", "));
    Ok(())
}

/// The local images of earlier checkouts (tansu, the broker before Apache
/// Kafka; or an older tag of one of ours): no recipe here builds them, so
/// a `.env` that selects one selects today's instead, said aloud.
fn retire_old_local(env: &mut DotEnv) -> Result<()> {
    let mut changed = false;
    for (key, ours) in env_overrides() {
        let Some(old) = env.get(key).map(|v| v.trim().to_owned()) else { continue };
        if old.starts_with("pysvc/") && old != ours {
            eprintln!("note: .env selected {old}, which this checkout no longer builds: {key}={ours}");
            env.set(key, ours);
            changed = true;
        }
    }
    if changed {
        env.save()?;
    }
    Ok(())
}

/// The base images `.env` selects: missing upstream ones are pulled, or,
/// where no registry answers, all are built locally (and `.env` then selects
/// the local ones); the local ones it selects are built when missing or when
/// their recipe changed since (a `git pull` that changes `docker/base/`),
/// unless they came from elsewhere without the Debian image under them.
pub async fn ensure_selected(sh: &Shell, root: &Path, docker: &Docker, env: &mut DotEnv) -> Result<()> {
    retire_old_local(env)?;
    // A local image built elsewhere (loaded, or pulled from a registry a
    // team fills) comes without the Debian image it was built on, which its
    // label's hash covers: it is taken as it is, not rebuilt from scratch.
    let debian_here = engine::image_id(docker, DEBIAN_IMAGE).await.is_some();
    let mut checked = Vec::new();
    let mut missing = Vec::new();
    for (key, ours) in env_overrides() {
        let image = env.get(key).filter(|v| !v.is_empty()).unwrap_or_default();
        if image == ours {
            if !on_debian(key) || debian_here || engine::image_id(docker, &image).await.is_none() {
                checked.push(key);
            }
        } else if !image.is_empty() && engine::image_id(docker, &image).await.is_none() {
            missing.push(image);
        }
    }
    for image in &missing {
        eprintln!("pulling {image}");
        if let Err(err) = engine::pull(docker, image).await {
            eprintln!("cannot pull {image} ({err:#}): building local base images instead (no registry needed)");
            return ensure_all(sh, root, docker, env, false).await;
        }
    }
    Local { sh, root, docker, force: false, chatty: false }.build(&checked).await
}

/// Whether the local image of `.env` key `key` is built on the Debian image
/// (all but uv's, which holds only the uv binary).
fn on_debian(key: &str) -> bool {
    key != "UV_IMAGE"
}

/// Checks, and builds where needed, local base images.
struct Local<'a> {
    sh: &'a Shell,
    root: &'a Path,
    docker: &'a Docker,
    /// Rebuild even when a recipe is unchanged.
    force: bool,
    /// Also name each image that was already current (`base-images`).
    chatty: bool,
}

impl Local<'_> {
    /// The images of `keys` (`.env` keys, see [`env_overrides`]), after the
    /// Debian image the others start from when any of them needs it.
    async fn build(&self, keys: &[&str]) -> Result<()> {
        let debian_id = match keys.iter().any(|k| on_debian(k)) {
            true => self.debian().await?,
            false => String::new(),
        };
        let on_debian = [("DEBIAN_IMAGE", DEBIAN_IMAGE)];
        for key in keys {
            match *key {
                "PYTHON_BASE_IMAGE" => {
                    self.recipe(PYTHON_IMAGE, "python.Dockerfile", vec![], &on_debian, &debian_id).await?;
                }
                "UV_IMAGE" => {
                    let uv_bin = std::fs::read(tools::uv(self.sh)?)?;
                    self.recipe(UV_IMAGE, "uv.Dockerfile", vec![("uv", 0o755, Some(uv_bin))], &[], "").await?;
                }
                "POSTGRES_IMAGE" => {
                    let files = vec![("postgres-entrypoint.sh", 0o755, None)];
                    self.recipe(POSTGRES_IMAGE, "postgres.Dockerfile", files, &on_debian, &debian_id).await?;
                }
                "KAFKA_IMAGE" => {
                    self.apache_kafka(&debian_id).await?;
                }
                other => bail!("no local base image for {other}"),
            }
        }
        Ok(())
    }

    /// Apache Kafka (KRaft) on the local Debian image: the pinned jars (each
    /// checked against its sha256) plus `docker/base/kafka/` (scripts, config,
    /// the start command, the list of jars).
    async fn apache_kafka(&self, debian_id: &str) -> Result<String> {
        let root = self.root;
        let mut named: Vec<(String, u32, Vec<u8>)> = Vec::new();
        for (file, bytes) in kafka_jars::ensure(self.sh, root)? {
            named.push((format!("kafka/libs/{file}"), 0o644, bytes));
        }
        for (dir, mode) in [("kafka/bin", 0o755), ("kafka/config", 0o644)] {
            let full = root.join("docker/base").join(dir);
            let entries = std::fs::read_dir(&full).with_context(|| format!("cannot read {}", full.display()))?;
            for entry in entries {
                let path = format!("{dir}/{}", entry?.file_name().to_string_lossy());
                named.push((path.clone(), mode, recipe_file(root, &path)?));
            }
        }
        for (path, mode) in [("kafka/run", 0o755), ("kafka/make-cds", 0o755), ("kafka/jars.tsv", 0o644)] {
            named.push((path.to_owned(), mode, recipe_file(root, path)?));
        }
        let files = named.iter_mut().map(|(p, m, d)| (p.as_str(), *m, Some(std::mem::take(d)))).collect();
        let args = [("DEBIAN_IMAGE", DEBIAN_IMAGE)];
        self.recipe(APACHE_KAFKA_IMAGE, "kafka.Dockerfile", files, &args, debian_id).await
    }
}

fn recipe_file(root: &Path, name: &str) -> Result<Vec<u8>> {
    std::fs::read(root.join("docker/base").join(name)).with_context(|| format!("cannot read docker/base/{name}"))
}

fn hash_of(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    format!("{:x}", h.finalize())[..16].to_owned()
}

impl Local<'_> {
    /// Builds the image `tag` from `docker/base/<dockerfile>` plus `files`
    /// (each a `docker/base` file name and mode, or given bytes) unless its
    /// label says it is current; returns its id.
    async fn recipe(
        &self,
        tag: &str,
        dockerfile: &str,
        files: Vec<(&str, u32, Option<Vec<u8>>)>,
        args: &[(&str, &str)],
        parent_id: &str,
    ) -> Result<String> {
        let (root, docker) = (self.root, self.docker);
        let mut ctx = ContextTar::default();
        ctx.add_bytes(dockerfile, 0o644, recipe_file(root, dockerfile)?);
        for (path, mode, data) in files {
            let data = match data {
                Some(bytes) => bytes,
                None => recipe_file(root, path)?,
            };
            ctx.add_bytes(path, mode, data);
        }
        let mut extra: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        extra.push(parent_id.to_owned());
        let hash = ctx.hash(&extra)[..16].to_owned();
        if let Some(id) = self.current(tag, &hash).await {
            return Ok(id);
        }
        let bar = ProgressBar::new_spinner().with_prefix(tag.to_owned());
        bar.set_style(crate::engine::spinner_style());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let spec = engine::BuildSpec {
            tag: tag.to_owned(),
            extra_tags: vec![],
            dockerfile: dockerfile.to_owned(),
            context: ctx.into_tar()?,
            build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            labels: BTreeMap::from([(RECIPE_LABEL.to_owned(), hash)]),
            no_cache: false,
            cache_from: vec![],
            cache_to: None,
        };
        let report = engine::build(docker, spec, &bar).await;
        bar.finish_and_clear();
        let report = report?;
        eprintln!("{tag}: built in {:.1}s ({})", report.seconds, engine::human_size(report.size_bytes));
        Ok(report.image_id)
    }

    /// The id of `tag` when its recipe label is `hash` (and not `force`).
    async fn current(&self, tag: &str, hash: &str) -> Option<String> {
        if self.force || engine::image_label(self.docker, tag, RECIPE_LABEL).await.as_deref() != Some(hash) {
            return None;
        }
        if self.chatty {
            println!("{tag}: up to date");
        }
        Some(engine::image_id(self.docker, tag).await.unwrap_or_default())
    }
}

/// The Debian mirror the host's apt uses (deb822 or one-line sources).
pub fn host_mirror() -> Result<String> {
    if let Ok(m) = std::env::var("PYSVC_DEBIAN_MIRROR") {
        return Ok(m);
    }
    let mut texts = Vec::new();
    for file in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] {
        if let Ok(t) = std::fs::read_to_string(file) {
            texts.push(t);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            if e.path().extension().is_some_and(|x| x == "sources" || x == "list") {
                texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    for text in texts {
        for line in text.lines() {
            let line = line.trim();
            let url = line.strip_prefix("URIs:").map(|u| u.split_whitespace().next().unwrap_or("")).or_else(|| {
                line.strip_prefix("deb ").and_then(|r| r.split_whitespace().find(|w| w.starts_with("http")))
            });
            if let Some(url) = url {
                if url.starts_with("http") && !url.contains("security") {
                    return Ok(url.to_owned());
                }
            }
        }
    }
    bail!("cannot find a Debian mirror in /etc/apt/sources.list(.d): set PYSVC_DEBIAN_MIRROR=http://<mirror>/debian")
}

impl Local<'_> {
    /// The Debian image: debootstrap from the host's mirror, slimmed, imported.
    async fn debian(&self) -> Result<String> {
        let (sh, root, docker) = (self.sh, self.root, self.docker);
        let mirror = host_mirror()?;
        let hash = hash_of(&[
            b"debootstrap --variant=minbase bookworm",
            mirror.as_bytes(),
            SLIM_DPKG.as_bytes(),
            SLIM_APT.as_bytes(),
        ]);
        if let Some(id) = self.current(DEBIAN_IMAGE, &hash).await {
            return Ok(id);
        }
        if cmd!(sh, "which debootstrap").quiet().ignore_stdout().run().is_err() {
            bail!("debootstrap is missing: run `cargo xtask setup --yes` (or `apt-get install debootstrap`)");
        }
        let dir = root.join("target/rootfs/bookworm");
        if dir.exists() {
            unmount_below(&dir)?;
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        eprintln!("{DEBIAN_IMAGE}: debootstrap bookworm from {mirror} (about a minute)");
        cmd!(sh, "debootstrap --variant=minbase bookworm {dir} {mirror}").quiet().ignore_stdout().run().with_context(
            || {
                format!(
                    "debootstrap from {mirror} failed: is the mirror reachable? (see {}/debootstrap/debootstrap.log)",
                    dir.display()
                )
            },
        )?;
        // debootstrap can leave /proc (and more) mounted in the tree: tar would
        // read the host's /proc into the image, and anything copying target/
        // would copy /proc/kcore.
        unmount_below(&dir)?;
        slim_rootfs(&dir)?;
        let label = format!("LABEL {RECIPE_LABEL}={hash}");
        let script = format!(
            "tar -C '{}' -c . | docker import --change '{label}' --change 'CMD [\"bash\"]' - {DEBIAN_IMAGE}",
            dir.display()
        );
        cmd!(sh, "bash -c {script}")
            .quiet()
            .ignore_stdout()
            .run()
            .context("docker import of the Debian root filesystem failed")?;
        std::fs::remove_dir_all(&dir).ok();
        eprintln!("{DEBIAN_IMAGE}: imported");
        Ok(engine::image_id(docker, DEBIAN_IMAGE).await.unwrap_or_default())
    }
}

/// Unmounts every filesystem mounted at or below `dir`, deepest first.
fn unmount_below(dir: &Path) -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> =
        mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|p| p.starts_with(prefix.as_str())).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let status = std::process::Command::new("umount").arg(point).status();
        if !matches!(status, Ok(s) if s.success()) {
            bail!("cannot unmount {point} (left mounted by debootstrap): run `umount {point}` and retry");
        }
    }
    Ok(())
}

/// dpkg configuration of the slim images: no documentation, manual pages or
/// translations, now or from later `apt-get install`s (copyright files stay).
const SLIM_DPKG: &str = "path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
";

/// apt configuration of the slim images: never install recommended packages.
const SLIM_APT: &str = "APT::Install-Recommends \"false\";\nAPT::Install-Suggests \"false\";\n";

/// What the `-slim` upstream images do: drop docs, man pages, locales and apt
/// lists from the debootstrapped tree, and keep them out of later installs.
fn slim_rootfs(dir: &Path) -> Result<()> {
    std::fs::write(dir.join("etc/dpkg/dpkg.cfg.d/01-slim"), SLIM_DPKG)?;
    std::fs::write(dir.join("etc/apt/apt.conf.d/01-slim"), SLIM_APT)?;
    for sub in [
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "usr/share/lintian",
        "var/lib/apt/lists",
        "var/cache/apt/archives",
    ] {
        clear_files(&dir.join(sub), &|_| true)?;
    }
    // Documentation, except the copyright notices.
    clear_files(&dir.join("usr/share/doc"), &|p| p.file_name().is_some_and(|n| n != "copyright"))?;
    Ok(())
}

/// Removes the files under `dir` (recursively) for which `pick` holds.
fn clear_files(dir: &Path, pick: &dyn Fn(&Path) -> bool) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries.flatten() {
        let path = e.path();
        let kind = e.file_type()?;
        if kind.is_dir() {
            clear_files(&path, pick)?;
        } else if pick(&path) && path.file_name().is_some_and(|n| n != "locale.alias") {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apache_kafka_tag_names_the_pinned_release() {
        assert_eq!(APACHE_KAFKA_IMAGE, format!("pysvc/kafka:{}", kafka_jars::KAFKA_VERSION));
        let upstream = format!("apache/kafka:{}", kafka_jars::KAFKA_VERSION);
        assert_eq!(crate::gen::KAFKA_IMAGE, upstream, "the stack's default broker is the release built here");
    }

    #[test]
    fn an_env_that_selects_an_old_local_image_selects_todays() {
        let dir = std::env::temp_dir().join(format!("pysvc-retire-tansu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(".env"),
            "POSTGRES_PASSWORD=x\nKAFKA_IMAGE=pysvc/tansu:0.6.0\nUV_IMAGE=pysvc/uv:0.1.0\nPOSTGRES_IMAGE=postgres:16\n",
        )
        .unwrap();
        let mut env = DotEnv::load_or_create(&dir).unwrap();
        retire_old_local(&mut env).unwrap();
        let saved = DotEnv::load_or_create(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(saved.get("KAFKA_IMAGE").as_deref(), Some(APACHE_KAFKA_IMAGE));
        assert_eq!(saved.get("UV_IMAGE").as_deref(), Some(UV_IMAGE));
        assert_eq!(saved.get("POSTGRES_IMAGE").as_deref(), Some("postgres:16"), "upstream choices stay");
        assert_eq!(saved.get("POSTGRES_PASSWORD").as_deref(), Some("x"));
    }
}
