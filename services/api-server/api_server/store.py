"""PostgreSQL access for the API, behind a small interface tests can replace."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

import psycopg
from pysvc_common.config import Settings
from pysvc_common.db import Connection, Unavailable, pool, with_retry

log = logging.getLogger(__name__)

REPUBLISH_BATCH = 500
INSERT_BATCH = 256
# One statement per batch: insert what is new, and say for each id whether
# this statement stored it and what the id holds now (an earlier request's
# row, seen in the statement's snapshot, or the row just inserted).
INSERT_MANY = (
    "WITH batch AS (SELECT * FROM unnest(%s::uuid[], %s::text[]) AS t(id, query)), "
    "inserted AS (INSERT INTO searches (id, query, status) SELECT id, query, 'pending' FROM batch "
    "ON CONFLICT (id) DO NOTHING RETURNING id, query) "
    "SELECT DISTINCT b.id, i.id IS NOT NULL, coalesce(i.query, s.query), coalesce(s.status, 'pending') "
    "FROM batch b LEFT JOIN inserted i ON i.id = b.id LEFT JOIN searches s ON s.id = b.id"
)
# Rows locked in id order, like the worker does: no deadlock.
MARK_PUBLISHED = (
    "UPDATE searches SET published_at = now() WHERE id IN ("
    "SELECT id FROM searches WHERE id = ANY(%s) AND status <> 'done' ORDER BY id FOR UPDATE)"
)
MARK_QUEUED = (
    "UPDATE searches SET status = 'queued' WHERE id IN ("
    "SELECT id FROM searches WHERE id = ANY(%s) AND status = 'pending' ORDER BY id FOR UPDATE)"
)
# An id another transaction inserted after that snapshot (the same key sent
# to two API processes at once) is read again by a statement of its own.
STORED = "SELECT id, query, status FROM searches WHERE id = ANY(%s)"


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


class Conflict(Exception):
    """The id already holds a search for another query."""


@dataclass(frozen=True)
class Stored:
    """What `create` left in the database: `new` when this call stored the
    row, false when a search with the same id and query was already there
    (a client's retry); `status` is the row's status now."""

    new: bool
    status: str


class Unfinished(NamedTuple):
    """A search not answered yet; `queued` when the broker had acknowledged
    it (it is in the broker's log), false while it is only stored."""

    search_id: uuid.UUID
    query: str
    queued: bool


class Store(Protocol):
    def ping(self) -> None: ...
    def create(self, search_id: uuid.UUID, query: str) -> Stored: ...
    def mark_published(self, search_ids: Sequence[uuid.UUID]) -> None: ...
    def mark_queued(self, search_ids: Sequence[uuid.UUID]) -> None: ...
    def get(self, search_id: uuid.UUID) -> Search | None: ...
    def unfinished(self, pending_after: float, queued_after: float) -> list[Unfinished]: ...
    def close(self) -> None: ...


@dataclass
class _Insert:
    search_id: uuid.UUID
    query: str
    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None
    stored: Stored | None = None


class PostgresStore:
    """A connection pool sized by `DB_POOL_SIZE`. Every call is retried on a
    connection error within `DB_RETRY_SECONDS` (a database restart), and is
    safe to repeat.

    `create` returns once the row is committed, or raises `Conflict` when
    its id already holds another query. The rows of concurrent
    requests are written together: one writer thread inserts whatever has
    queued up while its previous statement ran, in one idempotent statement
    and one commit, so a request that ends in an error has stored nothing,
    and a busy API does not pay one commit per search."""

    def __init__(self, settings: Settings) -> None:
        self._pool = pool(settings, "api-server")
        self._budget = settings.db_retry_seconds
        self._inserts: queue.Queue[_Insert | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="search-writer", daemon=True)
        self._writer.start()

    def close(self) -> None:
        self._inserts.put(None)
        self._writer.join(timeout=self._budget + 2.0)
        self._pool.close()

    def _write_loop(self) -> None:
        while True:
            first = self._inserts.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < INSERT_BATCH:
                try:
                    more = self._inserts.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._insert(batch)
            if stop:
                return

    def _insert(self, batch: list[_Insert]) -> None:
        ids = [b.search_id for b in batch]

        def insert(conn: Connection) -> dict[uuid.UUID, tuple[bool, str | None, str]]:
            rows = conn.execute(INSERT_MANY, (ids, [b.query for b in batch])).fetchall()
            held = {r[0]: (bool(r[1]), r[2], str(r[3])) for r in rows}
            unseen = [i for i, (_, query, _) in held.items() if query is None]
            if unseen:
                for r in conn.execute(STORED, (unseen,)).fetchall():
                    held[r[0]] = (False, str(r[1]), str(r[2]))
            return held

        try:
            held = with_retry(self._pool, self._budget, insert)
            for item in batch:
                new, query, status = held[item.search_id]
                if query != item.query:
                    item.error = Conflict(f"search {item.search_id} exists with another query")
                else:
                    # Two requests with one id in one batch: both see it new,
                    # and publishing it twice is harmless (the worker skips
                    # what is done). A retry after a lost commit sees it old:
                    # the relay publishes what was never published.
                    item.stored = Stored(new, status)
        except psycopg.Error as err:
            # Not a connection problem: a row the database refuses. Alone,
            # each row gets its own answer instead of failing the others.
            if len(batch) > 1:
                for item in batch:
                    self._insert([item])
                return
            log.error("storing search %s failed: %s", batch[0].search_id, err)
            batch[0].error = err
        except Exception as err:  # Unavailable, or a bug: every waiting request learns it
            for item in batch:
                item.error = err
        for item in batch:
            item.done.set()

    def ping(self) -> None:
        # No retry: readiness reports the database as it is now.
        with self._pool.connection(timeout=2.0) as conn:
            conn.execute("SELECT 1")

    def create(self, search_id: uuid.UUID, query: str) -> Stored:
        item = _Insert(search_id, query)
        self._inserts.put(item)
        if not item.done.wait(self._budget + 2.0):
            raise Unavailable(f"PostgreSQL did not store search {search_id} in time")
        if isinstance(item.error, Unavailable):
            raise Unavailable(str(item.error)) from item.error
        if isinstance(item.error, Conflict):
            raise Conflict(str(item.error)) from item.error
        if item.error is not None or item.stored is None:
            raise RuntimeError(f"storing search {search_id} failed: {item.error}") from item.error
        return item.stored

    def mark_published(self, search_ids: Sequence[uuid.UUID]) -> None:
        self._update(MARK_PUBLISHED, search_ids)

    def mark_queued(self, search_ids: Sequence[uuid.UUID]) -> None:
        """The broker acknowledged these searches: `pending` becomes `queued`
        (an answered search stays `done`)."""
        self._update(MARK_QUEUED, search_ids)

    def _update(self, statement: str, search_ids: Sequence[uuid.UUID]) -> None:
        def update(conn: Connection) -> None:
            conn.execute(statement, (list(search_ids),))

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

    def unfinished(self, pending_after: float, queued_after: float) -> list[Unfinished]:
        """Unanswered searches last published more than `pending_after`
        seconds ago (never acknowledged by the broker) or `queued_after`
        seconds ago (acknowledged, so in the broker's log unless it lost it)."""

        def read(conn: Connection) -> list[Unfinished]:
            rows = conn.execute(
                "SELECT id, query, status = 'queued' FROM searches WHERE status <> 'done' AND "
                "coalesce(published_at, created_at) < now() - make_interval(secs => "
                "CASE WHEN status = 'queued' THEN %s ELSE %s END) "
                "ORDER BY created_at LIMIT %s",
                (queued_after, pending_after, REPUBLISH_BATCH),
            ).fetchall()
            return [Unfinished(uuid.UUID(str(r[0])), str(r[1]), bool(r[2])) for r in rows]

        return with_retry(self._pool, self._budget, read)
