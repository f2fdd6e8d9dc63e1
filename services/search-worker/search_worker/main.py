"""Consume loop. Offsets are committed only after the results are stored, so
a crash redelivers (at-least-once) and `search.answer` makes that harmless."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException
from pysvc_common import logs
from pysvc_common.config import Settings
from pysvc_common.db import Connection, connect
from pysvc_common.kafka import ClientConfig, client_config, ensure_topic
from pysvc_common.messages import MessageError, SearchRequested

from search_worker import health
from search_worker.search import answer

log = logging.getLogger("search_worker")
DB_CHECK_SECONDS = 5.0


def consumer_config(bootstrap: str) -> ClientConfig:
    return client_config(bootstrap) | {
        "group.id": "search-worker",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "topic.metadata.refresh.interval.ms": 2000,
    }


def run(settings: Settings, stop: threading.Event) -> None:
    while not stop.is_set() and not ensure_topic(settings.kafka_bootstrap, settings.search_topic):
        stop.wait(1.0)
    consumer = Consumer(consumer_config(settings.kafka_bootstrap))
    consumer.subscribe([settings.search_topic])
    conn: Connection | None = None
    last_db_check = 0.0
    log.info("consuming %s", settings.search_topic)
    try:
        while not stop.is_set():
            if conn is None or conn.closed:
                conn = connect(settings)
            if time.monotonic() - last_db_check > DB_CHECK_SECONDS:
                conn.execute("SELECT 1")
                last_db_check = time.monotonic()
            health.beat()
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    ensure_topic(settings.kafka_bootstrap, settings.search_topic)
                elif err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", err)
                continue
            try:
                request = SearchRequested.decode(msg.value())
            except MessageError as bad:
                log.error("skipping undecodable message at offset %s: %s", msg.offset(), bad)
            else:
                stored = answer(conn, request.search_id, request.query)
                log.info("search %s %s", request.search_id, "answered" if stored else "already answered")
            consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()
        if conn is not None:
            conn.close()


def main() -> None:
    logs.setup("search-worker")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received signal %d, finishing the current message", signum)
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
