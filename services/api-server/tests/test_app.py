"""Routes with an in-memory store and publisher (no database, no broker)."""

import logging
import uuid
from collections.abc import Sequence

import pytest
from api_server.app import MAX_BODY_BYTES, ProbeLogFilter, create_app, republish_unfinished
from api_server.publisher import PublishError
from api_server.store import Conflict, Search, SearchResult, Stored, Unfinished
from fastapi.testclient import TestClient
from pysvc_common.db import Unavailable
from pysvc_common.messages import SearchRequested


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Search] = {}
        self.down = False
        self.aged = {"pending", "queued"}

    def ping(self) -> None:
        if self.down:
            raise Unavailable("postgres down")

    def create(self, search_id: uuid.UUID, query: str) -> Stored:
        self.ping()
        found = self.rows.get(search_id)
        if found is not None:
            if found.query != query:
                raise Conflict(f"search {search_id} exists with another query")
            return Stored(False, found.status)
        self.rows[search_id] = Search(search_id, query, "pending")
        return Stored(True, "pending")

    def mark_published(self, search_ids: Sequence[uuid.UUID]) -> None:
        for search_id in search_ids:
            row = self.rows[search_id]
            self.rows[search_id] = Search(search_id, row.query, row.status, row.results)

    def mark_queued(self, search_ids: Sequence[uuid.UUID]) -> None:
        for search_id in search_ids:
            row = self.rows[search_id]
            if row.status == "pending":
                self.rows[search_id] = Search(search_id, row.query, "queued", row.results)

    def get(self, search_id: uuid.UUID) -> Search | None:
        self.ping()
        return self.rows.get(search_id)

    def unfinished(self, pending_after: float, queued_after: float) -> list[Unfinished]:
        # Every unanswered search counts as old enough; `aged` says which
        # statuses have waited past their bound.
        return [
            Unfinished(r.search_id, r.query, r.status == "queued")
            for r in self.rows.values()
            if r.status in self.aged
        ]

    def close(self) -> None:
        pass


class MemoryPublisher:
    def __init__(self) -> None:
        self.sent: list[SearchRequested] = []
        self.unconfirmed: list[uuid.UUID] = []
        self.down = False

    def ping(self) -> None:
        if self.down:
            raise PublishError("broker down")

    def publish(self, message: SearchRequested) -> None:
        self.ping()
        self.sent.append(message)
        self.unconfirmed.append(message.search_id)

    def confirm(self, timeout: float) -> list[uuid.UUID]:
        acknowledged, self.unconfirmed = self.unconfirmed, []
        return acknowledged

    def close(self) -> None:
        pass


def client(store: MemoryStore, publisher: MemoryPublisher) -> TestClient:
    return TestClient(create_app(store, publisher, background=False), raise_server_exceptions=False)


def test_create_and_get() -> None:
    store, pub = MemoryStore(), MemoryPublisher()
    c = client(store, pub)
    r = c.post("/searches", json={"query": "kafka"})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "pending"
    assert pub.sent[0].query == "kafka"
    sid = uuid.UUID(body["id"])
    store.rows[sid] = Search(sid, "kafka", "done", [SearchResult(4, "KRaft mode", 0.5)])
    got = c.get(f"/searches/{sid}").json()
    assert got["status"] == "done"
    assert got["results"] == [{"document_id": 4, "title": "KRaft mode", "rank": 0.5}]


def test_accepted_while_broker_down_then_republished() -> None:
    store, pub = MemoryStore(), MemoryPublisher()
    pub.down = True
    r = client(store, pub).post("/searches", json={"query": "q"})
    assert r.status_code == 202
    assert r.json()["status"] == "pending"
    assert republish_unfinished(store, pub) == (0, 0)
    pub.down = False
    assert republish_unfinished(store, pub) == (1, 0)
    assert [m.query for m in pub.sent] == ["q"]
    assert [r.status for r in store.rows.values()] == ["pending"]


def test_an_acknowledged_search_is_queued_and_not_published_again_before_its_bound() -> None:
    store, pub = MemoryStore(), MemoryPublisher()
    r = client(store, pub).post("/searches", json={"query": "q"})
    sid = uuid.UUID(r.json()["id"])
    store.mark_queued(pub.confirm(0.0))
    assert store.rows[sid].status == "queued"
    # Only pending searches have waited past their bound: nothing to send.
    store.aged = {"pending"}
    assert republish_unfinished(store, pub) == (0, 0)
    # The queued one waited past its own (longer) bound: the broker lost it.
    store.aged = {"pending", "queued"}
    assert republish_unfinished(store, pub) == (1, 1)
    assert len(pub.sent) == 2


def test_a_retry_with_the_same_idempotency_key_is_stored_and_published_once() -> None:
    store, pub = MemoryStore(), MemoryPublisher()
    c = client(store, pub)
    key = str(uuid.uuid4())
    first = c.post("/searches", json={"query": "kafka"}, headers={"Idempotency-Key": key})
    assert first.status_code == 202 and first.json() == {"id": key, "status": "pending"}
    sid = uuid.UUID(key)
    store.rows[sid] = Search(sid, "kafka", "done")
    again = c.post("/searches", json={"query": "kafka"}, headers={"Idempotency-Key": key})
    assert again.status_code == 202 and again.json() == {"id": key, "status": "done"}
    assert len(store.rows) == 1 and [m.search_id for m in pub.sent] == [sid]

    other = c.post("/searches", json={"query": "cache"}, headers={"Idempotency-Key": key})
    assert other.status_code == 409 and key in other.json()["error"]
    assert store.rows[sid].query == "kafka" and len(pub.sent) == 1


def test_a_query_the_schema_calls_valid_is_accepted() -> None:
    # U+001C is not white space to the schema's `\s`, though str.isspace says so.
    r = client(MemoryStore(), MemoryPublisher()).post("/searches", json={"query": "\x1c"})
    assert r.status_code == 202, r.json()


def test_an_idempotency_key_that_is_not_a_uuid_is_422_naming_the_header() -> None:
    store, pub = MemoryStore(), MemoryPublisher()
    r = client(store, pub).post("/searches", json={"query": "q"}, headers={"Idempotency-Key": "retry-1"})
    assert r.status_code == 422
    assert any("Idempotency-Key" in d for d in r.json()["details"]), r.json()
    assert not store.rows and not pub.sent


BAD_BODIES = [
    b"{not json",
    b"{}",
    b'{"query": ""}',
    b'{"query": "' + b"x" * 201 + b'"}',
    b'{"query": "x", "extra": 1}',
    b'{"query": 5}',
    b'{"query": "a\\u0000b"}',
    b'{"query": "a\\ud800b"}',
    b'{"query": "  \\n\\t "}',
]


@pytest.mark.parametrize("raw", BAD_BODIES)
def test_input_postgres_cannot_store_is_422_naming_the_field(raw: bytes) -> None:
    store = MemoryStore()
    r = client(store, MemoryPublisher()).post("/searches", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid request"
    assert body["details"] and all(isinstance(d, str) for d in body["details"])
    if b"query" in raw and b"extra" not in raw:
        assert any(d.startswith("body.query") for d in body["details"]), body
    assert store.rows == {}, "a rejected request stores nothing"


def test_bad_path_is_422_and_undecodable_body_is_400() -> None:
    c = client(MemoryStore(), MemoryPublisher())
    r = c.get("/searches/not-a-uuid")
    assert r.status_code == 422
    assert r.json()["details"][0].startswith("path.search_id")
    r = c.post("/searches", content=b'{"query": "\xff"}', headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert "error" in r.json()


def test_wrong_method_is_405_json() -> None:
    r = client(MemoryStore(), MemoryPublisher()).put("/searches")
    assert r.status_code == 405
    assert "error" in r.json()
    assert "POST" in r.headers["allow"]


def test_oversized_body_is_413() -> None:
    c = client(MemoryStore(), MemoryPublisher())
    r = c.post("/searches", content=b"x" * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "error" in r.json()


def test_unknown_id_is_404() -> None:
    r = client(MemoryStore(), MemoryPublisher()).get(f"/searches/{uuid.uuid4()}")
    assert r.status_code == 404
    assert "no search" in r.json()["error"]


def test_database_down_is_503_and_a_bug_is_not() -> None:
    store = MemoryStore()
    store.down = True
    r = client(store, MemoryPublisher()).post("/searches", json={"query": "q"})
    assert r.status_code == 503
    assert "error" in r.json()

    class Broken(MemoryStore):
        def create(self, search_id: uuid.UUID, query: str) -> Stored:
            raise KeyError("a bug")

    r = client(Broken(), MemoryPublisher()).post("/searches", json={"query": "q"})
    assert r.status_code == 500, "a bug must not pretend a backing service is down"


def test_every_status_is_declared_with_a_body_schema() -> None:
    doc = client(MemoryStore(), MemoryPublisher()).get("/openapi.json").json()
    declared = {
        (path, method): set(op["responses"]) for path, ops in doc["paths"].items() for method, op in ops.items()
    }
    assert declared[("/searches", "post")] == {"202", "400", "409", "413", "422", "503"}
    assert declared[("/searches/{search_id}", "get")] == {"200", "404", "422", "503"}
    assert declared[("/ready", "get")] == {"200", "503"}
    for (path, method), statuses in declared.items():
        for status in statuses:
            content = doc["paths"][path][method]["responses"][status]["content"]
            assert "schema" in content["application/json"], (path, method, status)
    query = doc["components"]["schemas"]["SearchIn"]["properties"]["query"]
    assert query["maxLength"] == 200 and "pattern" in query


def test_ready_reports_each_dependency() -> None:
    store, pub = MemoryStore(), MemoryPublisher()
    c = client(store, pub)
    assert c.get("/ready").status_code == 200
    store.down = True
    pub.down = True
    r = c.get("/ready")
    assert r.status_code == 503
    assert set(r.json()["problems"]) == {"postgres", "kafka"}
    assert c.get("/health").status_code == 200


def access(path: str, status: int) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', ("1.2.3.4", "GET", path, "1.1", status), None
    )


def test_probes_are_logged_only_when_they_fail_or_change() -> None:
    f = ProbeLogFilter()
    seen = [f.filter(access("/ready", s)) for s in (200, 200, 200, 503, 503, 200, 200)]
    assert seen == [True, False, False, True, True, True, False]
    assert all(f.filter(access("/searches", 202)) for _ in range(3))
