import os
import time
from pathlib import Path

from search_worker import health
from search_worker.main import consumer_config
from search_worker.search import ANSWER_SQL


def test_heartbeat_fresh_and_stale(tmp_path: Path) -> None:
    beat = tmp_path / "hb"
    assert not health.is_fresh(beat)
    health.beat(beat)
    assert health.is_fresh(beat, max_age=5)
    old = time.time() - 60
    os.utime(beat, (old, old))
    assert not health.is_fresh(beat, max_age=15)


def test_offsets_are_committed_by_hand() -> None:
    config = consumer_config("kafka:9092")
    assert config["enable.auto.commit"] is False
    assert config["group.id"] == "search-worker"
    assert config["auto.offset.reset"] == "earliest"
    assert config["allow.auto.create.topics"] is False


def test_a_batch_locks_in_id_order_and_skips_answered_searches() -> None:
    sql = " ".join(ANSWER_SQL.split())
    assert "status <> 'done' ORDER BY id FOR UPDATE" in sql
    assert "ON CONFLICT DO NOTHING" in sql
