"""Choosing where step events, dead letters and alerts go: Kafka, or the embedded SQLite log."""

from __future__ import annotations

from flows.settings import Settings
from sinks.kafka_writer import CLOUDEVENTS_JSON, PLAIN_JSON, KafkaWriter, ensure_topics
from sinks.record_sink import RecordWriter

__all__ = ["open_record_writer"]

SQLITE_PREFIX = "sqlite:///"


def open_record_writer(settings: Settings) -> RecordWriter:
    """Return a writer to the event log `settings` names, creating Kafka topics if needed."""
    if settings.event_log_url and settings.event_log_url.startswith(SQLITE_PREFIX):
        from sinks.sqlite_event_log import SqliteEventLog

        return SqliteEventLog(settings.event_log_url.removeprefix(SQLITE_PREFIX))
    ensure_topics(
        settings.kafka_bootstrap,
        {
            settings.steps_topic: settings.steps_partitions,
            settings.dlq_topic: 1,
            settings.alerts_topic: 1,
        },
    )
    # Step events and alerts are CloudEvents; dead letters are plain JSON records (see README).
    return KafkaWriter(
        settings.kafka_bootstrap,
        {
            settings.steps_topic: CLOUDEVENTS_JSON,
            settings.dlq_topic: PLAIN_JSON,
            settings.alerts_topic: CLOUDEVENTS_JSON,
        },
    )
