"""PostgreSQL connections, one way for every service."""

from __future__ import annotations

from typing import Any

import psycopg

from pysvc_common.config import Settings

Connection = psycopg.Connection[tuple[Any, ...]]


def connect(settings: Settings) -> Connection:
    """An autocommit connection; callers open transactions explicitly."""
    return psycopg.connect(settings.postgres_conninfo(), autocommit=True)
