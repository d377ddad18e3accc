"""A Bytewax sink that writes keyed records to an event log and returns only once durable.

It is a `FixedPartitionedSink` on purpose: Bytewax calls a partition's `snapshot` when the
epoch closes, before the epoch counts as complete downstream (with recovery on, before its
snapshots are committed), and the MQTT source acks an epoch's messages only after that. So
`write_batch` only starts writing (`RecordWriter.send`) and `snapshot` waits until all of it is
durable (`RecordWriter.sync`): Kafka's round trips overlap the next batches of the epoch
instead of stalling the worker after every batch, and nothing is acked before it is durable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from typing_extensions import override

__all__ = ["RecordSink", "RecordWriter", "local_parts"]

Record = tuple[str, bytes]


class RecordWriter(Protocol):
    """Appends `(key, value)` records to a topic durably: Kafka, or the embedded log."""

    def write(self, topic: str, records: list[Record]) -> None:
        """Append the records; return only once they are durable."""

    def send(self, topic: str, records: list[Record]) -> None:
        """Start appending the records, in order after those sent before; `sync` ends it."""

    def sync(self) -> None:
        """Return only once every record sent so far is durable."""

    def close(self) -> None:
        """Release connections."""


class _RecordPartition(StatefulSinkPartition[Record, None]):
    def __init__(self, writer: RecordWriter, topic: str) -> None:
        self._writer = writer
        self._topic = topic

    @override
    def write_batch(self, values: list[Record]) -> None:
        self._writer.send(self._topic, values)

    @override
    def snapshot(self) -> None:
        # The epoch closes: what it wrote must be durable before the source acks it.
        self._writer.sync()

    @override
    def close(self) -> None:
        self._writer.close()


def local_parts(parts: int, process_id: int, processes: int) -> list[int]:
    """Return the writer partitions process `process_id` of `processes` offers (and builds)."""
    return [i for i in range(parts) if i % processes == process_id]


class RecordSink(FixedPartitionedSink[Record, None]):
    """Writes `(key, (key, value))` items to `topic` through writers from `open_writer`.

    With `parts` writers in a cluster of `processes`, process `process_id` offers the parts
    i with i mod processes == process_id, so every process writes a share (by key, so a
    device's records stay in order) instead of all records crossing to one process.
    """

    def __init__(
        self,
        topic: str,
        open_writer: Callable[[], RecordWriter],
        parts: int = 1,
        *,
        process_id: int = 0,
        processes: int = 1,
    ) -> None:
        self._topic = topic
        self._open_writer = open_writer
        self._parts = parts
        self._process_id = process_id
        self._processes = processes

    @override
    def list_parts(self) -> list[str]:
        mine = local_parts(self._parts, self._process_id, self._processes)
        return [f"{self._topic}-{i}" for i in mine]

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _RecordPartition:
        return _RecordPartition(self._open_writer(), self._topic)
