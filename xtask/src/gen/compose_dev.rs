//! `compose.dev.yaml`: the override `cargo xtask dev` runs on top of
//! `compose.yaml`. It touches only what a live loop needs, per app service:
//! its code folders bind-mounted read-only over the image's copies (an edit
//! is in the container at once, no sync step, nothing writable), a command
//! that reloads on SIGHUP, and `PYSVC_DEV=1`. Everything else (hardening,
//! healthchecks, `depends_on`, restart policy) comes from `compose.yaml`
//! unchanged, since compose merges the two files.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::HEADER_NOTE;
use crate::manifest::{Kind, Service, Stack};

pub const DEV_COMPOSE_FILE: &str = "compose.dev.yaml";
/// Where the images keep the code (`PYTHONPATH`).
const APP_DIR: &str = "/app";
/// The module of the first shared package that runs a service in dev mode.
const DEV_MODULE: &str = "dev";

#[derive(Serialize)]
struct DevFile {
    services: BTreeMap<String, DevService>,
}

#[derive(Serialize)]
struct DevService {
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    environment: BTreeMap<&'static str, &'static str>,
    volumes: Vec<String>,
}

/// Each code folder of a service's image: (repository path, container
/// path). The Dockerfile copies them there; the dev override mounts them.
pub fn code_dirs(stack: &Stack, service: &Service) -> Vec<(String, String)> {
    let last = |p: &str| p.trim_end_matches('/').rsplit('/').next().unwrap_or(p).to_owned();
    let shared = stack.manifest.shared.iter().map(|s| (s.path.clone(), format!("{APP_DIR}/{}", last(&s.path))));
    let own =
        service.manifest.packages.iter().map(|p| (format!("{}/{p}", service.dir), format!("{APP_DIR}/{}", last(p))));
    shared.chain(own).collect()
}

/// The command a service runs in dev mode when it reloads in place on
/// SIGHUP: the manifest's command under the first shared package's `dev`
/// module (`http` for a uvicorn app, `worker` for `python -m MODULE`).
/// `None`: no in-place reload (no shared package, or another command); the
/// container is restarted instead.
pub fn dev_command(stack: &Stack, service: &Service) -> Option<Vec<String>> {
    let shared = stack.manifest.shared.first()?;
    let package = shared.path.trim_end_matches('/').rsplit('/').next()?;
    let command = &service.manifest.command;
    let mode = match service.manifest.kind {
        Kind::Http if command.first().is_some_and(|c| c == "uvicorn") => "http",
        Kind::Worker if command.len() == 3 && command[..2] == ["python", "-m"] => "worker",
        _ => return None,
    };
    let runner = ["python", "-m", &format!("{package}.{DEV_MODULE}"), mode, "--"].map(str::to_owned);
    Some(runner.into_iter().chain(command.iter().cloned()).collect())
}

/// The override for `services` (every app service when empty).
pub fn compose_dev(stack: &Stack, services: &[String]) -> String {
    let mut file = DevFile { services: BTreeMap::new() };
    for service in stack.services.iter().filter(|s| services.is_empty() || services.contains(&s.name)) {
        let volumes = code_dirs(stack, service).into_iter().map(|(host, app)| format!("./{host}:{app}:ro")).collect();
        let command = dev_command(stack, service).map(|c| c.iter().map(|a| a.replace('$', "$$")).collect());
        file.services.insert(
            service.name.clone(),
            DevService { command, environment: BTreeMap::from([("PYSVC_DEV", "1")]), volumes },
        );
    }
    let mut d = String::new();
    let _ = writeln!(d, "# {HEADER_NOTE}");
    d.push_str("# The dev override `cargo xtask dev` runs on top of compose.yaml\n");
    d.push_str("# (docker compose -f compose.yaml -f compose.dev.yaml ...): each service's code\n");
    d.push_str("# folders mounted read-only over the image's copies and a command that reloads\n");
    d.push_str("# on SIGHUP. Hardening, healthchecks and depends_on come from compose.yaml.\n");
    d.push_str(&serde_yaml::to_string(&file).expect("the dev override serializes"));
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use crate::manifest::tests::{fixture, write, WORKER};

    /// What the override may set on a service: nothing of its hardening.
    const APP_KEYS_OF_DEV: [&str; 3] = ["command", "environment", "volumes"];

    #[test]
    fn the_override_only_mounts_code_read_only_and_swaps_the_command() {
        let stack = manifest::load(&fixture()).unwrap();
        let text = compose_dev(&stack, &[]);
        let file: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let services = file["services"].as_mapping().unwrap();
        assert_eq!(services.len(), stack.services.len());
        for service in &stack.services {
            let entry = services[service.name.as_str()].as_mapping().unwrap();
            let keys: Vec<&str> = entry.keys().map(|k| k.as_str().unwrap()).collect();
            assert!(keys.iter().all(|k| APP_KEYS_OF_DEV.contains(k)), "{}: {keys:?}", service.name);
            let dockerfile = crate::gen::dockerfile(&stack, service, service.manifest.installer);
            for volume in entry["volumes"].as_sequence().unwrap() {
                let volume = volume.as_str().unwrap();
                assert!(volume.starts_with("./") && volume.ends_with(":ro"), "{volume}");
                let (host, app) = volume.trim_end_matches(":ro").split_once(':').unwrap();
                let copy = format!("COPY {} {app}\n", host.trim_start_matches("./"));
                assert!(dockerfile.contains(&copy), "the image has no {copy:?} for the mount {volume}");
            }
        }
        assert_eq!(
            services["web"]["command"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect::<Vec<_>>(),
            ["python", "-m", "common.dev", "http", "--", "uvicorn", "web_pkg.main:app"]
        );
        assert_eq!(services["worker"]["command"][3].as_str(), Some("worker"));
        let only: serde_yaml::Value = serde_yaml::from_str(&compose_dev(&stack, &["worker".to_owned()])).unwrap();
        assert_eq!(only["services"].as_mapping().unwrap().len(), 1);
    }

    #[test]
    fn a_command_the_runner_cannot_reload_is_kept() {
        let root = fixture();
        write(&root, "services/worker/service.yaml", &WORKER.replace("[python, -m, worker_pkg]", "[worker-bin, --x]"));
        let stack = manifest::load(&root).unwrap();
        let worker = stack.services.iter().find(|s| s.name == "worker").unwrap();
        assert_eq!(dev_command(&stack, worker), None);
        let file: serde_yaml::Value = serde_yaml::from_str(&compose_dev(&stack, &[])).unwrap();
        assert!(file["services"]["worker"].get("command").is_none());
    }
}
