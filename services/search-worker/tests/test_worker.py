import logging
import os
import threading
import time
from pathlib import Path
from typing import cast

import pytest
from confluent_kafka import Consumer, TopicPartition

from search_worker import health
from search_worker.group import Starvation
from search_worker.main import consumer_config, on_assign, on_revoke
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


class Held:
    """A consumer that holds `partitions` (only `assignment` is asked)."""

    def __init__(self, *partitions: int) -> None:
        self.held = [TopicPartition("t", p) for p in partitions]

    def assignment(self) -> list[TopicPartition]:
        return self.held


def test_rebalances_are_logged_with_the_change_and_what_is_held(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="search_worker"):
        on_assign(cast(Consumer, Held(0)), [TopicPartition("t", 3), TopicPartition("t", 1)])
        on_revoke(cast(Consumer, Held(0, 1, 3)), [TopicPartition("t", 1)])
    assert [r.getMessage() for r in caplog.records] == [
        "partitions assigned: [1, 3] (holding [0, 1, 3])",
        "partitions revoked: [1] (holding [0, 3])",
    ]


def test_the_group_uses_the_consumer_protocol_and_the_brokers_timing() -> None:
    config = consumer_config("kafka:9092")
    assert config["group.protocol"] == "consumer"
    # KIP-848: session and heartbeat timing are the broker's; the classic
    # protocol's knobs are refused or ignored with it.
    for classic in ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"):
        assert classic not in config


def test_a_problem_fails_the_probe_with_its_reason(tmp_path: Path) -> None:
    beat, problem = tmp_path / "hb", tmp_path / "problem"
    assert health.verdict(beat, problem) is not None  # no heartbeat yet
    health.beat(beat)
    assert health.verdict(beat, problem) is None
    health.report("no partition assigned for 20s", problem)
    assert health.verdict(beat, problem) == "no partition assigned for 20s"
    assert health.current() == "no partition assigned for 20s"
    health.report(None, problem)
    assert health.verdict(beat, problem) is None and not problem.exists()
    health.report(None, problem)  # clearing twice is fine


def test_starving_means_unassigned_while_the_group_has_lag() -> None:
    s = Starvation(bound=15)
    s.update(False, 0, now=0)  # nothing to consume: an idle member is fine
    assert s.problem(100) is None
    s.update(False, 4, now=100)
    assert s.problem(110) is None and not s.should_rejoin(110)
    s.update(False, None, now=112)  # the broker did not answer: no change
    problem = s.problem(116)
    assert problem is not None and "4 unconsumed messages" in problem
    assert s.should_rejoin(116)
    assert not s.should_rejoin(120), "one rejoin per bound"
    assert s.should_rejoin(132)
    s.update(True, None, now=133)  # a partition again: healthy at once
    assert s.problem(133) is None and not s.should_rejoin(200)


def test_an_assigned_member_that_consumes_never_starves() -> None:
    s = Starvation(bound=1)
    s.update(True, None, now=0)
    s.update(True, 0, now=500)
    assert s.problem(1000) is None


def test_a_member_holding_lagging_partitions_without_consuming_is_stalled() -> None:
    s = Starvation(bound=15)
    s.update(False, 7, now=0)  # starving first...
    s.update(True, 7, now=10)  # ...then a partition: the clock starts again
    assert s.problem(24) is None
    s.update(True, 7, now=24)
    problem = s.problem(26)
    assert problem is not None and "consumed nothing for 16s" in problem and "7 unconsumed" in problem
    assert s.should_rejoin(26)
    s.update(True, 0, now=27)  # consumed (or nothing left): healthy at once
    assert s.problem(27) is None


def test_the_watchdog_ends_a_process_whose_loop_is_stuck(tmp_path: Path) -> None:
    beat, exits = tmp_path / "hb", list[int]()
    stop = threading.Event()

    def record(code: int) -> None:
        exits.append(code)
        stop.set()

    health.beat(beat)
    old = time.time() - 61
    os.utime(beat, (old, old))
    health.watchdog(stop, limit=60, path=beat, every=0.01, exit=record)
    assert exits == [health.STUCK_EXIT_CODE]


def test_the_watchdog_leaves_a_beating_loop_alone(tmp_path: Path) -> None:
    beat, exits = tmp_path / "hb", list[int]()
    stop = threading.Event()
    health.beat(beat)
    watcher = threading.Thread(target=health.watchdog, args=(stop, 60, beat, 0.01, exits.append))
    watcher.start()
    time.sleep(0.1)
    stop.set()
    watcher.join(timeout=5)
    assert exits == [] and not watcher.is_alive()
