//! What the engine behind `DOCKER_HOST` is and can do: the one place that
//! reads versions, components and storage details. Everything else asks a
//! [`Capabilities`] question (`builds_from_tar`, `start_interval`, ...) and
//! never parses a version itself.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use bollard::Docker;

/// Docker Engine or Podman (through its Docker-compatible API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    Docker,
    Podman,
}

/// Where the engine keeps images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ImageStore {
    /// A graph driver (overlay2, ...): Docker's classic store.
    GraphDriver,
    /// The containerd image store (`containerd-snapshotter`), the default of
    /// new Docker installs since Engine 29.
    Containerd,
    /// Podman's containers/storage.
    Podman,
}

/// How a build shares its layers through a registry (`--cache-from`/`--cache-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RegistryCache {
    /// BuildKit's inline cache: the image itself, pushed as
    /// `<repo>/<service>:cache`, names its layers' cache keys; `cachefrom`
    /// takes such images.
    Inline,
    /// buildah's layer cache: during the build, each step's layer is pushed
    /// to the repository `<repo>/<service>` under its cache key (`cacheto`),
    /// and looked up there (`cachefrom`). Podman 4.3 and later.
    Layers,
    /// None (Podman before 4.3 ignores both).
    Unsupported,
}

/// The engine's facts, read once per process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub kind: Kind,
    pub version: String,
    pub api: String,
    pub store: ImageStore,
    /// The storage driver's own name (overlay2, overlayfs, ...).
    pub driver: String,
    /// Whether this process's machine runs systemd (Podman's health timers
    /// need it). Only asked for Podman.
    pub systemd: bool,
}

static PROBED: OnceLock<Capabilities> = OnceLock::new();

/// The engine's capabilities, asked once per process.
pub async fn of(docker: &Docker) -> Result<Capabilities> {
    if let Some(c) = PROBED.get() {
        return Ok(c.clone());
    }
    let caps = probe(docker).await?;
    let _ = PROBED.set(caps.clone());
    Ok(caps)
}

/// The engine's capabilities, asked now (`setup`, which may switch engines).
pub async fn probe(docker: &Docker) -> Result<Capabilities> {
    let version = docker.version().await.context("the engine did not say its version")?;
    let info = docker.info().await.context("the engine did not answer `info`")?;
    let components: Vec<String> = version.components.unwrap_or_default().into_iter().map(|c| c.name).collect();
    let driver_status = info.driver_status.unwrap_or_default();
    let caps = Capabilities::from_facts(Facts {
        version: version.version.unwrap_or_default(),
        api: version.api_version.unwrap_or_default(),
        components,
        driver: info.driver.unwrap_or_default(),
        driver_status,
        systemd: std::path::Path::new("/run/systemd/system").exists(),
    });
    Ok(caps)
}

/// What the engine reports, before it is judged.
pub struct Facts {
    pub version: String,
    pub api: String,
    pub components: Vec<String>,
    pub driver: String,
    pub driver_status: Vec<Vec<String>>,
    pub systemd: bool,
}

impl Capabilities {
    pub fn from_facts(f: Facts) -> Capabilities {
        let podman = f.components.iter().any(|c| c.to_ascii_lowercase().contains("podman"));
        let snapshotter = f
            .driver_status
            .iter()
            .any(|kv| kv.len() == 2 && kv[0] == "driver-type" && kv[1].starts_with("io.containerd.snapshotter"));
        let store = match (podman, snapshotter) {
            (true, _) => ImageStore::Podman,
            (false, true) => ImageStore::Containerd,
            (false, false) => ImageStore::GraphDriver,
        };
        Capabilities {
            kind: if podman { Kind::Podman } else { Kind::Docker },
            version: f.version,
            api: f.api,
            store,
            driver: f.driver,
            systemd: f.systemd,
        }
    }

    fn api_at_least(&self, major: u32, minor: u32) -> bool {
        let mut parts = self.api.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
    }

    fn version_at_least(&self, major: u32, minor: u32) -> bool {
        let mut parts = self.version.split(['.', '-', '+']).map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
    }

    /// How `--cache-from`/`--cache-to` share layers through a registry.
    pub fn registry_cache(&self) -> RegistryCache {
        match self.kind {
            Kind::Docker => RegistryCache::Inline,
            Kind::Podman if self.version_at_least(4, 3) => RegistryCache::Layers,
            Kind::Podman => RegistryCache::Unsupported,
        }
    }

    /// BuildKit runs the builds (Docker from API 1.39); Podman builds with buildah.
    pub fn buildkit(&self) -> bool {
        self.kind == Kind::Docker && self.api_at_least(1, 39)
    }

    /// `POST /build` with the context as a tar body works. Docker's
    /// containerd image store never serves such a context to BuildKit
    /// (moby/moby#47717): builds there go through a BuildKit session
    /// (`docker buildx build`), which sends the context by filesync.
    pub fn builds_from_tar(&self) -> bool {
        self.store != ImageStore::Containerd
    }

    /// Compose's `healthcheck.start_interval` (fast probes while a container
    /// starts, slow once healthy): Docker Engine 25 (API 1.44) and later.
    /// Podman 4 has no start interval; Compose refuses it on older engines.
    pub fn start_interval(&self) -> bool {
        self.kind == Kind::Docker && self.api_at_least(1, 44)
    }

    /// The engine runs containers' healthchecks on its own. Podman does it
    /// from systemd timers, so without systemd nobody runs them and a
    /// container stays `starting`: the xtask runs them itself then.
    pub fn runs_healthchecks(&self) -> bool {
        self.kind == Kind::Docker || self.systemd
    }

    /// Compose can tell an unchanged container from a changed one. Through
    /// Podman's Docker API a container's networks are named where Compose
    /// expects their ids (and its volumes are not listed), so `docker
    /// compose up` recreates every running container each time: the xtask
    /// compares Compose's own config hashes and image ids itself there.
    pub fn compose_sees_unchanged_containers(&self) -> bool {
        self.kind == Kind::Docker
    }

    /// A build leaves each stage it committed on the way as an untagged
    /// image of its own (buildah, with its layer cache on): the xtask
    /// removes those of its own builds, or they pile up (and Podman slows
    /// down with the size of its store).
    pub fn keeps_stage_images(&self) -> bool {
        self.kind == Kind::Podman
    }

    /// A line for people: what was found, in words.
    pub fn describe(&self) -> String {
        let store = match self.store {
            ImageStore::GraphDriver => format!("image store {} (graph driver)", self.driver),
            ImageStore::Containerd => "containerd image store".to_owned(),
            ImageStore::Podman => format!("containers/storage ({})", self.driver),
        };
        let builder = match (self.kind, self.builds_from_tar()) {
            (Kind::Podman, _) => "builds with buildah (no BuildKit)",
            (Kind::Docker, true) => "BuildKit built in",
            (Kind::Docker, false) => "BuildKit built in, builds through `docker buildx build`",
        };
        let health = if self.runs_healthchecks() {
            ""
        } else {
            "; no health timers (no systemd): the xtask runs the healthchecks"
        };
        let kind = match self.kind {
            Kind::Docker => "Docker Engine",
            Kind::Podman => "Podman",
        };
        format!("{kind} {}, API {}, {store}, {builder}{health}", self.version, self.api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(version: &str, api: &str, components: &[&str], driver_type: Option<&str>) -> Facts {
        Facts {
            version: version.into(),
            api: api.into(),
            components: components.iter().map(|c| (*c).to_owned()).collect(),
            driver: "overlay2".into(),
            driver_status: driver_type.map(|t| vec![vec!["driver-type".to_owned(), t.to_owned()]]).unwrap_or_default(),
            systemd: false,
        }
    }

    #[test]
    fn docker_20_10_builds_from_tar_without_start_interval() {
        let c = Capabilities::from_facts(facts("20.10.24", "1.41", &["Engine", "containerd", "runc"], None));
        assert_eq!((c.kind, c.store), (Kind::Docker, ImageStore::GraphDriver));
        assert!(c.buildkit() && c.builds_from_tar() && !c.start_interval() && c.runs_healthchecks());
    }

    #[test]
    fn docker_26_with_the_containerd_store_needs_a_session() {
        let c = Capabilities::from_facts(facts(
            "26.1.5",
            "1.45",
            &["Engine", "containerd"],
            Some("io.containerd.snapshotter.v1"),
        ));
        assert_eq!(c.store, ImageStore::Containerd);
        assert!(c.buildkit() && !c.builds_from_tar() && c.start_interval());
        assert!(c.describe().contains("docker buildx build"), "{}", c.describe());
    }

    #[test]
    fn podman_has_no_buildkit_and_no_timers_without_systemd() {
        let c =
            Capabilities::from_facts(facts("4.3.1", "1.41", &["Podman Engine", "Conmon", "OCI Runtime (crun)"], None));
        assert_eq!((c.kind, c.store), (Kind::Podman, ImageStore::Podman));
        assert!(!c.buildkit() && c.builds_from_tar() && !c.start_interval() && !c.runs_healthchecks());
        assert!(c.describe().starts_with("Podman 4.3.1, API 1.41"), "{}", c.describe());
        assert_eq!(c.registry_cache(), RegistryCache::Layers);
        assert!(!c.compose_sees_unchanged_containers());
        let with_systemd = Capabilities { systemd: true, ..c };
        assert!(with_systemd.runs_healthchecks());
    }

    #[test]
    fn the_registry_cache_follows_the_engine() {
        let podman = |v: &str| Capabilities::from_facts(facts(v, "1.40", &["Podman Engine"], None)).registry_cache();
        assert_eq!(podman("3.4.4"), RegistryCache::Unsupported);
        assert_eq!(podman("4.2.0"), RegistryCache::Unsupported);
        assert_eq!(podman("5.4.2"), RegistryCache::Layers);
        let docker = Capabilities::from_facts(facts("20.10.24", "1.41", &["Engine"], None));
        assert_eq!(docker.registry_cache(), RegistryCache::Inline);
    }
}
