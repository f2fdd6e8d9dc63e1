"""PostgreSQL access for the API, behind a small interface tests can replace."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pysvc_common.config import Settings
from pysvc_common.db import Connection, pool, with_retry

REPUBLISH_BATCH = 500


@dataclass(frozen=True)
class SearchResult:
    document_id: int
    title: str
    rank: float


@dataclass(frozen=True)
class Search:
    search_id: uuid.UUID
    query: str
    status: str
    results: list[SearchResult] = field(default_factory=list)
    created_at: datetime | None = None
    completed_at: datetime | None = None


class Store(Protocol):
    def ping(self) -> None: ...
    def create(self, search_id: uuid.UUID, query: str) -> None: ...
    def mark_published(self, search_ids: Sequence[uuid.UUID]) -> None: ...
    def get(self, search_id: uuid.UUID) -> Search | None: ...
    def unfinished(self, older_than_seconds: float) -> list[tuple[uuid.UUID, str]]: ...
    def close(self) -> None: ...


class PostgresStore:
    """A connection pool sized by `DB_POOL_SIZE`. Every call is retried on a
    connection error within `DB_RETRY_SECONDS` (a database restart), and is
    safe to repeat: `create` is one idempotent statement, so a request that
    ends in an error has stored nothing or exactly the row its retry found."""

    def __init__(self, settings: Settings) -> None:
        self._pool = pool(settings, "api-server")
        self._budget = settings.db_retry_seconds

    def close(self) -> None:
        self._pool.close()

    def ping(self) -> None:
        # No retry: readiness reports the database as it is now.
        with self._pool.connection(timeout=2.0) as conn:
            conn.execute("SELECT 1")

    def create(self, search_id: uuid.UUID, query: str) -> None:
        def insert(conn: Connection) -> None:
            conn.execute(
                "INSERT INTO searches (id, query, status) VALUES (%s, %s, 'pending') "
                "ON CONFLICT (id) DO NOTHING",
                (search_id, query),
            )

        with_retry(self._pool, self._budget, insert)

    def mark_published(self, search_ids: Sequence[uuid.UUID]) -> None:
        def update(conn: Connection) -> None:
            conn.execute(
                # Rows locked in id order, like the worker does: no deadlock.
                "UPDATE searches SET published_at = now() WHERE id IN ("
                "SELECT id FROM searches WHERE id = ANY(%s) AND status <> 'done' ORDER BY id FOR UPDATE)",
                (list(search_ids),),
            )

        if search_ids:
            with_retry(self._pool, self._budget, update)

    def get(self, search_id: uuid.UUID) -> Search | None:
        def read(conn: Connection) -> Search | None:
            row = conn.execute(
                "SELECT query, status, created_at, completed_at FROM searches WHERE id = %s",
                (search_id,),
            ).fetchone()
            if row is None:
                return None
            results = conn.execute(
                "SELECT r.document_id, d.title, r.rank FROM search_results r "
                "JOIN documents d ON d.id = r.document_id "
                "WHERE r.search_id = %s ORDER BY r.position",
                (search_id,),
            ).fetchall()
            return Search(
                search_id=search_id,
                query=str(row[0]),
                status=str(row[1]),
                results=[SearchResult(int(r[0]), str(r[1]), float(r[2])) for r in results],
                created_at=row[2],
                completed_at=row[3],
            )

        return with_retry(self._pool, self._budget, read)

    def unfinished(self, older_than_seconds: float) -> list[tuple[uuid.UUID, str]]:
        def read(conn: Connection) -> list[tuple[uuid.UUID, str]]:
            rows = conn.execute(
                "SELECT id, query FROM searches WHERE status <> 'done' AND "
                "coalesce(published_at, created_at) < now() - make_interval(secs => %s) "
                "ORDER BY created_at LIMIT %s",
                (older_than_seconds, REPUBLISH_BATCH),
            ).fetchall()
            return [(uuid.UUID(str(r[0])), str(r[1])) for r in rows]

        return with_retry(self._pool, self._budget, read)
