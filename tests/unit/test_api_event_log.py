"""The embedded SQLite event log: Kafka-like offsets, retention, and readers in other processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from sinks.sqlite_event_log import Record, SqliteEventLog


def test_offsets_grow_from_zero_per_topic(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.db")
    assert log.append("a", b"k", b"v0") == 0
    assert log.append_many("a", [(None, b"v1"), (b"k", b"v2")]) == [1, 2]
    assert log.append("b", None, b"w0") == 0
    assert (log.earliest_offset("a"), log.latest_offset("a")) == (0, 3)
    assert log.topics() == ["a", "b"]


def test_read_returns_records_in_offset_order_from_the_start_offset(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.db")
    log.append_many("t", [(f"k{i}".encode(), f"v{i}".encode()) for i in range(10)])
    records = log.read("t", 4, limit=3)
    assert [r.offset for r in records] == [4, 5, 6]
    assert records[0] == Record(4, b"k4", b"v4", records[0].timestamp)
    assert abs(records[0].timestamp - time.time() * 1000) < 60_000
    assert log.read("t", 10, limit=5) == []
    assert log.read("missing", 0, limit=5) == []


def test_the_dataflow_writes_keyed_records_through_write(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.db")
    log.write("steps", [("08F9E0D1F7B4", b"e1"), ("08F9E0D1F7B4", b"e2")])
    assert [(r.key, r.value) for r in log.read("steps", 0, limit=5)] == [
        (b"08F9E0D1F7B4", b"e1"),
        (b"08F9E0D1F7B4", b"e2"),
    ]


def test_unknown_topic_is_empty_at_offset_zero(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.db")
    assert (log.earliest_offset("none"), log.latest_offset("none")) == (0, 0)


def test_retention_moves_the_earliest_offset_and_offsets_are_never_reused(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.db", retention_records=3)
    log.append_many("t", [(None, f"v{i}".encode()) for i in range(5)])
    assert (log.earliest_offset("t"), log.latest_offset("t")) == (2, 5)
    assert [r.offset for r in log.read("t", 0, limit=10)] == [2, 3, 4]
    assert log.append("t", None, b"v5") == 5
    assert log.earliest_offset("t") == 3


def test_offsets_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    first = SqliteEventLog(path, retention_records=1)
    first.append_many("t", [(None, b"a"), (None, b"b")])
    first.close()
    again = SqliteEventLog(path)
    assert again.append("t", None, b"c") == 2
    assert again.earliest_offset("t") == 1


def test_a_failed_batch_appends_nothing(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.db")
    with pytest.raises(sqlite3.Error):
        log.append_many("t", [(None, b"ok"), (None, object())])  # type: ignore[list-item]
    assert log.latest_offset("t") == 0
    assert log.append("t", None, b"ok") == 0


def _write(path: str, count: int) -> None:
    log = SqliteEventLog(path)
    for i in range(count):
        log.append("t", None, f"v{i}".encode())


def test_a_reader_sees_a_writer_process_append_in_order(tmp_path: Path) -> None:
    path = str(tmp_path / "log.db")
    reader = SqliteEventLog(path)
    writer = multiprocessing.get_context("spawn").Process(target=_write, args=(path, 200))
    writer.start()
    seen: list[int] = []
    deadline = time.monotonic() + 30
    while len(seen) < 200 and time.monotonic() < deadline:
        seen.extend(r.offset for r in reader.read("t", len(seen), limit=50))
    writer.join(timeout=30)
    assert seen == list(range(200))


def test_retention_must_keep_at_least_one_record(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="retention"):
        SqliteEventLog(tmp_path / "log.db", retention_records=0)
