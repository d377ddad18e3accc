"""Where the API reads step events from: Kafka, or the embedded SQLite log of the demo.

`EventFeed` is the one seam between the streaming logic and the storage. Both feeds are
blocking; the hub calls the `tail` methods from one dedicated thread and every other method
from another, so each underlying client is only ever used by one thread at a time.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, TopicAlreadyExistsError

from api.position import Position
from sinks.sqlite_event_log import SqliteEventLog

if TYPE_CHECKING:
    from flows.settings import Settings

__all__ = [
    "EventFeed",
    "FeedError",
    "FeedRead",
    "FeedRecord",
    "KafkaFeed",
    "SqliteFeed",
    "open_feed",
]

logger = logging.getLogger(__name__)

_SQLITE_PREFIX = "sqlite:///"


class FeedError(Exception):
    """The feed's storage cannot be reached or answered unexpectedly."""


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """A raw record: where it is, when it was written (ms since the epoch) and its bytes."""

    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None


@dataclass(frozen=True, slots=True)
class FeedRead:
    """The result of a history read.

    Offsets in [start, next_offset) that are not among `records` hold no data (Kafka control
    records, or data retention removed).
    """

    records: list[FeedRecord]
    next_offset: int


class EventFeed(Protocol):
    """A partitioned, offset-addressed log of step events."""

    kind: str

    def describe(self) -> str:
        """Where the feed reads from, for /health (no credentials)."""
        ...

    def connect(self) -> int:
        """Reach the storage (creating the topic if missing) and return its partition count."""
        ...

    def offsets(self) -> tuple[Position, Position]:
        """Return the earliest held and the next-to-be-written offset of every partition."""
        ...

    def read(self, partition: int, start: int, limit: int) -> FeedRead:
        """Up to `limit` records of one partition from `start` on; some must exist there."""
        ...

    def seek_tail(self, position: Position) -> None:
        """Point the live tail at `position` (tail thread)."""
        ...

    def poll_tail(self, timeout: float, limit: int) -> list[FeedRecord]:
        """Return the next records of the live tail, waiting up to `timeout` s (tail thread)."""
        ...

    def close(self) -> None:
        """Release every connection."""
        ...


class KafkaFeed:
    """The steps topic in Kafka, read with kafka-python without a consumer group.

    Positions are the API's own (carried by clients in SSE ids), so nothing is committed to
    Kafka and any number of API processes can read the topic independently.
    """

    kind = "kafka"

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        request_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self._request_timeout_ms = int(request_timeout_s * 1000)
        self._read_timeout_s = read_timeout_s
        self._history: KafkaConsumer | None = None
        self._tail: KafkaConsumer | None = None
        self._tps: list[TopicPartition] = []

    def describe(self) -> str:
        """Bootstrap servers and topic."""
        return f"kafka {self.bootstrap} topic {self.topic}"

    def _consumer(self, role: str) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap.split(","),
            client_id=f"vitalflow-api-{role}",
            group_id=None,
            enable_auto_commit=False,
            # A history read can only land before the log start if retention removed what it
            # asked for; the caller compares offsets and reports the gap, so resetting is safe.
            auto_offset_reset="earliest",
            # The broker answers a fetch once 64 KiB are ready or 20 ms have passed: batching
            # events for up to 20 ms cuts the client's per-fetch CPU several times over (and the
            # fan-out's sends with it), which keeps latency lower under load than fetching
            # every event on its own. The short wait also keeps shutdown prompt.
            fetch_min_bytes=64 * 1024,
            fetch_max_wait_ms=20,
            request_timeout_ms=self._request_timeout_ms,
            max_poll_records=1000,
        )

    def connect(self) -> int:
        """Create the topic if missing, open both consumers, return the partition count."""
        self.close()
        try:
            self._ensure_topic()
            history = self._consumer("history")
            self._history = history
            deadline = time.monotonic() + self._request_timeout_ms / 1000
            found = history.partitions_for_topic(self.topic)
            while not found and time.monotonic() < deadline:
                time.sleep(0.1)
                history.topics()
                found = history.partitions_for_topic(self.topic)
            if not found:
                msg = f"topic {self.topic} has no partitions"
                raise FeedError(msg)
            count = max(found) + 1
            self._tps = [TopicPartition(self.topic, p) for p in range(count)]
            self._tail = self._consumer("tail")
            self._tail.assign(self._tps)
        except KafkaError as exc:
            self.close()
            msg = f"kafka unavailable: {type(exc).__name__}"
            raise FeedError(msg) from exc
        return count

    def _ensure_topic(self) -> None:
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap.split(","),
            client_id="vitalflow-api-admin",
            request_timeout_ms=self._request_timeout_ms,
        )
        try:
            if self.topic in set(admin.list_topics()):
                return
            try:
                admin.create_topics(
                    [NewTopic(self.topic, num_partitions=self.partitions, replication_factor=1)]
                )
                logger.info("created topic %s with %d partitions", self.topic, self.partitions)
            except TopicAlreadyExistsError:
                # Another process (the dataflow, another API) created it first: fine.
                pass
        finally:
            admin.close()

    def offsets(self) -> tuple[Position, Position]:
        """Log start and log end offsets of every partition."""
        history = self._require(self._history)
        try:
            earliest = history.beginning_offsets(self._tps, timeout_ms=self._request_timeout_ms)
            end = history.end_offsets(self._tps, timeout_ms=self._request_timeout_ms)
        except KafkaError as exc:
            msg = f"kafka offsets unavailable: {type(exc).__name__}"
            raise FeedError(msg) from exc
        return (
            Position(tuple(earliest[tp] for tp in self._tps)),
            Position(tuple(end[tp] for tp in self._tps)),
        )

    def read(self, partition: int, start: int, limit: int) -> FeedRead:
        """Seek the history consumer and poll until records arrive or the read times out."""
        history = self._require(self._history)
        tp = self._tps[partition]
        try:
            if history.assignment() != {tp}:
                history.assign([tp])
            history.seek(tp, start)
            deadline = time.monotonic() + self._read_timeout_s
            while time.monotonic() < deadline:
                batch = history.poll(timeout_ms=200, max_records=limit).get(tp, [])
                records = [self._record(r) for r in batch if r.offset >= start]
                next_offset = history.position(tp)
                if records or next_offset > start:
                    return FeedRead(records, max(next_offset, start))
        except KafkaError as exc:
            msg = f"kafka read failed: {type(exc).__name__}"
            raise FeedError(msg) from exc
        msg = f"kafka read of partition {partition} made no progress"
        raise FeedError(msg)

    def seek_tail(self, position: Position) -> None:
        """Seek every partition of the tail consumer."""
        tail = self._require(self._tail)
        for tp in self._tps:
            tail.seek(tp, position[tp.partition])

    def poll_tail(self, timeout: float, limit: int) -> list[FeedRecord]:
        """Poll the tail consumer once."""
        tail = self._require(self._tail)
        try:
            polled = tail.poll(timeout_ms=int(timeout * 1000), max_records=limit)
        except KafkaError as exc:
            msg = f"kafka poll failed: {type(exc).__name__}"
            raise FeedError(msg) from exc
        return [self._record(r) for batch in polled.values() for r in batch]

    def close(self) -> None:
        """Close both consumers."""
        for consumer in (self._tail, self._history):
            if consumer is not None:
                try:
                    consumer.close(autocommit=False)
                except Exception:  # closing a broken client must not mask why it broke
                    logger.debug("closing a kafka consumer failed", exc_info=True)
        self._tail = self._history = None

    @staticmethod
    def _record(record: ConsumerRecord) -> FeedRecord:
        timestamp = record.timestamp if record.timestamp and record.timestamp > 0 else None
        return FeedRecord(
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=timestamp if timestamp is not None else time.time_ns() // 1_000_000,
            value=record.value,
        )

    @staticmethod
    def _require(consumer: KafkaConsumer | None) -> KafkaConsumer:
        if consumer is None:
            msg = "the kafka feed is not connected"
            raise FeedError(msg)
        return consumer


class SqliteFeed:
    """The embedded event log of the demo (`sinks.sqlite_event_log`), one partition."""

    kind = "sqlite"

    def __init__(self, path: str, topic: str, poll_interval_s: float = 0.02) -> None:
        self.path = path
        self.topic = topic
        self._poll_interval_s = poll_interval_s
        self._log: SqliteEventLog | None = None
        self._tail_next = 0

    def describe(self) -> str:
        """Name the log file and topic."""
        return f"sqlite {self.path} topic {self.topic}"

    def connect(self) -> int:
        """Open the log file (created if missing); it has one partition."""
        self.close()
        try:
            self._log = SqliteEventLog(self.path)
        except sqlite3.Error as exc:
            msg = f"event log unavailable: {type(exc).__name__}"
            raise FeedError(msg) from exc
        return 1

    def offsets(self) -> tuple[Position, Position]:
        """Earliest held and next-to-be-written offsets."""
        log = self._require()
        try:
            return (
                Position((log.earliest_offset(self.topic),)),
                Position((log.latest_offset(self.topic),)),
            )
        except sqlite3.Error as exc:
            msg = f"event log unreadable: {type(exc).__name__}"
            raise FeedError(msg) from exc

    def read(self, partition: int, start: int, limit: int) -> FeedRead:
        """Read from `start` on; past what retention removed, from the earliest held."""
        records = self._fetch(start, limit)
        if records:
            return FeedRead(records, records[-1].offset + 1)
        log = self._require()
        return FeedRead([], max(start, log.latest_offset(self.topic)))

    def seek_tail(self, position: Position) -> None:
        """Remember where the tail reads next."""
        self._tail_next = position[0]

    def poll_tail(self, timeout: float, limit: int) -> list[FeedRecord]:
        """Query for new records every few milliseconds until some arrive or time is up."""
        deadline = time.monotonic() + timeout
        while True:
            records = self._fetch(self._tail_next, limit)
            if records:
                self._tail_next = records[-1].offset + 1
                return records
            if time.monotonic() >= deadline:
                return []
            time.sleep(self._poll_interval_s)

    def close(self) -> None:
        """Close the log file."""
        if self._log is not None:
            self._log.close()
            self._log = None

    def _fetch(self, start: int, limit: int) -> list[FeedRecord]:
        log = self._require()
        try:
            rows = log.read(self.topic, start, limit)
        except sqlite3.Error as exc:
            msg = f"event log unreadable: {type(exc).__name__}"
            raise FeedError(msg) from exc
        return [FeedRecord(0, row.offset, row.timestamp, row.value) for row in rows]

    def _require(self) -> SqliteEventLog:
        if self._log is None:
            msg = "the event log is not open"
            raise FeedError(msg)
        return self._log


def open_feed(settings: Settings) -> EventFeed:
    """Return the feed configured: the SQLite log for `sqlite:///` URLs, else Kafka."""
    url = settings.event_log_url
    if url:
        if not url.startswith(_SQLITE_PREFIX):
            msg = f"event_log_url must start with {_SQLITE_PREFIX!r}"
            raise ValueError(msg)
        return SqliteFeed(url.removeprefix(_SQLITE_PREFIX), settings.steps_topic)
    return KafkaFeed(settings.kafka_bootstrap, settings.steps_topic, settings.steps_partitions)
