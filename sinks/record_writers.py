"""Choosing where step events, dead letters and alerts go: Kafka, or the embedded SQLite log."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from sinks.kafka_writer import KafkaWriter, ensure_topics
from sinks.record_sink import RecordWriter

__all__ = ["SQLITE_PREFIX", "TopicSpec", "open_record_writer", "open_writers_ahead"]

logger = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"


@dataclass(frozen=True)
class TopicSpec:
    """A topic the writer writes to: its partitions (when created) and its records' format."""

    partitions: int
    content_type: bytes


def open_record_writer(
    event_log_url: str | None,
    kafka_bootstrap: str,
    topics: Mapping[str, TopicSpec],
    compression: str = "none",
) -> RecordWriter:
    """Return a writer to the SQLite log `event_log_url` names, else to Kafka.

    Kafka topics missing from the cluster are created first, with their partitions; the
    writer's record batches are compressed with `compression` ("none", "gzip" or "lz4").
    """
    if event_log_url and event_log_url.startswith(SQLITE_PREFIX):
        from sinks.sqlite_event_log import SqliteEventLog

        return SqliteEventLog(event_log_url.removeprefix(SQLITE_PREFIX))
    key = _pool_key(kafka_bootstrap, topics, compression)
    ahead = _ahead.take(key) if _ahead else None
    if ahead is not None:
        return ahead
    _create_topics(kafka_bootstrap, topics)
    return _kafka_writer(kafka_bootstrap, topics, compression)


def open_writers_ahead(
    kafka_bootstrap: str, topics: Mapping[str, TopicSpec], count: int, compression: str = "none"
) -> threading.Thread:
    """Create the topics and open `count` Kafka writers now, on a thread of their own.

    Why: Bytewax builds a sink's partition when its first record comes, and a new producer's
    first batch waits ~100 ms for the topic's metadata (traced: the first step event, the
    first dead letter and the first alert each held the worker that long, the latency tail of
    a run's first second). `open_record_writer` hands these out first, already connected and
    with every topic's partitions asked for; it waits for one still opening rather than open
    another. Opening also says at once when Kafka is away, even while the flow is idle.
    """
    global _ahead
    pool = _ahead = _WritersAhead(_pool_key(kafka_bootstrap, topics, compression), count)

    def open_all() -> None:
        try:
            _create_topics(kafka_bootstrap, topics)
        except Exception:  # the writers are still worth opening: they wait for Kafka themselves
            logger.exception("creating the Kafka topics %s failed", ", ".join(topics))
        for _ in range(count):
            writer: RecordWriter | None = None
            try:
                writer = _kafka_writer(kafka_bootstrap, topics, compression)
            except Exception:
                logger.exception("opening a Kafka writer ahead failed; one opens when needed")
            pool.put(writer)

    thread = threading.Thread(target=open_all, name="vitalflow-kafka-ahead", daemon=True)
    thread.start()
    return thread


def _pool_key(kafka_bootstrap: str, topics: Mapping[str, TopicSpec], compression: str) -> object:
    # A writer opened ahead is handed out only for the very configuration it was opened with.
    return (kafka_bootstrap, tuple(topics.items()), compression)


def _create_topics(kafka_bootstrap: str, topics: Mapping[str, TopicSpec]) -> None:
    ensure_topics(kafka_bootstrap, {name: spec.partitions for name, spec in topics.items()})


def _kafka_writer(
    kafka_bootstrap: str, topics: Mapping[str, TopicSpec], compression: str
) -> KafkaWriter:
    content_types = {name: spec.content_type for name, spec in topics.items()}
    return KafkaWriter(kafka_bootstrap, content_types, compression)


class _WritersAhead:
    """Writers opened ahead, for the sinks' partitions of this process to take."""

    def __init__(self, key: object, count: int) -> None:
        self._lock = threading.Lock()
        self._key = key
        self._unclaimed = count
        self._opened: queue.SimpleQueue[RecordWriter | None] = queue.SimpleQueue()

    def put(self, writer: RecordWriter | None) -> None:
        self._opened.put(writer)

    def take(self, key: object) -> RecordWriter | None:
        with self._lock:
            if key != self._key or self._unclaimed <= 0:
                return None
            self._unclaimed -= 1
        return self._opened.get()  # opened, or still opening: it is on its way


# The writers the last `open_writers_ahead` of this process opens (one `vitalflow run`).
_ahead: _WritersAhead | None = None
