"""Publishing search requests to Kafka, off the request path.

`publish` only hands the message to the producer's queue; the broker's
delivery reports are served by `confirm`, which the API's background thread
calls and which returns the searches the broker acknowledged (the relay
marks them `queued`). A search is durable in PostgreSQL before it is
published, so a message the broker never acknowledges is simply published
again later (the relay republishes every search not acknowledged in time)."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from pysvc_common.kafka import client_config, ensure_topic
from pysvc_common.messages import SearchRequested

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The producer could not take the message (its queue is full)."""


class Publisher(Protocol):
    def publish(self, message: SearchRequested) -> None: ...
    def confirm(self, timeout: float) -> list[uuid.UUID]: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


class KafkaPublisher:
    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._partitions = partitions
        config = client_config(bootstrap) | {
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 2,
            "message.timeout.ms": 8000,
        }
        self._producer = Producer(config)
        self._lock = threading.Lock()
        self._failed: list[KafkaError] = []
        self._delivered: list[uuid.UUID] = []

    def ping(self) -> None:
        metadata = self._producer.list_topics(timeout=2.0)
        if not metadata.brokers:
            raise PublishError(f"no broker answers at {self._bootstrap}")

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is not None:
                self._failed.append(err)
                return
            key = msg.key()
            if isinstance(key, bytes):
                self._delivered.append(uuid.UUID(key.decode()))

    def publish(self, message: SearchRequested) -> None:
        try:
            self._producer.produce(
                self._topic,
                key=str(message.search_id).encode(),
                value=message.encode(),
                on_delivery=self._on_delivery,
            )
        except (BufferError, KafkaException) as err:
            raise PublishError(f"publish of {message.search_id} deferred: {err}") from err

    def confirm(self, timeout: float) -> list[uuid.UUID]:
        """Serves delivery reports for up to `timeout` seconds; returns the
        searches the broker acknowledged (`acks=all`: in its log) since the
        last call. Failed deliveries are logged (and the topic created again
        when the broker lost it); the relay publishes those again."""
        self._producer.poll(timeout)
        with self._lock:
            failed, self._failed = self._failed, []
            delivered, self._delivered = self._delivered, []
        if failed:
            log.warning("%d deliveries failed (%s); they will be published again", len(failed), failed[0])
            if any(e.code() == KafkaError.UNKNOWN_TOPIC_OR_PART for e in failed):
                ensure_topic(self._bootstrap, self._topic, self._partitions)
        return delivered

    def close(self) -> None:
        self._producer.flush(5.0)
