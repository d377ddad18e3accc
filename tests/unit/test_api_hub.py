"""The hub and its streams over an in-memory partitioned log: fan-out, resume, reset, limits."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from api.auth import Access
from api.client import SseFrame, SseParser
from api.feed import FeedError, FeedRead, FeedRecord
from api.hub import StreamHub, StreamTuning
from api.metrics import ApiMetrics
from api.position import Position
from api.selection import EventFilter, Selection
from api.stats import StepStats
from api.stream import EventStream

STEPS = ("1_mqtt_received", "2_payload_parsed", "3_patient_lookup")


class MemoryLog:
    """A partitioned log held in memory, with Kafka's offset rules and optional retention."""

    kind = "memory"

    def __init__(self, partitions: int = 3) -> None:
        self._lock = threading.Lock()
        self._records: list[list[FeedRecord]] = [[] for _ in range(partitions)]
        self._earliest = [0] * partitions
        self._tail = Position.zeros(partitions)
        self._appended = 0
        self.broken = False

    def append(self, partition: int, value: bytes) -> int:
        with self._lock:
            records = self._records[partition]
            offset = self._earliest[partition] + len(records)
            # Write times strictly increase, as for records produced one after another.
            self._appended += 1
            written = time.time_ns() // 1_000_000 - 1_000_000 + self._appended
            records.append(FeedRecord(partition, offset, written, value))
            return offset

    def drop_before(self, partition: int, offset: int) -> None:
        with self._lock:
            records = self._records[partition]
            self._records[partition] = [r for r in records if r.offset >= offset]
            self._earliest[partition] = offset

    def recreate(self) -> None:
        """Delete and create the topic again: offsets restart at 0."""
        with self._lock:
            self._records = [[] for _ in self._records]
            self._earliest = [0] * len(self._records)

    def describe(self) -> str:
        return "memory"

    def connect(self) -> int:
        return len(self._records)

    def offsets(self) -> tuple[Position, Position]:
        with self._lock:
            earliest = tuple(self._earliest)
            end = tuple(e + len(r) for e, r in zip(self._earliest, self._records, strict=True))
        return Position(earliest), Position(end)

    def read(self, partition: int, start: int, limit: int) -> FeedRead:
        if self.broken:
            msg = "storage unreachable"
            raise FeedError(msg)
        with self._lock:
            found = [r for r in self._records[partition] if r.offset >= start][:limit]
            end = self._earliest[partition] + len(self._records[partition])
        return FeedRead(found, found[-1].offset + 1 if found else max(start, end))

    def seek_tail(self, position: Position) -> None:
        self._tail = position

    def poll_tail(self, timeout: float, limit: int) -> list[FeedRecord]:
        deadline = time.monotonic() + timeout
        while True:
            found: list[FeedRecord] = []
            with self._lock:
                for partition, records in enumerate(self._records):
                    found.extend(r for r in records if r.offset >= self._tail[partition])
            if found:
                found = found[:limit]
                for record in found:
                    self._tail = self._tail.advanced(record.partition, record.offset)
                return found
            if time.monotonic() >= deadline:
                return []
            time.sleep(0.005)

    def close(self) -> None:
        pass


def step_event(
    n: int, patient: str | None = "P1", hospital: str | None = "H1", **extra: Any
) -> bytes:
    step = STEPS[n % len(STEPS)]
    data = {
        "message_id": f"m{n}",
        "step": step,
        "status": "success",
        "device_type": "Kati" if n % 2 else "AVA4",
        "device_id": f"D{n % 4}",
        "patient_id": patient,
        "hospital_id": hospital,
        **extra,
    }
    event = {"specversion": "1.0", "id": f"m{n}/{step}", "source": "vitalflow", "type": "t"}
    return json.dumps({**event, "data": data}).encode()


class Reader:
    """Pulls frames out of one stream's chunks."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self.parser = SseParser()
        self.ready: list[SseFrame] = []

    async def frame(self, timeout: float = 5.0) -> SseFrame:
        async with asyncio.timeout(timeout):
            while not self.ready:
                self.ready.extend(self.parser.feed((await anext(self.chunks)).decode()))
        return self.ready.pop(0)

    async def events(self, count: int, timeout: float = 5.0) -> list[SseFrame]:
        """The next `count` step-event frames, skipping control frames."""
        found: list[SseFrame] = []
        while len(found) < count:
            frame = await self.frame(timeout)
            if frame.event in STEPS:
                found.append(frame)
        return found


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=30))


async def started_hub(log: MemoryLog, **tuning: Any) -> StreamHub:
    settings = {
        "poll_seconds": 0.02,
        "offsets_interval_seconds": 0.1,
        "shutdown_grace_seconds": 0.2,
        **tuning,
    }
    hub = StreamHub(lambda: log, StreamTuning(**settings), StepStats(), ApiMetrics())
    await hub.start()
    assert await hub.wait_ready(5)
    return hub


def open_stream(
    hub: StreamHub,
    position: str | None = None,
    access: Access | None = None,
    filters: EventFilter | None = None,
) -> Reader:
    selection = Selection(access or Access.unrestricted(), filters or EventFilter())
    requested = Position.decode(position) if position else None
    return Reader(EventStream(hub, selection, requested, "off").frames().__aiter__())


def in_partition_order(ids: list[str]) -> bool:
    numbers = [int(m[1:]) for m in ids]
    return all(
        [n for n in numbers if n % 3 == p] == sorted(n for n in numbers if n % 3 == p)
        for p in range(3)
    )


def message_ids(frames: list[SseFrame]) -> list[str]:
    return [frame.json()["data"]["message_id"] for frame in frames]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_every_stream_gets_every_event_once_in_partition_order() -> None:
    async def scenario() -> None:
        log = MemoryLog()
        hub = await started_hub(log)
        readers = [open_stream(hub) for _ in range(5)]
        for reader in readers:
            assert (await reader.frame()).event == "ready"
        await wait_until(lambda: hub.client_count == 5)
        await asyncio.sleep(0.05)
        for n in range(30):
            log.append(n % 3, step_event(n))
        for reader in readers:
            frames = await reader.events(30)
            assert sorted(message_ids(frames), key=lambda m: int(m[1:])) == [
                f"m{n}" for n in range(30)
            ]
            assert in_partition_order(message_ids(frames))
            assert frames[-1].id == "0-10.1-10.2-10"
        await hub.stop()

    run(scenario)


def test_resuming_from_any_frame_gives_exactly_the_events_after_it() -> None:
    async def scenario() -> None:
        log = MemoryLog()
        for n in range(40):
            log.append(n % 3, step_event(n))
        # A replay buffer smaller than the backlog: resuming reads the log, then the buffer.
        hub = await started_hub(log, replay_buffer=9, history_batch=4)
        first = open_stream(hub, position="0-0.1-0.2-0")
        frames = await first.events(40)
        assert sorted(message_ids(frames), key=lambda m: int(m[1:])) == [f"m{n}" for n in range(40)]
        for cut in (0, 5, 17, 33, 38):
            position = Position.decode(frames[cut].id or "")
            # Message n is at offset n // 3 of partition n % 3.
            expected = [f"m{n}" for n in range(40) if n // 3 >= position[n % 3]]
            assert len(expected) == 39 - cut
            again = open_stream(hub, position=str(position))
            rest = message_ids(await again.events(len(expected)))
            assert sorted(rest, key=lambda m: int(m[1:])) == expected
            assert in_partition_order(rest)
        await hub.stop()

    run(scenario)


def test_resume_works_on_a_new_hub_as_after_an_api_restart() -> None:
    async def scenario() -> None:
        log = MemoryLog()
        hub = await started_hub(log, replay_buffer=6)
        reader = open_stream(hub)
        await reader.frame()
        await wait_until(lambda: hub.client_count == 1)
        await asyncio.sleep(0.05)
        for n in range(10):
            log.append(n % 3, step_event(n))
        seen = await reader.events(4)
        await hub.stop()
        for n in range(10, 25):
            log.append(n % 3, step_event(n))
        restarted = await started_hub(log, replay_buffer=6)
        resumed = open_stream(restarted, position=seen[-1].id)
        rest = await resumed.events(21)
        assert sorted(message_ids(seen) + message_ids(rest), key=lambda m: int(m[1:])) == [
            f"m{n}" for n in range(25)
        ]
        await restarted.stop()

    run(scenario)


def test_a_position_retention_removed_gets_a_reset_frame_then_what_is_left() -> None:
    async def scenario() -> None:
        log = MemoryLog(partitions=1)
        for n in range(10):
            log.append(0, step_event(n))
        log.drop_before(0, 6)
        hub = await started_hub(log, replay_buffer=2)
        reader = open_stream(hub, position="0-3")
        assert (await reader.frame()).event == "ready"
        reset = await reader.frame()
        assert reset.event == "reset"
        assert reset.json() == {
            "reason": "position_expired",
            "requested": "0-3",
            "position": "0-6",
            "lost": {"0": 3},
        }
        assert reset.id == "0-6"
        assert message_ids(await reader.events(4)) == ["m6", "m7", "m8", "m9"]
        await hub.stop()

    run(scenario)


def test_a_position_beyond_the_topic_end_is_reset_to_the_earliest_event() -> None:
    async def scenario() -> None:
        log = MemoryLog(partitions=1)
        for n in range(3):
            log.append(0, step_event(n))
        hub = await started_hub(log)
        reader = open_stream(hub, position="0-50")
        await reader.frame()
        reset = await reader.frame()
        assert (reset.event, reset.json()["reason"], reset.id) == (
            "reset",
            "position_unknown",
            "0-0",
        )
        assert message_ids(await reader.events(3)) == ["m0", "m1", "m2"]
        await hub.stop()

    run(scenario)


@pytest.mark.parametrize(
    ("position", "retained_from"),
    [("0-1.1-1.2-1.3-5", 0), ("5-7", 0), ("0-1.1-1.2-1.3-5", 1)],
    ids=["all-partitions-in-buffer", "only-a-foreign-partition", "after-retention"],
)
def test_a_position_with_more_partitions_than_the_topic_gets_a_reset_frame(
    position: str, retained_from: int
) -> None:
    async def scenario() -> None:
        log = MemoryLog(partitions=3)
        for n in range(9):
            log.append(n % 3, step_event(n))
        for partition in range(3):
            log.drop_before(partition, retained_from)
        hub = await started_hub(log, replay_buffer=2 if retained_from else 6000)
        reader = open_stream(hub, position=position)
        ready = await reader.frame()
        # Until the reset, the stream is where the client said: a reconnect in between
        # must be recognised as foreign again, not quietly cut to the topic's partitions.
        sent = Position.decode(position).encode()
        assert (ready.event, ready.id) == ("ready", sent)
        reset = await reader.frame()
        earliest = f"0-{retained_from}.1-{retained_from}.2-{retained_from}"
        assert (reset.event, reset.id) == ("reset", earliest)
        assert reset.json() == {
            "reason": "position_unknown",
            "requested": sent,
            "position": earliest,
            "lost": {},
        }
        left = 9 - 3 * retained_from
        assert sorted(message_ids(await reader.events(left))) == sorted(
            f"m{n}" for n in range(3 * retained_from, 9)
        )
        await hub.stop()

    run(scenario)


def test_a_position_with_extra_partitions_at_offset_zero_resumes_without_a_reset() -> None:
    async def scenario() -> None:
        log = MemoryLog(partitions=3)
        for n in range(9):
            log.append(n % 3, step_event(n))
        hub = await started_hub(log)
        reader = open_stream(hub, position="0-1.1-1.2-1.3-0")
        assert (await reader.frame()).id == "0-1.1-1.2-1"
        frames = await reader.events(6)
        assert sorted(message_ids(frames)) == [f"m{n}" for n in range(3, 9)]
        await hub.stop()

    run(scenario)


def test_streams_only_carry_what_their_filters_and_scope_allow() -> None:
    async def scenario() -> None:
        log = MemoryLog()
        hub = await started_hub(log)
        scoped = open_stream(hub, access=Access(patients=frozenset({"P2"})))
        kati = open_stream(hub, filters=EventFilter(device_types=frozenset({"Kati"})))
        for reader in (scoped, kati):
            await reader.frame()
        await wait_until(lambda: hub.client_count == 2)
        await asyncio.sleep(0.05)
        for n in range(12):
            patient = "P2" if n % 4 == 0 else ("P3" if n % 4 == 1 else None)
            log.append(n % 3, step_event(n, patient=patient))
        assert message_ids(await scoped.events(3)) == ["m0", "m4", "m8"]
        kati_ids = message_ids(await kati.events(6))
        assert sorted(kati_ids, key=lambda m: int(m[1:])) == [f"m{n}" for n in range(1, 12, 2)]
        await hub.stop()

    run(scenario)


def test_heartbeats_move_a_filtered_stream_past_events_it_did_not_want() -> None:
    async def scenario() -> None:
        log = MemoryLog(partitions=1)
        hub = await started_hub(log, heartbeat_seconds=0.2)
        reader = open_stream(hub, filters=EventFilter(device_types=frozenset({"Qube"})))
        await reader.frame()
        await wait_until(lambda: hub.client_count == 1)
        for n in range(5):
            log.append(0, step_event(n))
        await wait_until(lambda: hub.head == Position((5,)))
        beat = await reader.frame(2)
        while beat.id != "0-5":
            beat = await reader.frame(2)
        assert beat.event == "heartbeat"
        assert beat.json()["position"] == "0-5"
        await hub.stop()

    run(scenario)


def test_a_client_that_falls_behind_is_closed_with_a_reason_and_its_queue_stays_bounded() -> None:
    async def scenario() -> None:
        log = MemoryLog(partitions=1)
        hub = await started_hub(log, client_queue=5)
        # Any filter makes the slow stream's subscriber tell apart from the fast one's.
        slow = open_stream(hub, filters=EventFilter(statuses=frozenset({"success"})))
        fast = open_stream(hub)
        await slow.frame()
        await fast.frame()
        # Pulling once more takes each stream live; the slow one then reads a single frame.
        first_of_slow = asyncio.create_task(slow.frame())
        all_of_fast = asyncio.create_task(fast.events(40))
        await wait_until(lambda: len(hub._live) == 2)
        subscriber = next(s for s in hub._live if not s.selection.filter.empty)
        for n in range(40):
            log.append(0, step_event(n))
            await asyncio.sleep(0.002)
            assert len(subscriber.pending) <= 5
        assert (await first_of_slow).event in STEPS
        assert len(await all_of_fast) == 40
        frames = [first_of_slow.result()]
        while frames[-1].event != "close":
            frames.append(await slow.frame())
        assert frames[-1].json() == {"reason": "slow_consumer"}
        # The close frame's id resumes exactly after the last event the client got.
        delivered = [f for f in frames if f.event in STEPS]
        assert frames[-1].id == (delivered[-1].id if delivered else "0-0")
        with pytest.raises(StopAsyncIteration):
            await slow.frame()
        await hub.stop()

    run(scenario)


def test_shutdown_closes_every_stream_with_a_final_frame() -> None:
    async def scenario() -> None:
        log = MemoryLog()
        hub = await started_hub(log)
        readers = [open_stream(hub) for _ in range(3)]
        for reader in readers:
            await reader.frame()
        await wait_until(lambda: hub.client_count == 3)
        stopping = asyncio.create_task(hub.stop())
        for reader in readers:
            closing = await reader.frame()
            assert (closing.event, closing.json()) == ("close", {"reason": "shutdown"})
            with pytest.raises(StopAsyncIteration):
                await reader.frame()
        await stopping
        assert hub.client_count == 0

    run(scenario)


def test_a_stream_ends_when_its_token_expires() -> None:
    async def scenario() -> None:
        log = MemoryLog()
        hub = await started_hub(log)
        reader = open_stream(hub, access=Access(everything=True, expires_at=time.time() + 0.3))
        await reader.frame()
        closing = await reader.frame(3)
        assert (closing.event, closing.json()) == ("close", {"reason": "token_expired"})
        await hub.stop()

    run(scenario)


def test_recent_events_are_the_newest_visible_ones_with_the_position_after_them() -> None:
    async def scenario() -> None:
        log = MemoryLog()
        for n in range(20):
            log.append(n % 3, step_event(n, patient="P1" if n % 2 else "P2"))
        hub = await started_hub(log)
        records, position = hub.recent(
            Selection(Access(patients=frozenset({"P1"})), EventFilter()), 3
        )
        assert [r.message_id for r in records] == ["m15", "m17", "m19"]
        assert position == Position((7, 7, 6))
        await hub.stop()

    run(scenario)


def test_counts_and_metrics_follow_the_events_read() -> None:
    async def scenario() -> None:
        log = MemoryLog(partitions=1)
        hub = await started_hub(log)
        log.append(0, step_event(0, alert=True, severity="critical"))
        log.append(0, step_event(1, patient="P9", hospital="H9"))
        log.append(0, b"not an event")
        await wait_until(lambda: hub.head == Position((3,)))
        everything = hub.stats.report(Access.unrestricted())
        assert everything.events == 2
        assert everything.alerts == 1
        assert everything.by_device_type == {"AVA4": 1, "Kati": 1}
        assert hub.stats.report(Access(hospitals=frozenset({"H9"}))).events == 1
        text = hub.metrics.render().decode()
        assert "vitalflow_api_events_consumed_total 2.0" in text
        assert "vitalflow_api_events_invalid_total 1.0" in text
        await hub.stop()

    run(scenario)


def test_a_recreated_topic_ends_open_streams_and_old_positions_are_reset() -> None:
    async def scenario() -> None:
        log = MemoryLog(partitions=1)
        for n in range(10):
            log.append(0, step_event(n))
        hub = await started_hub(log)
        reader = open_stream(hub)
        await reader.frame()
        log.recreate()
        for n in range(100, 103):
            log.append(0, step_event(n))
        closing = await reader.frame(5)
        assert (closing.event, closing.json()) == ("close", {"reason": "topic_reset"})
        await wait_until(lambda: hub.ready and hub.head == Position((3,)))
        again = open_stream(hub, position="0-10")
        await again.frame()
        reset = await again.frame()
        assert (reset.event, reset.json()["reason"], reset.id) == (
            "reset",
            "position_unknown",
            "0-0",
        )
        assert message_ids(await again.events(3)) == ["m100", "m101", "m102"]
        await hub.stop()

    run(scenario)


def test_a_feed_failure_during_catch_up_ends_the_stream_at_the_position_it_reached() -> None:
    async def scenario() -> None:
        log = MemoryLog(partitions=1)
        for n in range(10):
            log.append(0, step_event(n))
        hub = await started_hub(log, replay_buffer=2)
        log.broken = True
        reader = open_stream(hub, position="0-1")
        assert (await reader.frame()).event == "ready"
        closing = await reader.frame()
        assert (closing.event, closing.json(), closing.id) == (
            "close",
            {"reason": "feed_unavailable"},
            "0-1",
        )
        await hub.stop()

    run(scenario)


class SlowOffsetsLog(MemoryLog):
    """A log whose offsets answer arrives late, as a loaded broker's can: the end it gives
    was read before records the live tail has taken meanwhile."""

    def __init__(self, partitions: int, delay: float) -> None:
        super().__init__(partitions)
        self.delay = delay

    def offsets(self) -> tuple[Position, Position]:
        answer = super().offsets()
        time.sleep(self.delay)
        return answer


def test_an_end_offset_read_before_newer_records_is_not_taken_for_a_recreated_topic() -> None:
    async def scenario() -> None:
        log = SlowOffsetsLog(partitions=1, delay=0.15)
        hub = await started_hub(log, offsets_interval_seconds=0.05)
        reader = open_stream(hub)
        assert (await reader.frame()).event == "ready"
        # Records keep coming while each offsets answer is on its way; the tail reads them.
        for n in range(60):
            log.append(0, step_event(n))
            await asyncio.sleep(0.01)
        frames = [await reader.frame() for _ in range(60)]
        assert [f.event for f in frames if f.event not in STEPS] == []
        assert message_ids(frames) == [f"m{n}" for n in range(60)]
        assert hub.ready and hub.head == Position((60,))
        await hub.stop()

    run(scenario)


def test_the_sse_parser_ignores_a_retry_that_is_not_ascii_digits() -> None:
    parser = SseParser()
    frames = parser.feed("retry: ²\nretry: 1500\nretry: ①\ndata: x\n\n")
    assert [(f.data, f.retry) for f in frames] == [("x", 1500)]
