"""Publishing search requests to Kafka."""

from __future__ import annotations

import logging
from typing import Protocol

from confluent_kafka import KafkaError, Message, Producer
from pysvc_common.kafka import client_config, ensure_topic
from pysvc_common.messages import SearchRequested

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The broker did not acknowledge the message in time."""


class Publisher(Protocol):
    def publish(self, message: SearchRequested) -> None: ...
    def ping(self) -> None: ...


class KafkaPublisher:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        config = client_config(bootstrap) | {
            "acks": "all",
            "enable.idempotence": False,
            "message.timeout.ms": 3000,
        }
        self._producer = Producer(config)

    def ping(self) -> None:
        metadata = self._producer.list_topics(timeout=2.0)
        if not metadata.brokers:
            raise PublishError(f"no broker answers at {self._bootstrap}")

    def publish(self, message: SearchRequested) -> None:
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err)

        self._producer.produce(
            self._topic,
            key=str(message.search_id).encode(),
            value=message.encode(),
            on_delivery=on_delivery,
        )
        remaining = self._producer.flush(4.0)
        if remaining or failures:
            reason = failures[0] if failures else "timed out"
            if failures and failures[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                ensure_topic(self._bootstrap, self._topic)
            raise PublishError(f"publish of {message.search_id} failed: {reason}")
