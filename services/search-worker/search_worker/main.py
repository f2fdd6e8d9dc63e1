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
from search_worker.search import answer

log = logging.getLogger("search_worker")
BATCH_WAIT_SECONDS = 0.1
# How long the group coordinator waits for members to rejoin a rebalance
# (the consumer's max.poll.interval.ms). librdkafka's default, 5 minutes, let
# a group whose workers restarted sit without assignments for minutes on
# the broker here (tansu). A batch that retries through a database outage
# longer than this loses its partitions and is redelivered, which the
# answers tolerate.
REBALANCE_TIMEOUT_SECONDS = 20
# A consumer left without partitions this long rejoins as a new member: the
# broker here can leave a group unassigned after it restarts. It must be well
# beyond a rebalance's own wait, or members that rejoin while the coordinator
# still waits for them start that wait over again, forever.
REJOIN_AFTER_SECONDS = 2.0 * REBALANCE_TIMEOUT_SECONDS + 5.0


def consumer_config(bootstrap: str) -> ClientConfig:
    return client_config(bootstrap) | {
        "group.id": "search-worker",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "topic.metadata.refresh.interval.ms": 2000,
        # The coordinator holds JoinGroup/SyncGroup answers until every
        # member has rejoined or a gone member's session (6 s) expired: a
        # shorter socket timeout aborts that wait and starts it over, again
        # and again.
        "socket.timeout.ms": 10000,
        "max.poll.interval.ms": REBALANCE_TIMEOUT_SECONDS * 1000,
    }


def on_assign(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
    # One line per rebalance, so operators (and bench-load) see who owns what.
    log.info("partitions assigned: %s", sorted(p.partition for p in partitions))


def on_revoke(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
    log.info("partitions revoked: %s", sorted(p.partition for p in partitions))


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


def consume(consumer: Consumer, settings: Settings, stop: threading.Event) -> Outcome:
    """Answers batches until asked to stop, left without partitions (the
    caller rejoins the group), or asked to reload in dev mode (between two
    batches: the last one is stored and committed; the consumer stays in its
    group)."""
    answerer = Answerer(settings, stop)
    assigned_at = time.monotonic()
    try:
        while not stop.is_set():
            if dev.reload_requested():
                return "reload"
            health.beat()
            if consumer.assignment():
                assigned_at = time.monotonic()
            elif time.monotonic() - assigned_at > REJOIN_AFTER_SECONDS:
                log.warning("no partitions assigned for %.0fs; rejoining the group", REJOIN_AFTER_SECONDS)
                return "rejoin"
            messages = consumer.consume(settings.worker_batch_size, BATCH_WAIT_SECONDS)
            if not messages:
                continue
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


def run(settings: Settings, stop: threading.Event) -> None:
    while not stop.is_set() and not ensure_topic(
        settings.kafka_bootstrap, settings.search_topic, settings.kafka_partitions
    ):
        stop.wait(1.0)
    consumer = Consumer(consumer_config(settings.kafka_bootstrap))
    consumer.subscribe([settings.search_topic], on_assign=on_assign, on_revoke=on_revoke)
    log.info("consuming %s in batches of up to %d", settings.search_topic, settings.worker_batch_size)
    loop = consume
    try:
        # In dev mode a reload swaps the loop (and all it calls) for the
        # edited code; the consumer, and its place in the group, stay.
        while loop(consumer, settings, stop) == "reload":
            loop = dev.reload("search_worker.main", "consume", loop)
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
    while not stop.is_set():
        try:
            run(settings, stop)
        except (psycopg.OperationalError, KafkaException, OSError) as err:
            log.warning("backing service unavailable (%s); retrying in 2s", err)
            stop.wait(2.0)
    log.info("search-worker stopped cleanly")


if __name__ == "__main__":
    main()
