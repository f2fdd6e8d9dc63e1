"""Service configuration, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """An environment variable is missing or malformed."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 1:
        raise ConfigError(f"{name}={value} must be at least 1")
    return value


@dataclass(frozen=True)
class Settings:
    postgres_host: str
    postgres_port: int
    postgres_user: str
    postgres_password: str
    postgres_db: str
    kafka_bootstrap: str
    search_topic: str
    kafka_partitions: int = 1
    db_pool_size: int = 8
    db_retry_seconds: float = 8.0
    worker_batch_size: int = 200

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        password = env.get("POSTGRES_PASSWORD", "")
        if not password:
            raise ConfigError(
                "POSTGRES_PASSWORD is not set: compose passes it from .env "
                "(`cargo xtask up` creates one)"
            )
        return cls(
            postgres_host=env.get("POSTGRES_HOST", "postgres"),
            postgres_port=_int(env, "POSTGRES_PORT", 5432),
            postgres_user=env.get("POSTGRES_USER", "pysvc"),
            postgres_password=password,
            postgres_db=env.get("POSTGRES_DB", "pysvc"),
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP", "kafka:9092"),
            search_topic=env.get("SEARCH_TOPIC", "search-requests"),
            kafka_partitions=_positive(env, "KAFKA_PARTITIONS", 1),
            db_pool_size=_positive(env, "DB_POOL_SIZE", 8),
            db_retry_seconds=float(_int(env, "DB_RETRY_SECONDS", 8)),
            worker_batch_size=_positive(env, "WORKER_BATCH_SIZE", 200),
        )

    def postgres_conninfo(self) -> str:
        """A libpq connection string; the password never appears in logs."""
        return (
            f"host={self.postgres_host} port={self.postgres_port} "
            f"dbname={self.postgres_db} user={self.postgres_user} "
            f"password={self.postgres_password} connect_timeout=3"
        )
