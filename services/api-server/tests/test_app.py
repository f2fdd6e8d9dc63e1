"""Routes with an in-memory store and publisher (no database, no broker)."""

import uuid

from api_server.app import MAX_BODY_BYTES, create_app, republish_unfinished
from api_server.publisher import PublishError
from api_server.store import Search, SearchResult
from fastapi.testclient import TestClient
from pysvc_common.messages import SearchRequested


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Search] = {}
        self.down = False

    def ping(self) -> None:
        if self.down:
            raise ConnectionError("postgres down")

    def create(self, search_id: uuid.UUID, query: str) -> None:
        self.ping()
        self.rows[search_id] = Search(search_id, query, "pending")

    def mark_published(self, search_id: uuid.UUID) -> None:
        row = self.rows[search_id]
        self.rows[search_id] = Search(search_id, row.query, "queued", row.results)

    def get(self, search_id: uuid.UUID) -> Search | None:
        self.ping()
        return self.rows.get(search_id)

    def unfinished(self, older_than_seconds: float) -> list[tuple[uuid.UUID, str]]:
        return [(r.search_id, r.query) for r in self.rows.values() if r.status != "done"]


class MemoryPublisher:
    def __init__(self) -> None:
        self.sent: list[SearchRequested] = []
        self.down = False

    def ping(self) -> None:
        if self.down:
            raise PublishError("broker down")

    def publish(self, message: SearchRequested) -> None:
        self.ping()
        self.sent.append(message)


def client(store: MemoryStore, publisher: MemoryPublisher) -> TestClient:
    return TestClient(create_app(store, publisher, background=False), raise_server_exceptions=False)


def test_create_and_get() -> None:
    store, pub = MemoryStore(), MemoryPublisher()
    c = client(store, pub)
    r = c.post("/searches", json={"query": "kafka"})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "queued"
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
    pub.down = False
    assert republish_unfinished(store, pub) == 1
    assert [m.query for m in pub.sent] == ["q"]


def test_bad_input_gets_4xx_json() -> None:
    c = client(MemoryStore(), MemoryPublisher())
    cases = [
        c.post("/searches", content=b"{not json", headers={"content-type": "application/json"}),
        c.post("/searches", json={}),
        c.post("/searches", json={"query": ""}),
        c.post("/searches", json={"query": "x" * 201}),
        c.post("/searches", json={"query": "x", "extra": 1}),
        c.post("/searches", json={"query": 5}),
        c.get("/searches/not-a-uuid"),
    ]
    for r in cases:
        assert r.status_code == 422, r.text
        assert "error" in r.json()


def test_oversized_body_is_413() -> None:
    c = client(MemoryStore(), MemoryPublisher())
    r = c.post("/searches", content=b"x" * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "error" in r.json()


def test_unknown_id_is_404() -> None:
    r = client(MemoryStore(), MemoryPublisher()).get(f"/searches/{uuid.uuid4()}")
    assert r.status_code == 404
    assert "no search" in r.json()["error"]


def test_database_down_is_503_not_500() -> None:
    store = MemoryStore()
    store.down = True
    r = client(store, MemoryPublisher()).post("/searches", json={"query": "q"})
    assert r.status_code == 503
    assert "error" in r.json()


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
