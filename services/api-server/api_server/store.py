"""PostgreSQL access for the API, behind a small interface tests can replace."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol

from pysvc_common.config import Settings
from pysvc_common.db import Connection, connect


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


class Store(Protocol):
    def ping(self) -> None: ...
    def create(self, search_id: uuid.UUID, query: str) -> None: ...
    def mark_published(self, search_id: uuid.UUID) -> None: ...
    def get(self, search_id: uuid.UUID) -> Search | None: ...
    def unfinished(self, older_than_seconds: float) -> list[tuple[uuid.UUID, str]]: ...


class PostgresStore:
    """One short connection per call: survives database restarts for free."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _connect(self) -> Connection:
        return connect(self._settings)

    def ping(self) -> None:
        with self._connect() as conn:
            conn.execute("SELECT 1")

    def create(self, search_id: uuid.UUID, query: str) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO searches (id, query, status) VALUES (%s, %s, 'pending')",
                (search_id, query),
            )

    def mark_published(self, search_id: uuid.UUID) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE searches SET status = 'queued', published_at = now() "
                "WHERE id = %s AND status <> 'done'",
                (search_id,),
            )

    def get(self, search_id: uuid.UUID) -> Search | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT query, status FROM searches WHERE id = %s", (search_id,)
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
        )

    def unfinished(self, older_than_seconds: float) -> list[tuple[uuid.UUID, str]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, query FROM searches WHERE status <> 'done' AND "
                "coalesce(published_at, created_at) < now() - make_interval(secs => %s) "
                "ORDER BY created_at LIMIT 100",
                (older_than_seconds,),
            ).fetchall()
        return [(uuid.UUID(str(r[0])), str(r[1])) for r in rows]
