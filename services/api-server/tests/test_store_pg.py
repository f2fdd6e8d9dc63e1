"""`PostgresStore` against a real PostgreSQL; runs when PYSVC_TEST_POSTGRES=1
(`cargo xtask test` points it at an isolated stack)."""

import os
import threading
import uuid

import pytest
from api_server.store import PostgresStore
from pysvc_common.config import Settings

pytestmark = pytest.mark.skipif(
    os.environ.get("PYSVC_TEST_POSTGRES") != "1", reason="needs PostgreSQL (PYSVC_TEST_POSTGRES=1)"
)


def test_create_is_idempotent_and_get_reads_it_back() -> None:
    store = PostgresStore(Settings.from_env())
    try:
        search_id = uuid.uuid4()
        store.create(search_id, "kafka")
        store.create(search_id, "kafka")  # a retry after a lost answer
        found = store.get(search_id)
        assert found is not None and found.status == "pending" and found.created_at is not None
        assert store.get(uuid.uuid4()) is None
        store.ping()
    finally:
        store.close()


def test_unanswered_searches_are_found_for_republishing() -> None:
    store = PostgresStore(Settings.from_env())
    try:
        search_id = uuid.uuid4()
        store.create(search_id, "cache")
        assert search_id in {i for i, _ in store.unfinished(0.0)}
        store.mark_published([search_id])
        assert search_id not in {i for i, _ in store.unfinished(60.0)}
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
