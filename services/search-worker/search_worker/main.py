"""Consume loop. Messages are taken in batches; a batch's results are stored
in one statement, and only then are its offsets committed, so a crash
redelivers (at-least-once) and `search.answer` makes that harmless."""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from types import FrameType
from typing import Literal

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from pysvc_common import dev, logs
from pysvc_common.config import Settings
from pysvc_common.db import Connection, connect
from pysvc_common.kafka import ClientConfig, client_config, ensure_topic
from pysvc_common.messages import MessageError, SearchRequested

from search_worker import health
from search_worker.group import LAG_CHECK_SECONDS, Starvation, group_lag, lag_of
from search_worker.search import answer

log = logging.getLogger("search_worker")
BATCH_WAIT_SECONDS = 0.1


def consumer_config(bootstrap: str) -> ClientConfig:
    # KIP-848's consumer group protocol: the broker assigns partitions and a
    # rebalance moves only the partitions that change owner, without
    # stopping the group. Session and heartbeat timing are the broker's
    # (group.consumer.*, set in the stack), not the client's.
    return client_config(bootstrap) | {
        "group.id": "search-worker",
        "group.protocol": "consumer",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }


def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    # KIP-848 assignments are incremental: one line per change, with what the
    # worker holds afterwards, so operators (and bench-load) see who owns what.
    held = {p.partition for p in consumer.assignment()} | {p.partition for p in partitions}
    log.info("partitions assigned: %s (holding %s)", sorted(p.partition for p in partitions), sorted(held))


def on_revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    held = {p.partition for p in consumer.assignment()} - {p.partition for p in partitions}
    log.info("partitions revoked: %s (holding %s)", sorted(p.partition for p in partitions), sorted(held))


def decode(messages: list[Message], settings: Settings) -> list[uuid.UUID]:
    """The search ids of a batch; undecodable messages are logged and skipped."""
    ids: list[uuid.UUID] = []
    for msg in messages:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                ensure_topic(settings.kafka_bootstrap, settings.search_topic, settings.kafka_partitions)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", err)
            continue
        try:
            ids.append(SearchRequested.decode(msg.value()).search_id)
        except MessageError as bad:
            log.error("skipping undecodable message at offset %s: %s", msg.offset(), bad)
    return ids


class Answerer:
    """Stores a batch's answers, reconnecting and retrying through database
    outages until it succeeds or the worker is asked to stop."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        self._settings = settings
        self._stop = stop
        self._conn: Connection | None = None

    def answer(self, ids: list[uuid.UUID]) -> int | None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self._settings)
                return answer(self._conn, ids)
            except psycopg.OperationalError as err:
                log.warning("storing %d answers failed (%s); retrying", len(ids), str(err).strip())
                self.close()
                health.beat()  # waiting for the database is not being stuck
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)
        return None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


Outcome = Literal["stop", "rejoin", "reload"]


def watch(consumer: Consumer, settings: Settings, starvation: Starvation, checked_at: float, fed_at: float) -> float:
    """Updates `starvation` and the health report. A member that consumed a
    batch within the last LAG_CHECK_SECONDS (`fed_at`) is doing its share;
    otherwise the broker is asked, at most every LAG_CHECK_SECONDS, for the
    lag of what the member holds (or of the whole group, when it holds
    nothing). Returns when the lag was last asked for."""
    now = time.monotonic()
    held = consumer.assignment()
    if held and now - fed_at < LAG_CHECK_SECONDS:
        starvation.update(True, 0, now)
    elif now - checked_at >= LAG_CHECK_SECONDS:
        lag = lag_of(consumer, held) if held else group_lag(consumer, settings.search_topic)
        starvation.update(bool(held), lag, now)
        checked_at = now
    problem = starvation.problem(now)
    if problem != health.current():
        if problem is not None:
            log.warning("%s", problem)
        health.report(problem)
    return checked_at


def consume(consumer: Consumer, settings: Settings, stop: threading.Event, starvation: Starvation) -> Outcome:
    """Answers batches until asked to stop, not doing its share beyond the
    bound (the caller rejoins the group), or asked to reload in dev mode (between two
    batches: the last one is stored and committed; the consumer stays in its
    group)."""
    answerer = Answerer(settings, stop)
    checked_at = fed_at = time.monotonic()
    try:
        while not stop.is_set():
            if dev.reload_requested():
                return "reload"
            health.beat()
            checked_at = watch(consumer, settings, starvation, checked_at, fed_at)
            if starvation.should_rejoin(time.monotonic()):
                return "rejoin"
            messages = consumer.consume(settings.worker_batch_size, BATCH_WAIT_SECONDS)
            if not messages:
                continue
            if any(m.error() is None for m in messages):
                fed_at = time.monotonic()
            ids = decode(messages, settings)
            answered = answerer.answer(ids) if ids else 0
            if answered is None:
                break  # stopping before the batch was stored: it is redelivered
            log.info("batch of %d: %d answered, %d already answered", len(ids), answered, len(ids) - answered)
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as err:
                # A rebalance took the partitions: their next owner gets these
                # messages again and finds them answered.
                log.warning("offset commit failed (%s); the batch may be redelivered", err)
    finally:
        answerer.close()
    return "stop"


def run(settings: Settings, stop: threading.Event, starvation: Starvation) -> Outcome:
    """One member of the group, from joining until it stops or rejoins."""
    while not stop.is_set() and not ensure_topic(
        settings.kafka_bootstrap, settings.search_topic, settings.kafka_partitions
    ):
        health.beat()  # waiting for the broker is not being stuck
        stop.wait(1.0)
    consumer = Consumer(consumer_config(settings.kafka_bootstrap))
    consumer.subscribe([settings.search_topic], on_assign=on_assign, on_revoke=on_revoke)
    log.info("consuming %s in batches of up to %d", settings.search_topic, settings.worker_batch_size)
    loop = consume
    try:
        # In dev mode a reload swaps the loop (and all it calls) for the
        # edited code; the consumer, and its place in the group, stay.
        while (outcome := loop(consumer, settings, stop, starvation)) == "reload":
            loop = dev.reload("search_worker.main", "consume", loop)
        return outcome
    finally:
        consumer.close()


def main() -> None:
    logs.setup("search-worker")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received signal %d, finishing the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    settings = Settings.from_env()
    starvation = Starvation()
    health.report(None)
    health.beat()
    threading.Thread(target=health.watchdog, args=(stop,), name="watchdog", daemon=True).start()
    while not stop.is_set():
        try:
            if run(settings, stop, starvation) == "rejoin":
                log.info("rejoining the group as a new member")
        except (psycopg.OperationalError, KafkaException, OSError) as err:
            log.warning("backing service unavailable (%s); retrying in 2s", err)
            health.beat()
            stop.wait(2.0)
    log.info("search-worker stopped cleanly")


if __name__ == "__main__":
    main()
