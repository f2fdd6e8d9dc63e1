//! `compose.yaml` and `.env.example`.

use std::fmt::Write as _;

use super::dockerfile::{health_command, json_list};
use super::{upstream_python_image, upstream_uv_image, HEADER_NOTE};
use crate::manifest::{self, Installer, Service, Stack};

const PASSWORD_REQUIRED: &str = "\"${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set - run cargo xtask up once (it writes .env) or copy .env.example to .env}\"";

fn postgres_env(d: &mut String) {
    d.push_str("      POSTGRES_USER: ${POSTGRES_USER:-pysvc}\n");
    let _ = writeln!(d, "      POSTGRES_PASSWORD: {PASSWORD_REQUIRED}");
    d.push_str("      POSTGRES_DB: ${POSTGRES_DB:-pysvc}\n");
}

fn healthcheck(d: &mut String, test: &str, start_period: &str) {
    let _ = writeln!(
        d,
        "    healthcheck:\n      test: {test}\n      interval: ${{HEALTH_INTERVAL:-2s}}\n      timeout: 3s\n      retries: 3\n      start_period: ${{HEALTH_START_PERIOD:-{start_period}}}"
    );
}

pub fn compose(stack: &Stack) -> String {
    let m = &stack.manifest;
    let mut d = String::new();
    let _ = writeln!(d, "# {HEADER_NOTE}");
    let _ = writeln!(d, "# source: {} and services/*/{}", manifest::STACK_FILE, manifest::SERVICE_FILE);
    d.push_str("# Settings come from .env (see .env.example); nothing secret is written here.\n");
    let _ = writeln!(d, "name: {}\n", m.project);
    d.push_str("services:\n");

    // PostgreSQL.
    d.push_str("  postgres:\n    image: ${POSTGRES_IMAGE:-postgres:16-bookworm}\n    environment:\n");
    postgres_env(&mut d);
    let _ = writeln!(d, "    ports:\n      - \"127.0.0.1:${{POSTGRES_HOST_PORT:-{}}}:5432\"", m.postgres.host_port);
    let _ = writeln!(
        d,
        "    volumes:\n      - postgres-data:/var/lib/postgresql/data\n      - ./{}:/docker-entrypoint-initdb.d:ro",
        m.postgres.init_scripts
    );
    // -h 127.0.0.1: the TCP listener, not the socket the init phase uses.
    healthcheck(
        &mut d,
        "[\"CMD-SHELL\", \"pg_isready -h 127.0.0.1 -U \\\"$$POSTGRES_USER\\\" -d \\\"$$POSTGRES_DB\\\"\"]",
        "60s",
    );
    let _ = writeln!(d, "    restart: on-failure:3\n    stop_grace_period: {}\n", m.postgres.stop_grace_period);

    // Kafka-protocol broker (KRaft-era: no ZooKeeper).
    d.push_str("  kafka:\n    image: ${KAFKA_IMAGE:-pysvc/tansu:0.6.0}\n    environment:\n");
    d.push_str("      ADVERTISED_LISTENER_URL: tcp://kafka:9092\n");
    // A protocol-level probe: an ApiVersions round trip that must succeed.
    healthcheck(&mut d, "[\"CMD\", \"kafka-health\", \"127.0.0.1:9092\"]", "30s");
    let _ = writeln!(
        d,
        "    restart: on-failure:3\n    init: true\n    stop_grace_period: {}\n",
        m.kafka.stop_grace_period
    );

    for service in &stack.services {
        compose_service(&mut d, stack, service);
    }
    d.push_str("volumes:\n  postgres-data:\n");
    d
}

fn compose_service(d: &mut String, stack: &Stack, service: &Service) {
    let m = &service.manifest;
    let _ = writeln!(d, "  {}:", service.name);
    let _ =
        writeln!(d, "    image: ${{IMAGE_PREFIX:-{}}}/{}:${{IMAGE_TAG:-latest}}", stack.manifest.project, service.name);
    let _ = writeln!(d, "    build:\n      context: .\n      dockerfile: {}\n      args:", service.dockerfile_path());
    let _ = writeln!(d, "        BASE_IMAGE: ${{PYTHON_BASE_IMAGE:-{}}}", upstream_python_image(stack));
    if m.installer == Installer::Uv {
        let _ = writeln!(d, "        UV_IMAGE: ${{UV_IMAGE:-{}}}", upstream_uv_image(stack));
    }
    let uses_postgres = m.depends_on.iter().any(|x| x == "postgres");
    let uses_kafka = m.depends_on.iter().any(|x| x == "kafka");
    if uses_postgres || uses_kafka || !m.environment.is_empty() {
        d.push_str("    environment:\n");
    }
    if uses_postgres {
        d.push_str("      POSTGRES_HOST: postgres\n      POSTGRES_PORT: \"5432\"\n");
        postgres_env(d);
    }
    if uses_kafka {
        d.push_str("      KAFKA_BOOTSTRAP: kafka:9092\n");
        let _ = writeln!(d, "      KAFKA_PARTITIONS: \"{}\"", stack.manifest.kafka.partitions);
    }
    for (key, value) in &m.environment {
        let _ = writeln!(d, "      {key}: {}", serde_json::to_string(value).expect("string"));
    }
    if let (Some(port), Some(host)) = (m.port, m.host_port) {
        let _ = writeln!(d, "    ports:\n      - \"127.0.0.1:${{{}_HOST_PORT:-{host}}}:{port}\"", service.env_name());
    }
    if !m.depends_on.is_empty() {
        d.push_str("    depends_on:\n");
        let mut deps = m.depends_on.clone();
        deps.sort();
        deps.dedup();
        for dep in deps {
            let _ = writeln!(d, "      {dep}:\n        condition: service_healthy");
        }
    }
    if m.replicas != 1 {
        let _ = writeln!(d, "    deploy:\n      replicas: {}", m.replicas);
    }
    let mut test = vec!["CMD".to_owned()];
    test.extend(health_command(service));
    healthcheck(d, &json_list(&test), "60s");
    let _ = writeln!(d, "    restart: on-failure:3\n    init: true\n    stop_grace_period: {}\n", m.stop_grace_period);
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
    d.push_str("POSTGRES_IMAGE=postgres:16-bookworm\nKAFKA_IMAGE=pysvc/tansu:0.6.0\n");
    let _ = writeln!(d, "IMAGE_PREFIX={}\nIMAGE_TAG=latest\n", stack.manifest.project);
    d.push_str("# Host ports (always bound to 127.0.0.1).\n");
    let _ = writeln!(d, "POSTGRES_HOST_PORT={}", stack.manifest.postgres.host_port);
    for service in &stack.services {
        if let Some(port) = service.manifest.host_port {
            let _ = writeln!(d, "{}_HOST_PORT={port}", service.env_name());
        }
    }
    d.push_str("\n# Healthcheck timing of every service.\nHEALTH_INTERVAL=2s\n");
    d
}
