"""Handing kafka-python's producer whole record batches instead of one record at a time.

Why: `KafkaProducer.send` costs ~26 us of CPU per record (checks, serializers, the
partitioner, a size estimate, a lock and a future per record, then the sender thread), and
the flow sends up to five step events per message: in the pipeline benchmark that was about
a third of the flow's CPU. Building the partition's record batch directly
(`MemoryRecordsBuilder`, what `send` ends in) and queueing it in the producer's accumulator
costs ~6 us per record, sender thread included (`tests/bench/bench_kafka_send.py`: 5,000
records of 1 KB, 26.1 vs 5.9 us/record).

Everything after the queue is the producer's own: its sender thread drains the batches,
assigns the idempotent producer's sequence numbers, retries, expires and completes them, and
`flush()` waits for them. What this module relies on are kafka-python internals
(`_accumulator`, `_sender`, `_metadata`, `ProducerBatch`), checked by `BatchAppender.usable`
when a writer starts: a kafka-python that does not have them gets the public `send` instead
(`tests/integration/test_kafka_writer.py` asserts the pinned version takes this path).

The partition of a key is the producer's default one (murmur2, as Java clients), so a record
retried through `send` lands where its batch would have.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import kafka
from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.partitioner.default import murmur2
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.memory_records import MemoryRecordsBuilder

__all__ = ["BatchAppender", "QueuedBatch"]

Record = tuple[str, bytes]
# kafka-python versions whose internals this was written against and tested with.
_KNOWN_VERSIONS = ("3.0.",)
# Records with a larger value go through `send`, which checks them against the request size
# limit; a step event is at most 64 KiB (flows.step_events.MAX_EVENT_BYTES).
MAX_VALUE_BYTES = 128 * 1024
_MESSAGE_FORMAT = 2


@dataclass
class QueuedBatch:
    """A batch handed to the producer, with the records it holds (to write again on failure)."""

    batch: ProducerBatch
    topic: str
    records: list[Record]

    @property
    def acknowledged(self) -> bool:
        """Whether the broker acknowledged the batch (False while it is under way)."""
        future = self.batch.produce_future
        return bool(future.is_done and future.exception is None)


class BatchAppender:
    """Queues records in a KafkaProducer's accumulator a whole batch per partition at a time."""

    def __init__(self, producer: KafkaProducer, max_block_ms: int) -> None:
        self._producer = producer
        self._accumulator = producer._accumulator
        self._max_block_ms = max_block_ms
        self._partitions: dict[str, int] = {}
        # key -> partition, per topic; device ids repeat, murmur2 in Python does not come free.
        self._partition_of: dict[str, dict[str, int]] = {}

    @staticmethod
    def usable(producer: KafkaProducer) -> bool:
        """Return whether this kafka-python has the internals the appender relies on."""
        accumulator = getattr(producer, "_accumulator", None)
        return (
            kafka.__version__.startswith(_KNOWN_VERSIONS)
            and accumulator is not None
            and all(hasattr(accumulator, name) for name in ("_tp_lock", "_batches", "_incomplete"))
            and hasattr(accumulator, "config")
            and all(hasattr(getattr(producer, "_sender", None), n) for n in ("wakeup", "add_topic"))
            and all(
                hasattr(getattr(producer, "_metadata", None), name)
                for name in ("partitions_for_topic", "request_update")
            )
            and hasattr(producer, "_wait_on_metadata")
        )

    def append(
        self, topic: str, records: list[Record], headers: list[tuple[str, bytes]]
    ) -> list[QueuedBatch]:
        """Queue `records` (in order per partition); return the batches holding them.

        Raises KafkaTimeoutError when the topic's partitions are not known within
        `max_block_ms` (Kafka away), having queued nothing.
        """
        partitions = self._partition_count(topic)
        partition_of = self._partition_of.setdefault(topic, {})
        by_partition: dict[int, list[Record]] = {}
        for record in records:
            key = record[0]
            partition = partition_of.get(key)
            if partition is None:
                partition = (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
                partition_of[key] = partition
            by_partition.setdefault(partition, []).append(record)
        timestamp_ms = int(time.time() * 1000)
        queued: list[QueuedBatch] = []
        for partition, group in by_partition.items():
            queued.extend(
                self._queue(TopicPartition(topic, partition), group, timestamp_ms, headers)
            )
        self._producer._sender.wakeup()
        return queued

    def warm(self, topics: Iterable[str]) -> None:
        """Ask for the topics' partitions now, without waiting for them.

        Why: the first batch to a topic otherwise waits for a metadata round trip, and
        kafka-python spaces metadata requests by `retry_backoff_ms`: in the pipeline
        benchmark the first dead letter and the first alert each held the worker ~100 ms
        (traced), which was the latency tail of a run's first second.
        """
        sender = self._producer._sender
        for topic in topics:
            sender.add_topic(topic)
        self._producer._metadata.request_update()
        sender.wakeup()

    def _partition_count(self, topic: str) -> int:
        metadata = self._producer._metadata
        known = metadata.partitions_for_topic(topic)
        if known is None:
            self._producer._wait_on_metadata(topic, self._max_block_ms)
            known = metadata.partitions_for_topic(topic)
            if known is None:
                msg = f"no partitions of {topic} known after {self._max_block_ms} ms"
                raise KafkaTimeoutError(msg)
        if self._partitions.get(topic) != len(known):
            # New topic, or partitions added: keys move, as they do for `send`.
            self._partitions[topic] = len(known)
            self._partition_of.pop(topic, None)
        return len(known)

    def _queue(
        self,
        tp: TopicPartition,
        records: list[Record],
        timestamp_ms: int,
        headers: list[tuple[str, bytes]],
    ) -> list[QueuedBatch]:
        # Batches are filled before the sender can see them, then queued under the
        # partition's lock, so the sender never drains a batch still being written.
        config = self._accumulator.config
        done: list[QueuedBatch] = []
        batch: ProducerBatch | None = None
        held: list[Record] = []
        for record in records:
            key, value = record[0].encode(), record[1]
            if batch is None or batch.records.append(timestamp_ms, key, value, headers) is None:
                if batch is not None:
                    done.append(QueuedBatch(batch, tp.topic, held))
                batch = ProducerBatch(
                    tp,
                    MemoryRecordsBuilder(
                        _MESSAGE_FORMAT, config["compression_attrs"], config["batch_size"]
                    ),
                )
                # The first record of a batch always fits.
                batch.records.append(timestamp_ms, key, value, headers)
                held = []
            held.append(record)
        if batch is not None:
            done.append(QueuedBatch(batch, tp.topic, held))
        accumulator = self._accumulator
        with accumulator._tp_lock(tp):
            queue = accumulator._batches[tp]
            for item in done:
                queue.append(item.batch)
                accumulator._incomplete.add(item.batch)
        return done
