"""An embedded, append-only event log in SQLite with the semantics the API expects of Kafka.

`vitalflow demo` runs without servers, so the step events it produces go here instead of to
Kafka, and the API reads them through the same seam (`api.feed.SqliteFeed`). The log keeps
what the API relies on: named topics with one partition (0), offsets that only ever grow and
are never reused (not even after retention deletes records), an earliest offset that moves
forward when old records are dropped, and a latest offset that is the next one to be written
(Kafka's "log end offset"), and committed offsets per consumer group (what `vitalflow dlq
replay` resumes from). One writer process and several reader processes may share the file:
it runs in WAL mode, so readers never block the writer and always see whole batches.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

__all__ = ["Record", "SqliteEventLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (topic, "offset")
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic)
) WITHOUT ROWID;
"""


class Record(NamedTuple):
    """One record of a topic; `timestamp` is milliseconds since the epoch, as in Kafka."""

    offset: int
    key: bytes | None
    value: bytes
    timestamp: int


@dataclass
class SqliteEventLog:
    """An append-only log of topics in one SQLite file.

    `retention_records`, when set, keeps only that many of the newest records per topic, so
    the earliest offset moves forward the way Kafka's does when retention deletes segments.
    The object is safe to share between threads; every call takes the connection's lock.
    """

    path: str | Path
    retention_records: int | None = None
    busy_timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        if self.retention_records is not None and self.retention_records < 1:
            msg = f"retention_records must be at least 1, not {self.retention_records}"
            raise ValueError(msg)
        if str(self.path) != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly, so a writer takes the lock with
        # BEGIN IMMEDIATE and never fails half-way through a batch on a busy database.
        self._conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a batch is on disk when its append returns, which is what lets the dataflow
            # acknowledge the MQTT messages behind it (one fsync per batch, not per record).
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.executescript(_SCHEMA)

    def append(self, topic: str, key: bytes | None, value: bytes) -> int:
        """Append one record and return its offset."""
        return self.append_many(topic, [(key, value)])[0]

    def append_many(self, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> list[int]:
        """Append records in one transaction (all or none) and return their offsets."""
        batch = list(items)
        if not batch:
            return []
        now_ms = time.time_ns() // 1_000_000
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT next_offset FROM topics WHERE name = ?", (topic,)
                ).fetchone()
                first = row[0] if row else 0
                offsets = list(range(first, first + len(batch)))
                conn.executemany(
                    'INSERT INTO records (topic, "offset", key, value, timestamp) '
                    "VALUES (?, ?, ?, ?, ?)",
                    [
                        (topic, offset, key, value, now_ms)
                        for offset, (key, value) in zip(offsets, batch, strict=True)
                    ],
                )
                next_offset = first + len(batch)
                conn.execute(
                    "INSERT INTO topics (name, next_offset) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET next_offset = excluded.next_offset",
                    (topic, next_offset),
                )
                if self.retention_records is not None:
                    conn.execute(
                        'DELETE FROM records WHERE topic = ? AND "offset" < ?',
                        (topic, next_offset - self.retention_records),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return offsets

    def write(self, topic: str, records: list[tuple[str, bytes]]) -> None:
        """Append `(key, value)` records durably: the dataflow's `RecordWriter` interface."""
        self.append_many(topic, [(key.encode(), value) for key, value in records])

    def send(self, topic: str, records: list[tuple[str, bytes]]) -> None:
        """Append durably at once: a local commit is cheap, nothing is left for `sync`."""
        self.write(topic, records)

    def sync(self) -> None:
        """Nothing to wait for: `send` committed already."""

    def read(self, topic: str, start_offset: int, limit: int) -> list[Record]:
        """Return up to `limit` records with offsets from `start_offset` on, in offset order.

        A start before the earliest offset returns what is still there, from the earliest
        on: compare with `earliest_offset` to notice what retention removed.
        """
        if limit <= 0:
            return []
        with self._lock:
            rows = self._conn.execute(
                'SELECT "offset", key, value, timestamp FROM records '
                'WHERE topic = ? AND "offset" >= ? ORDER BY "offset" LIMIT ?',
                (topic, start_offset, limit),
            ).fetchall()
        return [Record(offset, key, value, timestamp) for offset, key, value, timestamp in rows]

    def earliest_offset(self, topic: str) -> int:
        """Return the offset of the oldest record held (the latest offset when none is)."""
        with self._lock:
            row = self._conn.execute(
                'SELECT MIN("offset") FROM records WHERE topic = ?', (topic,)
            ).fetchone()
            if row[0] is not None:
                return int(row[0])
            return self._next_offset(topic)

    def latest_offset(self, topic: str) -> int:
        """Return the offset the next appended record will get (Kafka's log end offset)."""
        with self._lock:
            return self._next_offset(topic)

    def topics(self) -> list[str]:
        """List the topics that have ever had a record."""
        with self._lock:
            rows = self._conn.execute("SELECT name FROM topics ORDER BY name").fetchall()
        return [name for (name,) in rows]

    def committed(self, group_id: str, topic: str) -> int | None:
        """Return the offset `group_id` will read `topic` from next, None if it never committed."""
        with self._lock:
            row = self._conn.execute(
                "SELECT next_offset FROM group_offsets WHERE group_id = ? AND topic = ?",
                (group_id, topic),
            ).fetchone()
        return int(row[0]) if row else None

    def commit(self, group_id: str, topic: str, next_offset: int) -> None:
        """Record that `group_id` is through `topic` up to `next_offset`, as Kafka's groups do."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO group_offsets (group_id, topic, next_offset) VALUES (?, ?, ?) "
                "ON CONFLICT(group_id, topic) DO UPDATE SET next_offset = excluded.next_offset",
                (group_id, topic, next_offset),
            )

    def close(self) -> None:
        """Close the connection; the object is unusable afterwards."""
        with self._lock:
            self._conn.close()

    def _next_offset(self, topic: str) -> int:
        row = self._conn.execute(
            "SELECT next_offset FROM topics WHERE name = ?", (topic,)
        ).fetchone()
        return int(row[0]) if row else 0
