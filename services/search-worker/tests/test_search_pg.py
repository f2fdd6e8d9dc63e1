"""`search.answer` against a real PostgreSQL (the schema and seed documents
of services/database/init). Runs when PYSVC_TEST_POSTGRES=1 and the
POSTGRES_* variables point at a database: `cargo xtask test` does that
against an isolated stack."""

import os
import threading
import uuid

import pytest
from pysvc_common.config import Settings
from pysvc_common.db import Connection, connect
from search_worker.search import MAX_RESULTS, answer

pytestmark = pytest.mark.skipif(
    os.environ.get("PYSVC_TEST_POSTGRES") != "1", reason="needs PostgreSQL (PYSVC_TEST_POSTGRES=1)"
)


def new_searches(conn: Connection, queries: list[str]) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in queries]
    for i, q in zip(ids, queries):
        conn.execute("INSERT INTO searches (id, query) VALUES (%s, %s)", (i, q))
    return ids


def test_a_batch_is_answered_once() -> None:
    with connect(Settings.from_env()) as conn:
        ids = new_searches(conn, ["kafka", "healthcheck", "no such word anywhere"])
        assert answer(conn, ids + [uuid.uuid4()]) == 3, "unknown ids are skipped"
        assert answer(conn, ids) == 0, "a redelivered batch changes nothing"
        rows = conn.execute(
            "SELECT s.status, count(r.search_id) FROM searches s LEFT JOIN search_results r ON r.search_id = s.id "
            "WHERE s.id = ANY(%s) GROUP BY s.id, s.status ORDER BY s.id",
            (ids,),
        ).fetchall()
        assert {r[0] for r in rows} == {"done"}
        counts = sorted(int(r[1]) for r in rows)
        assert counts[0] == 0 and 0 < counts[-1] <= MAX_RESULTS


def test_overlapping_batches_in_two_workers_neither_deadlock_nor_answer_twice() -> None:
    settings = Settings.from_env()
    with connect(settings) as conn:
        ids = new_searches(conn, ["cache", "proxy", "graceful shutdown", "postgres"] * 25)
    answered: list[int] = []

    def work(batch: list[uuid.UUID]) -> None:
        with connect(settings) as own:
            answered.append(answer(own, batch))

    threads = [threading.Thread(target=work, args=(b,)) for b in (ids, list(reversed(ids)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(answered) == len(ids)


def test_postgres_cannot_store_nul_which_is_why_the_api_refuses_it() -> None:
    import psycopg

    with connect(Settings.from_env()) as conn, pytest.raises(psycopg.DataError):
        conn.execute("INSERT INTO searches (id, query) VALUES (%s, %s)", (uuid.uuid4(), "a\x00b"))


def test_completed_at_is_stamped_when_the_answers_are_stored_not_when_the_transaction_began() -> None:
    with connect(Settings.from_env()) as conn:
        ids = new_searches(conn, ["kafka", "cache"])
        with conn.transaction():
            began = conn.execute("SELECT now()").fetchone()
            conn.execute("SELECT pg_sleep(0.2)")
            assert answer(conn, ids) == 2
        assert began is not None
        stamps = conn.execute("SELECT completed_at FROM searches WHERE id = ANY(%s)", (ids,)).fetchall()
        assert all((row[0] - began[0]).total_seconds() >= 0.2 for row in stamps), (began, stamps)
