"""A Bytewax sink that writes keyed records to an event log and returns only once durable.

It is a `FixedPartitionedSink` on purpose: with recovery on, an epoch only completes once
every such sink has snapshotted it, i.e. after its `write_batch` calls returned, which is what
lets the MQTT source ack only what is durable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from typing_extensions import override

__all__ = ["RecordSink", "RecordWriter"]

Record = tuple[str, bytes]


class RecordWriter(Protocol):
    """Appends `(key, value)` records to a topic durably: Kafka, or the embedded log."""

    def write(self, topic: str, records: list[Record]) -> None:
        """Append the records; return only once they are durable."""

    def close(self) -> None:
        """Release connections."""


class _RecordPartition(StatefulSinkPartition[Record, None]):
    def __init__(self, writer: RecordWriter, topic: str) -> None:
        self._writer = writer
        self._topic = topic

    @override
    def write_batch(self, values: list[Record]) -> None:
        self._writer.write(self._topic, values)

    @override
    def snapshot(self) -> None:
        return None

    @override
    def close(self) -> None:
        self._writer.close()


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
        return [
            f"{self._topic}-{i}"
            for i in range(self._parts)
            if i % self._processes == self._process_id
        ]

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _RecordPartition:
        return _RecordPartition(self._open_writer(), self._topic)
