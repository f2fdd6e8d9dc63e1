//! `compose.probes.yaml`: the healthcheck timing of engines that know
//! `start_interval` (Docker Engine 25 and later). While a container starts,
//! its probe runs at the manifest's fast `health.interval`; once healthy,
//! every `HEALTH_IDLE_INTERVAL` (10 s unless `.env` says otherwise), so an
//! idle stack stops paying a probe process per service every second or two.
//! `compose.yaml` alone keeps the fast interval throughout: Compose refuses
//! `start_interval` on older engines, so the override is only named (in
//! `.env`'s `COMPOSE_FILE`) where the engine can take it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{infra, HEADER_NOTE};
use crate::manifest::Stack;

pub const PROBES_COMPOSE_FILE: &str = "compose.probes.yaml";
/// The probe interval of a healthy container, unless `.env` sets
/// `HEALTH_IDLE_INTERVAL`. With 3 retries a failure shows within ~30 s.
pub const IDLE_INTERVAL_SECONDS: u32 = 10;

#[derive(Serialize)]
struct ProbesFile {
    services: BTreeMap<String, ProbesService>,
}

#[derive(Serialize)]
struct ProbesService {
    healthcheck: Timing,
}

#[derive(Serialize)]
struct Timing {
    interval: String,
    start_interval: String,
}

fn timing(fast: u32) -> ProbesService {
    ProbesService {
        healthcheck: Timing {
            interval: format!("${{HEALTH_IDLE_INTERVAL:-{IDLE_INTERVAL_SECONDS}s}}"),
            start_interval: format!("${{HEALTH_INTERVAL:-{fast}s}}"),
        },
    }
}

pub fn compose_probes(stack: &Stack) -> String {
    let mut services: BTreeMap<String, ProbesService> =
        infra(stack).iter().map(|i| (i.name.to_owned(), timing(i.timing.interval))).collect();
    for service in &stack.services {
        services.insert(service.name.clone(), timing(service.timing().interval));
    }
    let mut d = String::new();
    let _ = writeln!(d, "# {HEADER_NOTE}");
    d.push_str(
        "# Healthcheck timing for Docker Engine 25 and later, on top of compose.yaml:\n\
         # fast probes while a container starts (start_interval), slow ones once it is\n\
         # healthy. `cargo xtask up` names this file in .env's COMPOSE_FILE when the\n\
         # engine supports it; Compose refuses start_interval on older engines.\n",
    );
    d.push_str(&serde_yaml::to_string(&ProbesFile { services }).expect("probes file serializes"));
    d
}

/// `COMPOSE_FILE` for this engine: compose.yaml, the probes override where
/// `start_interval` works, then `extra` (the dev override).
pub fn compose_files(start_interval: bool, extra: Option<&str>) -> String {
    let mut files = vec!["compose.yaml"];
    if start_interval {
        files.push(PROBES_COMPOSE_FILE);
    }
    files.extend(extra);
    files.join(":")
}
