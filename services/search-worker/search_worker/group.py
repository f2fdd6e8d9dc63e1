"""Is this worker doing its share? Two ways not to, both measured against the
broker's own offsets:

- starving: it holds no partition while its group has unconsumed messages;
- stalled: it holds partitions that have unconsumed messages, and its
  consumer has handed it none of them (a fetch that never resumed after a
  broker restart; KIP-848 clients have had such bugs).

After `STARVED_AFTER_SECONDS` either way the worker reports it (its health
probe fails, naming the lag) and rejoins the group as a new member with a new
consumer; the report clears once it consumes again or nothing is left.

The bound is above the broker's consumer-group session timeout (6 s in the
stack, `group.consumer.session.timeout.ms`), the time a member that vanished
without leaving (killed, or restarted while the broker was down) keeps its
partitions, plus a rebalance and a broker restart's own seconds. A worker
beyond the topic's partition count holds none by design: keep `replicas`
(and `--scale`) at or below `kafka.partitions`."""

from __future__ import annotations

import logging
import os

from confluent_kafka import Consumer, KafkaException, TopicPartition

log = logging.getLogger("search_worker")

STARVED_AFTER_SECONDS = float(os.environ.get("WORKER_STARVED_AFTER", "15"))
# How often an unassigned member asks the broker for its group's lag.
LAG_CHECK_SECONDS = 2.0


def group_lag(consumer: Consumer, topic: str, timeout: float = 2.0) -> int | None:
    """Messages of `topic` past the group's committed offsets (from the log
    start where nothing is committed); None when the broker cannot say."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return None
        return lag_of(consumer, [TopicPartition(topic, p) for p in sorted(found.partitions)], timeout)
    except KafkaException as err:
        log.debug("group lag unknown: %s", err)
        return None


def lag_of(consumer: Consumer, partitions: list[TopicPartition], timeout: float = 2.0) -> int | None:
    """Messages of `partitions` past the group's committed offsets; None when
    the broker cannot say."""
    try:
        lag = 0
        for tp in consumer.committed(partitions, timeout=timeout):
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            lag += max(0, high - (tp.offset if tp.offset >= 0 else low))
        return lag
    except KafkaException as err:
        log.debug("lag unknown: %s", err)
        return None


class Starvation:
    """How long this member has not done its share (starving or stalled, see
    above) while messages waited for it, and what to do about it."""

    def __init__(self, bound: float = STARVED_AFTER_SECONDS) -> None:
        self.bound = bound
        self.since: float | None = None
        self.rejoined_at: float | None = None
        self.lag = 0
        self.assigned = False

    def update(self, assigned: bool, lag: int | None, now: float) -> None:
        """`lag`: unconsumed messages of the group (unassigned) or of the
        partitions held (assigned, and nothing consumed since the last look);
        0 clears the report; None (the broker did not answer) changes nothing.
        Getting a partition starts the clock again."""
        if assigned != self.assigned:
            self.since = self.rejoined_at = None
            self.assigned = assigned
        if lag == 0:
            self.since = self.rejoined_at = None
            self.lag = 0
        elif lag is not None:
            self.lag = lag
            if self.since is None:
                self.since = now

    def problem(self, now: float) -> str | None:
        if self.since is None or now - self.since <= self.bound:
            return None
        waited = f"for {now - self.since:.0f}s while"
        if self.assigned:
            what = f"consumed nothing {waited} its partitions have {self.lag} unconsumed messages"
        else:
            what = f"no partition assigned {waited} the group has {self.lag} unconsumed messages"
        return f"{what} (bound {self.bound:.0f}s); rejoining the group"

    def should_rejoin(self, now: float) -> bool:
        """Not doing its share beyond the bound, and not rejoined within the
        last bound."""
        if self.problem(now) is None:
            return False
        if self.rejoined_at is not None and now - self.rejoined_at <= self.bound:
            return False
        self.rejoined_at = now
        return True
