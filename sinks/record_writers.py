"""Choosing where step events, dead letters and alerts go: Kafka, or the embedded SQLite log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sinks.kafka_writer import KafkaWriter, ensure_topics
from sinks.record_sink import RecordWriter

__all__ = ["SQLITE_PREFIX", "TopicSpec", "open_record_writer"]

SQLITE_PREFIX = "sqlite:///"


@dataclass(frozen=True)
class TopicSpec:
    """A topic the writer writes to: its partitions (when created) and its records' format."""

    partitions: int
    content_type: bytes


def open_record_writer(
    event_log_url: str | None, kafka_bootstrap: str, topics: Mapping[str, TopicSpec]
) -> RecordWriter:
    """Return a writer to the SQLite log `event_log_url` names, else to Kafka.

    Kafka topics missing from the cluster are created first, with their partitions.
    """
    if event_log_url and event_log_url.startswith(SQLITE_PREFIX):
        from sinks.sqlite_event_log import SqliteEventLog

        return SqliteEventLog(event_log_url.removeprefix(SQLITE_PREFIX))
    ensure_topics(kafka_bootstrap, {name: spec.partitions for name, spec in topics.items()})
    return KafkaWriter(kafka_bootstrap, {name: spec.content_type for name, spec in topics.items()})
