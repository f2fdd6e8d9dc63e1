"""PostgreSQL connections, one way for every service."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from pysvc_common.config import Settings

log = logging.getLogger(__name__)

Connection = psycopg.Connection[tuple[Any, ...]]
Pool = ConnectionPool[Connection]
T = TypeVar("T")


class Unavailable(RuntimeError):
    """PostgreSQL did not answer within the retry budget: it really is down."""


def connect(settings: Settings) -> Connection:
    """An autocommit connection; callers open transactions explicitly."""
    return psycopg.connect(settings.postgres_conninfo(), autocommit=True)


def pool(settings: Settings, name: str) -> Pool:
    """A fixed-size pool (`DB_POOL_SIZE`) of autocommit connections. It opens
    without waiting, so a database that is still starting does not stop the
    service from starting; broken connections are replaced in the background."""
    return ConnectionPool(
        settings.postgres_conninfo(),
        min_size=settings.db_pool_size,
        max_size=settings.db_pool_size,
        kwargs={"autocommit": True},
        name=name,
        timeout=settings.db_retry_seconds,
        open=True,
    )


def with_retry(pool: Pool, budget_seconds: float, work: Callable[[Connection], T]) -> T:
    """Runs `work` on a pooled connection, again on a connection error (a
    restart drops every pooled connection), until `budget_seconds` are spent.
    `work` must be safe to repeat: it may have run before the error."""
    deadline = time.monotonic() + budget_seconds
    delay = 0.05
    while True:
        remaining = deadline - time.monotonic()
        try:
            with pool.connection(timeout=max(remaining, 0.01)) as conn:
                return work(conn)
        except psycopg.OperationalError as err:  # includes the pool's timeout
            if time.monotonic() + delay >= deadline:
                raise Unavailable(f"PostgreSQL unavailable for {budget_seconds:.0f}s: {err}") from err
            log.info("PostgreSQL call failed (%s); retrying", str(err).strip() or type(err).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
