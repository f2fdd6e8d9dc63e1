//! `compose.yaml` and `.env.example`. compose.yaml is a typed value
//! (`ComposeFile`) serialized by serde_yaml: field order is the struct's,
//! maps are sorted, and no value is ever quoted by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::dockerfile::health_command;
use super::{
    infra, kafka_topics_command, service_env, upstream_python_image, upstream_uv_image, Infra, Value, HEADER_NOTE,
    KAFKA_HEALTH_FILE, KAFKA_HEALTH_PATH, KAFKA_TOPICS, KAFKA_VOLUME_PATH,
};
use crate::manifest::{self, Installer, Service, Stack, Timing};

const PASSWORD_MISSING: &str =
    "POSTGRES_PASSWORD is not set - run cargo xtask up once (it writes .env) or copy .env.example to .env";

/// Where an app service may write with its root filesystem read-only.
pub const APP_TMPFS: &str = "/tmp";

#[derive(Serialize)]
struct ComposeFile {
    name: String,
    services: serde_yaml::Mapping,
    volumes: BTreeMap<String, serde_yaml::Mapping>,
}

#[derive(Serialize, Default)]
struct ComposeService {
    image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    build: Option<Build>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "serde_yaml::Mapping::is_empty")]
    environment: serde_yaml::Mapping,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    depends_on: BTreeMap<String, DependsOn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy: Option<Deploy>,
    /// None only for the one-shot topic creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<Healthcheck>,
    restart: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    init: Option<bool>,
    stop_grace_period: String,
    // Hardening: no privilege gain, no capabilities, nothing writable but
    // the volumes and a tmpfs.
    security_opt: Vec<&'static str>,
    cap_drop: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cap_add: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_only: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tmpfs: Vec<String>,
}

#[derive(Serialize)]
struct Build {
    context: &'static str,
    dockerfile: String,
    args: BTreeMap<&'static str, String>,
}

/// Containers of a service (written only when not 1).
#[derive(Serialize)]
struct Deploy {
    replicas: u32,
}

#[derive(Serialize)]
struct DependsOn {
    condition: &'static str,
}

#[derive(Serialize, Default)]
struct Healthcheck {
    test: Vec<String>,
    interval: String,
    timeout: String,
    retries: u32,
    start_period: String,
}

/// An exec-form healthcheck: `argv` as compose spells it, after "CMD".
fn healthcheck(argv: impl IntoIterator<Item = String>, t: Timing) -> Healthcheck {
    Healthcheck {
        test: std::iter::once("CMD".to_owned()).chain(argv).collect(),
        // Overridable from .env (bench-up compares timings through these).
        interval: format!("${{HEALTH_INTERVAL:-{}s}}", t.interval),
        timeout: format!("{}s", t.timeout),
        retries: t.retries,
        start_period: format!("${{HEALTH_START_PERIOD:-{}s}}", t.start_period),
    }
}

/// A value compose must not interpolate: `$` is written `$$`.
fn literal(value: &str) -> String {
    value.replace('$', "$$")
}

/// How compose spells a value: settings come from `.env` with a default,
/// secrets are required (compose refuses to start without them).
pub fn compose_value(value: &Value) -> String {
    match value {
        Value::Fixed(v) => literal(v),
        Value::Setting { name, default } => format!("${{{name}:-{default}}}"),
        Value::Secret(name) => format!("${{{name}:?{PASSWORD_MISSING}}}"),
    }
}

fn environment(env: &[(String, Value)]) -> serde_yaml::Mapping {
    env.iter().map(|(k, v)| (k.clone().into(), compose_value(v).into())).collect()
}

const NO_NEW_PRIVILEGES: &str = "no-new-privileges:true";

impl ComposeService {
    /// What every service has: restarted on failure, and hardened: no
    /// privilege gain, no capabilities, nothing writable but its volumes and
    /// a tmpfs `/tmp`.
    fn hardened(
        image: String,
        environment: serde_yaml::Mapping,
        healthcheck: Option<Healthcheck>,
        grace: &str,
    ) -> Self {
        ComposeService {
            image,
            environment,
            healthcheck,
            restart: "on-failure:3",
            stop_grace_period: grace.to_owned(),
            security_opt: vec![NO_NEW_PRIVILEGES],
            cap_drop: vec!["ALL"],
            read_only: Some(true),
            tmpfs: vec![APP_TMPFS.to_owned()],
            ..ComposeService::default()
        }
    }
}

fn infra_service(infra: &Infra, stack: &Stack) -> ComposeService {
    let mut service = ComposeService::hardened(
        format!("${{{}:-{}}}", infra.image_var, infra.image),
        environment(&infra.env),
        Some(healthcheck(infra.probe.iter().map(compose_value), infra.timing)),
        &infra.stop_grace_period,
    );
    if infra.name == "postgres" {
        service.ports =
            vec![format!("127.0.0.1:${{POSTGRES_HOST_PORT:-{}}}:{}", stack.manifest.postgres.host_port, infra.port)];
        service.volumes = vec![
            "postgres-data:/var/lib/postgresql/data".to_owned(),
            format!("./{}:/docker-entrypoint-initdb.d:ro", stack.manifest.postgres.init_scripts),
        ];
        // The upstream image starts as root, fixes the data folder's owner
        // and steps down to its postgres user: exactly these capabilities.
        service.cap_add = vec!["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"];
        // The one exception to a read-only root: the server's socket and lock
        // file go to /var/run/postgresql, which must belong to the image's
        // own postgres user (uid differs per image); a tmpfs there is
        // root-owned whatever mode it is given (Docker 20.10), so the server
        // could not start. Kubernetes gives it an fsGroup-owned emptyDir.
        service.read_only = None;
        service.tmpfs = Vec::new();
    } else {
        // The probe script, mounted so the upstream image (which lacks it)
        // is probed as the local one is.
        service.volumes =
            vec![format!("kafka-data:{KAFKA_VOLUME_PATH}"), format!("./{KAFKA_HEALTH_FILE}:{KAFKA_HEALTH_PATH}:ro")];
        service.init = Some(true);
    }
    service
}

/// The one-shot service that creates the topics as soon as the broker answers;
/// services that use the broker start after it exited 0.
fn topics_service(stack: &Stack, kafka: &Infra) -> ComposeService {
    ComposeService {
        command: Some(kafka_topics_command(stack).iter().map(|a| literal(a)).collect()),
        depends_on: BTreeMap::from([("kafka".to_owned(), DependsOn { condition: "service_started" })]),
        init: Some(true),
        ..ComposeService::hardened(
            format!("${{{}:-{}}}", kafka.image_var, kafka.image),
            serde_yaml::Mapping::new(),
            None,
            &kafka.stop_grace_period,
        )
    }
}

fn app_service(stack: &Stack, service: &Service) -> ComposeService {
    let m = &service.manifest;
    let mut args =
        BTreeMap::from([("BASE_IMAGE", format!("${{PYTHON_BASE_IMAGE:-{}}}", upstream_python_image(stack)))]);
    if m.installer == Installer::Uv {
        args.insert("UV_IMAGE", format!("${{UV_IMAGE:-{}}}", upstream_uv_image(stack)));
    }
    let ports = match (m.port, m.host_port) {
        (Some(port), Some(host)) => vec![format!("127.0.0.1:${{{}_HOST_PORT:-{host}}}:{port}", service.env_name())],
        _ => Vec::new(),
    };
    let mut depends_on = m
        .depends_on
        .iter()
        .map(|d| (d.clone(), DependsOn { condition: "service_healthy" }))
        .collect::<BTreeMap<_, _>>();
    if depends_on.contains_key("kafka") {
        depends_on.insert(KAFKA_TOPICS.to_owned(), DependsOn { condition: "service_completed_successfully" });
    }
    ComposeService {
        build: Some(Build { context: ".", dockerfile: service.dockerfile_path(), args }),
        command: Some(m.command.iter().map(|a| literal(a)).collect()),
        ports,
        depends_on,
        deploy: (m.replicas != 1).then_some(Deploy { replicas: m.replicas }),
        init: Some(true),
        ..ComposeService::hardened(
            format!("${{IMAGE_PREFIX:-{}}}/{}:${{IMAGE_TAG:-latest}}", stack.manifest.project, service.name),
            environment(&service_env(stack, service)),
            Some(healthcheck(health_command(service).iter().map(|a| literal(a)), service.timing())),
            &m.stop_grace_period,
        )
    }
}

pub fn compose(stack: &Stack) -> String {
    let mut services = serde_yaml::Mapping::new();
    for infra in infra(stack) {
        services.insert(infra.name.into(), serde_yaml::to_value(infra_service(&infra, stack)).expect("serializable"));
        if infra.name == "kafka" {
            let topics = topics_service(stack, &infra);
            services.insert(KAFKA_TOPICS.into(), serde_yaml::to_value(topics).expect("serializable"));
        }
    }
    for service in &stack.services {
        services.insert(
            service.name.clone().into(),
            serde_yaml::to_value(app_service(stack, service)).expect("serializable"),
        );
    }
    let file = ComposeFile {
        name: stack.manifest.project.clone(),
        services,
        volumes: BTreeMap::from([
            ("kafka-data".to_owned(), serde_yaml::Mapping::new()),
            ("postgres-data".to_owned(), serde_yaml::Mapping::new()),
        ]),
    };
    let mut d = String::new();
    let _ = writeln!(d, "# {HEADER_NOTE}");
    let _ = writeln!(d, "# source: {} and services/*/{}", manifest::STACK_FILE, manifest::SERVICE_FILE);
    d.push_str("# Settings come from .env (see .env.example); nothing secret is written here.\n");
    d.push_str(&serde_yaml::to_string(&file).expect("compose file serializes"));
    d
}

pub fn env_example(stack: &Stack) -> String {
    let mut d = format!("# {HEADER_NOTE}\n");
    d.push_str("# Copy to .env (git-ignored) and change what you need; `cargo xtask up` creates\n");
    d.push_str("# .env with a random POSTGRES_PASSWORD when there is none.\n\n");
    d.push_str("# Credentials (required: compose refuses to start without a password).\n");
    d.push_str("POSTGRES_USER=pysvc\nPOSTGRES_PASSWORD=\nPOSTGRES_DB=pysvc\n\n");
    d.push_str("# Images. Defaults are the upstream images; `cargo xtask base-images` builds\n");
    d.push_str("# local ones for machines without a registry and points these at them.\n");
    let _ = writeln!(d, "PYTHON_BASE_IMAGE={}", upstream_python_image(stack));
    let _ = writeln!(d, "UV_IMAGE={}", upstream_uv_image(stack));
    for infra in infra(stack) {
        let _ = writeln!(d, "{}={}", infra.image_var, infra.image);
    }
    let _ = writeln!(d, "IMAGE_PREFIX={}\nIMAGE_TAG=latest\n", stack.manifest.project);
    d.push_str("# Host ports (always bound to 127.0.0.1).\n");
    let _ = writeln!(d, "POSTGRES_HOST_PORT={}", stack.manifest.postgres.host_port);
    for service in &stack.services {
        if let Some(port) = service.manifest.host_port {
            let _ = writeln!(d, "{}_HOST_PORT={port}", service.env_name());
        }
    }
    d.push_str(
        "\n# Healthcheck timing: each service's comes from its manifest (`health.interval`,\n\
         # `health.start_period`); these override every service at once.\n\
         # HEALTH_INTERVAL=1s\n# HEALTH_START_PERIOD=60s\n",
    );
    d
}
