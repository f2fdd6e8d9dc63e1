"""`PostgresStore` against a real PostgreSQL; runs when PYSVC_TEST_POSTGRES=1
(`cargo xtask test` points it at an isolated stack)."""

import os
import threading
import uuid

import pytest
from api_server.store import Conflict, PostgresStore, Stored
from pysvc_common.config import Settings

pytestmark = pytest.mark.skipif(
    os.environ.get("PYSVC_TEST_POSTGRES") != "1", reason="needs PostgreSQL (PYSVC_TEST_POSTGRES=1)"
)


def test_create_is_idempotent_and_get_reads_it_back() -> None:
    store = PostgresStore(Settings.from_env())
    try:
        search_id = uuid.uuid4()
        assert store.create(search_id, "kafka") == Stored(True, "pending")
        # A retry (after a lost answer, or with the client's Idempotency-Key).
        assert store.create(search_id, "kafka") == Stored(False, "pending")
        with pytest.raises(Conflict):
            store.create(search_id, "another query")
        found = store.get(search_id)
        assert found is not None and found.status == "pending" and found.created_at is not None
        assert found.query == "kafka"
        assert store.get(uuid.uuid4()) is None
        store.ping()
    finally:
        store.close()


def test_unanswered_searches_are_found_for_republishing() -> None:
    store = PostgresStore(Settings.from_env())
    try:
        search_id = uuid.uuid4()
        store.create(search_id, "cache")
        assert search_id in {u.search_id for u in store.unfinished(0.0, 0.0)}
        store.mark_published([search_id])
        assert search_id not in {u.search_id for u in store.unfinished(60.0, 60.0)}
        # Acknowledged by the broker: queued, and sent again only after its
        # own bound.
        store.mark_queued([search_id])
        found = store.get(search_id)
        assert found is not None and found.status == "queued"
        assert search_id not in {u.search_id for u in store.unfinished(0.0, 60.0)}
        assert (search_id, "cache", True) in store.unfinished(0.0, 0.0)
    finally:
        store.close()


def test_concurrent_creates_are_written_together_and_each_one_is_stored() -> None:
    store = PostgresStore(Settings.from_env())
    ids = [uuid.uuid4() for _ in range(64)]
    try:
        threads = [threading.Thread(target=store.create, args=(i, "proxy")) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(store.get(i) is not None for i in ids)
    finally:
        store.close()


def test_one_id_twice_in_one_batch_is_stored_once_and_another_query_conflicts() -> None:
    store = PostgresStore(Settings.from_env())
    search_id = uuid.uuid4()
    outcomes: list[object] = []

    def create(query: str) -> None:
        try:
            outcomes.append(store.create(search_id, query))
        except Conflict as err:
            outcomes.append(err)

    try:
        threads = [threading.Thread(target=create, args=(q,)) for q in ["kafka", "kafka", "cache", "kafka"]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        found = store.get(search_id)
        assert found is not None
        conflicts = [o for o in outcomes if isinstance(o, Conflict)]
        stored = [o for o in outcomes if isinstance(o, Stored)]
        # Whichever query was stored first holds the id; every other query conflicts.
        expected_conflicts = 1 if found.query == "kafka" else 3
        assert len(conflicts) == expected_conflicts and len(stored) == 4 - expected_conflicts, outcomes
        assert any(s.new for s in stored)
    finally:
        store.close()


def test_one_key_sent_to_two_api_processes_at_once_is_stored_once() -> None:
    # Two stores, two pools: two API processes. The loser's statement waits
    # for the winner's commit and does not see the row in its snapshot; it
    # reads it again.
    stores = [PostgresStore(Settings.from_env()) for _ in range(2)]
    try:
        for _ in range(30):
            search_id = uuid.uuid4()
            outcomes: list[Stored] = []

            def create(store: PostgresStore, search_id: uuid.UUID = search_id) -> None:
                outcomes.append(store.create(search_id, "kafka"))

            threads = [threading.Thread(target=create, args=(s,)) for s in stores]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(o.new for o in outcomes) == [False, True], outcomes
            assert all(o.status == "pending" for o in outcomes)
    finally:
        for s in stores:
            s.close()
