"""Writing records durably to Kafka with kafka-python: acks=all, flushed before returning."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

__all__ = ["KafkaWriter", "ensure_topics"]

logger = logging.getLogger(__name__)

_HEADERS = [("content-type", b"application/cloudevents+json")]


def ensure_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create the topics that do not exist yet, with the given partition counts."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="vitalflow-admin")
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, num_partitions=parts, replication_factor=1)
            for name, parts in topics.items()
            if name not in existing
        ]
        if new:
            # Another process may create them at the same moment: that is fine too.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()


class KafkaWriter:
    """A producer whose `write` returns only once every record is acknowledged by the broker."""

    def __init__(self, bootstrap: str, content_type_header: bool = True) -> None:
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            # The idempotent producer keeps per-partition order with up to 5 requests in
            # flight; large batches matter because kafka-python's cost is per request.
            enable_idempotence=True,
            max_in_flight_requests_per_connection=5,
            linger_ms=10,
            batch_size=256 * 1024,
            retries=5,
            client_id="vitalflow",
        )
        self._headers = _HEADERS if content_type_header else []

    def write(self, topic: str, records: list[tuple[str, bytes]]) -> None:
        """Send `(key, value)` records and block until all are durable, retrying failures."""
        pending = records
        delay = 0.5
        while pending:
            futures = [
                (
                    record,
                    self._producer.send(
                        topic, key=record[0].encode(), value=record[1], headers=self._headers
                    ),
                )
                for record in pending
            ]
            self._producer.flush()
            failed: list[tuple[str, bytes]] = []
            for record, future in futures:
                try:
                    future.get(timeout=0)
                except KafkaError as exc:
                    failed.append(record)
                    last: Any = exc
            if failed:
                # The flow must not move on (and ack the source) before these are durable.
                logger.warning("%d records to %s failed (%s); retrying", len(failed), topic, last)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
            pending = failed

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.close(timeout=10)
