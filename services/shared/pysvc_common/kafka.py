"""Kafka client settings shared by producer and consumer."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic  # type: ignore[attr-defined]

log = logging.getLogger(__name__)


ClientConfig = dict[str, str | int | float | bool]


def client_config(bootstrap: str) -> ClientConfig:
    return {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": 5000,
        "reconnect.backoff.max.ms": 2000,
        # Topics are created by `ensure_topic`, with the configured partition
        # count, never implicitly with the broker's default.
        "allow.auto.create.topics": False,
    }


def ensure_topic(bootstrap: str, topic: str, partitions: int = 1, timeout: float = 5.0) -> bool:
    """Create `topic` with `partitions` partitions if the broker does not
    have it, or add partitions up to that count. True when it exists."""
    admin = AdminClient(client_config(bootstrap))
    try:
        metadata = admin.list_topics(timeout=timeout)
        found = metadata.topics.get(topic)
        if found is not None and found.error is None:
            if len(found.partitions) < partitions:
                futures = admin.create_partitions([NewPartitions(topic, partitions)])
                futures[topic].result(timeout=timeout)
                log.info("topic %s: %d -> %d partitions", topic, len(found.partitions), partitions)
            return True
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        futures[topic].result(timeout=timeout)
        log.info("created topic %s with %d partitions", topic, partitions)
        return True
    except KafkaException as err:
        if "TOPIC_ALREADY_EXISTS" in str(err):
            return True
        log.warning("topic %s not ready: %s", topic, err)
        return False
