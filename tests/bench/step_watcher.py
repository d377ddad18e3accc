"""A Kafka consumer in a process of its own that notes when each step event arrives.

It reads a step-events topic from the beginning while a benchmark runs and keeps, per event,
its id, step, status, CloudEvent `time` and the moment the broker appended it. A process of
its own keeps its JSON decoding off the publisher's GIL and its CPU in a line of its own.

"Visible on Kafka" is the record's broker timestamp: the benchmark creates its topics with
`message.timestamp.type=LogAppendTime` (`TIMED_TOPIC`), so a record carries the time
the broker appended it, which is when a consumer can have it (one broker, acks=all). That
lets the watcher fetch lazily (500 ms waits, 256 KiB minimum) instead of polling every 5 ms:
the consumer the benchmark needs for its figures then costs little of the CPU it measures. On
a topic with producer timestamps it falls back to the moment it consumed the record.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import time
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

import orjson
from kafka import KafkaConsumer, TopicPartition

from flows.parent_death import die_with_parent

__all__ = ["TIMED_TOPIC", "SeenEvent", "StepWatcher"]

# The configuration of the topics the watcher reads: records stamped when the broker appends.
TIMED_TOPIC = {"message.timestamp.type": "LogAppendTime"}

# Kafka's record timestamp types (the `timestamp_type` of a consumed record).
_LOG_APPEND_TIME = 1

_TERMINAL = {"error", "skipped"}
_LAST_STEP = "5_medical_stored"


@dataclass(frozen=True)
class SeenEvent:
    """One step event as the watcher saw it."""

    id: str
    step: str
    status: str
    event_time: float  # the CloudEvent `time`, epoch seconds
    visible_at: float  # epoch seconds the broker appended it (see the module's docstring)
    partition: int
    offset: int

    @property
    def delivery(self) -> str:
        """The event-id prefix shared by one delivery's events."""
        return self.id.rsplit("/", 1)[0]

    @property
    def ends_chain(self) -> bool:
        return self.status in _TERMINAL or self.step == _LAST_STEP


def _watch(
    bootstrap: str,
    topic: str,
    partitions: int,
    out: str,
    deliveries: set[str],
    stop: Event,
    ended: Synchronized[int],
    ready: Event,
) -> None:
    die_with_parent()  # a killed benchmark leaves no watcher polling Kafka
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=500,
        fetch_min_bytes=256 * 1024,
        max_poll_records=5000,
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ready.set()
    seen: list[SeenEvent] = []
    idle_polls = 0
    # After `stop`, drain what is already on the broker before leaving.
    while not stop.is_set() or idle_polls < 3:
        batches = consumer.poll(timeout_ms=50)
        now = time.time()
        idle_polls = 0 if batches else idle_polls + 1
        count = 0
        for tp, records in batches.items():
            for record in records:
                event = orjson.loads(record.value)
                data = event["data"]
                appended = record.timestamp_type == _LOG_APPEND_TIME
                seen.append(
                    SeenEvent(
                        id=event["id"],
                        step=data["step"],
                        status=data["status"],
                        event_time=datetime.fromisoformat(event["time"]).timestamp(),
                        visible_at=record.timestamp / 1000 if appended else now,
                        partition=tp.partition,
                        offset=record.offset,
                    )
                )
                count += seen[-1].ends_chain and seen[-1].delivery in deliveries
        if count:
            with ended.get_lock():
                ended.value += count
    consumer.close()
    Path(out).write_bytes(pickle.dumps(seen))


class StepWatcher:
    """Start with `start()`, read `ended` for chains ended so far, `stop()` for every event.

    `ended` counts only the chains of `deliveries` (event-id prefixes): the flow also handles
    whatever else is published to the device topics meanwhile.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        workdir: Path,
        deliveries: set[str],
    ) -> None:
        context = mp.get_context("spawn")
        self._out = workdir / f"seen-{topic}.pickle"
        self._stop = context.Event()
        self._ready = context.Event()
        self._ended: Synchronized[int] = context.Value("q", 0)
        self._process = context.Process(
            target=_watch,
            args=(bootstrap, topic, partitions, str(self._out), deliveries),
            kwargs={"stop": self._stop, "ended": self._ended, "ready": self._ready},
            daemon=True,
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> None:
        self._process.start()
        if not self._ready.wait(timeout=30):
            msg = "the step watcher did not connect to Kafka within 30 s"
            raise RuntimeError(msg)

    @property
    def ended(self) -> int:
        """Chains of `deliveries` ended so far (events that end a chain, counting repeats)."""
        return int(self._ended.value)

    def stop(self) -> list[SeenEvent]:
        """Stop after draining the topic; return every event seen, in arrival order."""
        self._stop.set()
        self._process.join(timeout=120)
        if self._process.is_alive():
            self._process.kill()
            msg = "the step watcher did not stop within 120 s"
            raise RuntimeError(msg)
        events: list[SeenEvent] = pickle.loads(self._out.read_bytes())
        return events
