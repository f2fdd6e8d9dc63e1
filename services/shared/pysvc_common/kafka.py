"""Kafka client settings shared by producer and consumer."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

log = logging.getLogger(__name__)


ClientConfig = dict[str, str | int | float | bool]


def client_config(bootstrap: str) -> ClientConfig:
    return {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": 5000,
        "reconnect.backoff.max.ms": 2000,
    }


def ensure_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> bool:
    """Create `topic` if the broker does not have it. True when it exists."""
    admin = AdminClient(client_config(bootstrap))
    try:
        metadata = admin.list_topics(timeout=timeout)
        if topic in metadata.topics and metadata.topics[topic].error is None:
            return True
        futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        futures[topic].result(timeout=timeout)
        log.info("created topic %s", topic)
        return True
    except KafkaException as err:
        if "TOPIC_ALREADY_EXISTS" in str(err):
            return True
        log.warning("topic %s not ready: %s", topic, err)
        return False
