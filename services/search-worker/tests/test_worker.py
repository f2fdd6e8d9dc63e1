import logging
import os
import time
from pathlib import Path
from typing import cast

import pytest
from confluent_kafka import Consumer, TopicPartition

from search_worker import health
from search_worker.main import REJOIN_AFTER_SECONDS, consumer_config, on_assign, on_revoke
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


def test_rebalances_are_logged_with_the_partitions(caplog: pytest.LogCaptureFixture) -> None:
    consumer = cast(Consumer, None)
    with caplog.at_level(logging.INFO, logger="search_worker"):
        on_assign(consumer, [TopicPartition("t", 3), TopicPartition("t", 1)])
        on_revoke(consumer, [TopicPartition("t", 1)])
    assert [r.getMessage() for r in caplog.records] == ["partitions assigned: [1, 3]", "partitions revoked: [1]"]


def test_a_member_never_gives_up_on_a_rebalance_before_the_coordinator_does() -> None:
    config = consumer_config("kafka:9092")
    rebalance = int(config["max.poll.interval.ms"]) / 1000
    assert rebalance < 60, "a group of restarted workers must not wait minutes for the members that left"
    assert REJOIN_AFTER_SECONDS > 2 * rebalance
