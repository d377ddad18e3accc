"""The one live reader of the steps topic in an API process, and its fan-out to every stream.

The hub tails every partition of the topic from a single consumer and hands each record to
the streams that want it, through a bounded queue per stream: a stream whose queue is full is
closed with a reason instead of letting memory grow. It also keeps the most recent records in
a replay buffer (loaded from the topic at start-up, so it survives restarts), which serves
/events/recent and lets reconnecting clients resume from memory; older positions are read
from the topic itself through a second, shared reader.

Every record the hub reads moves its `head` (a `Position`) forward. The position after each
record is stored with it and baked into the record's shared SSE frame: a stream that is
"aligned" with the hub, i.e. has been handed everything the hub read before it, can send
that frame as is, so fan-out costs no per-client formatting.

Threads: the feed is blocking, so its live tail runs on one worker thread and its offset
queries and history reads on another; everything else runs on the event loop, which is what
makes "nothing dispatched between a stream's last replay and its going live" hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeVar

from api.feed import EventFeed, FeedError, FeedRead, FeedRecord
from api.metrics import ApiMetrics
from api.position import Position
from api.records import StepRecord, parse_record
from api.selection import Selection
from api.stats import StepStats

if TYPE_CHECKING:
    from flows.settings import Settings

__all__ = ["FeedUnavailableError", "StreamHub", "StreamTuning", "Subscriber"]

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

FeedState = Literal["starting", "ok", "down"]


@dataclass(frozen=True)
class StreamTuning:
    """Limits and timings of the streams; defaults suit a few hundred clients per process."""

    # Events a stream may fall behind the hub before it is closed as too slow (references to
    # shared records, so a full queue costs pointers, not copies).
    client_queue: int = 2000
    # Idle streams get a heartbeat this often; proxies and load balancers cut silent ones.
    heartbeat_seconds: float = 15.0
    # The `retry:` hint: how long EventSource waits before reconnecting.
    retry_ms: int = 3000
    # Newest events kept in memory (all partitions): /events/recent and fast resumes.
    replay_buffer: int = 6000
    # A client that accepts no bytes for this long is cut off.
    send_timeout_seconds: float = 15.0
    # Records per history read when a stream resumes from before the replay buffer.
    history_batch: int = 500
    # Longest a live poll blocks; bounds how fast the reader notices shutdown.
    poll_seconds: float = 0.25
    # How often lag and the feed's health are refreshed.
    offsets_interval_seconds: float = 2.0
    # How long shutdown waits for streams to send their final frame.
    shutdown_grace_seconds: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamTuning:
        """Defaults, overridden by the `api_*` settings."""
        return cls(
            client_queue=settings.api_client_queue,
            heartbeat_seconds=settings.api_heartbeat_seconds,
            retry_ms=settings.api_retry_ms,
            replay_buffer=settings.api_replay_buffer,
            send_timeout_seconds=settings.api_send_timeout_seconds,
        )


class FeedUnavailableError(Exception):
    """The hub has not reached its feed (yet); streams cannot start."""


class Subscriber:
    """One open stream as the hub sees it: what it wants and what is queued for it."""

    __slots__ = (
        "accept_all",
        "closed",
        "due_at",
        "live",
        "pending",
        "selection",
        "skip_below",
        "wake",
    )

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self.accept_all = selection.access.everything and selection.filter.empty
        self.pending: deque[StepRecord] = deque()
        self.wake = asyncio.Event()
        self.closed: str | None = None
        self.live = False
        # When the stream next needs waking without a record (heartbeat, token expiry), in
        # `time.monotonic()` seconds; the hub's ticker does it.
        self.due_at = float("inf")
        # Set while the stream's position is ahead of the hub in some partition (it resumed
        # from a position this process has not read up to yet): records below it were already
        # delivered by an earlier connection.
        self.skip_below: Position | None = None

    def close(self, reason: str) -> None:
        """End the stream: it sends a final frame giving `reason`, then closes."""
        if self.closed is None:
            self.closed = reason
            self.pending.clear()
            self.wake.set()


class StreamHub:
    """Reads the steps topic once per process and fans records out to the open streams."""

    def __init__(
        self,
        feed_factory: Callable[[], EventFeed],
        tuning: StreamTuning,
        stats: StepStats,
        metrics: ApiMetrics,
    ) -> None:
        self.tuning = tuning
        self.stats = stats
        self.metrics = metrics
        self._feed_factory = feed_factory
        self._feed: EventFeed | None = None
        self.feed_description = "not opened"
        self.state: FeedState = "starting"
        self.detail = "connecting"
        self.partitions = 0
        self.head = Position(())
        self.coverage = Position(())
        self.earliest = Position(())
        self._ring: deque[StepRecord] = deque()
        self._streams: set[Subscriber] = set()
        self._live: list[Subscriber] = []
        self._slice = max(1, min(256, tuning.client_queue // 4))
        self._topic_behind = False
        self._stopping = False
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tail_pool = ThreadPoolExecutor(1, thread_name_prefix="vitalflow-api-tail")
        self._history_pool = ThreadPoolExecutor(1, thread_name_prefix="vitalflow-api-history")

    # ---- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start reading in the background; streams can begin once the feed is reached."""
        self._feed = self._feed_factory()
        self.feed_description = self._feed.describe()
        self._task = asyncio.create_task(self._run(), name="vitalflow-api-hub")
        self._ticker = asyncio.create_task(self._tick(), name="vitalflow-api-ticker")

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the feed has been reached and the replay buffer loaded."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        return self._ready.is_set()

    def close_streams(self, reason: str) -> None:
        """Ask every open stream to send its final frame and end."""
        for subscriber in list(self._streams):
            self._drop(subscriber, reason)

    async def drain_streams(self, timeout: float) -> None:
        """Close every stream and wait (up to `timeout`) for them to finish."""
        self.close_streams("shutdown")
        deadline = time.monotonic() + timeout
        while self._streams and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Close the streams, stop reading and release the feed."""
        self._stopping = True
        await self.drain_streams(self.tuning.shutdown_grace_seconds)
        for task in (self._task, self._ticker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._feed is not None:
            # The tail thread may still be inside a poll; it returns within poll_seconds.
            await asyncio.get_running_loop().run_in_executor(self._tail_pool, self._feed.close)
        self._tail_pool.shutdown(wait=False, cancel_futures=True)
        self._history_pool.shutdown(wait=False, cancel_futures=True)

    # ---- what streams use -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once the feed was reached and the replay buffer is loaded."""
        return self._ready.is_set()

    async def in_history(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a blocking feed call on the history thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._history_pool, lambda: fn(*args, **kwargs))

    async def offsets(self) -> tuple[Position, Position]:
        """Fresh earliest and end offsets of every partition (raises FeedUnavailableError)."""
        feed = self._require_feed()
        try:
            earliest, end = await self.in_history(feed.offsets)
        except FeedError as exc:
            raise FeedUnavailableError(str(exc)) from exc
        self.earliest = earliest
        return earliest, end

    async def read_history(self, partition: int, start: int, limit: int) -> FeedRead:
        """Read records of one partition from `start` from the topic (not from memory)."""
        feed = self._require_feed()
        try:
            return await self.in_history(feed.read, partition, start, limit)
        except FeedError as exc:
            raise FeedUnavailableError(str(exc)) from exc

    def attach(self, selection: Selection) -> Subscriber:
        """Register a new stream (counted as connected, closed at shutdown)."""
        subscriber = Subscriber(selection)
        self._streams.add(subscriber)
        self.metrics.clients_connected.set(len(self._streams))
        if self._stopping:
            subscriber.close("shutdown")
        return subscriber

    def detach(self, subscriber: Subscriber) -> None:
        """Forget a stream that has ended."""
        self._streams.discard(subscriber)
        if subscriber.live:
            subscriber.live = False
            with contextlib.suppress(ValueError):
                self._live.remove(subscriber)
        self.metrics.clients_connected.set(len(self._streams))

    @property
    def client_count(self) -> int:
        """Open streams."""
        return len(self._streams)

    def replay_since(self, cursor: Position, limit: int) -> list[StepRecord]:
        """Buffered records not yet covered by `cursor`, in the order the hub read them.

        Only meaningful when `self.coverage` is at or behind `cursor` in every partition.
        """
        if cursor.covers(self.head):
            return []
        found: list[StepRecord] = []
        for record in self._ring:
            if record.offset >= cursor[record.partition]:
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    def go_live(self, subscriber: Subscriber, cursor: Position) -> None:
        """Start handing new records to a stream that has everything up to `cursor`."""
        if subscriber.closed is not None or subscriber.live:
            return
        subscriber.skip_below = None if self.head.covers(cursor) else cursor
        subscriber.live = True
        self._live.append(subscriber)

    def recent(self, selection: Selection, limit: int) -> tuple[list[StepRecord], Position]:
        """Return the latest `limit` buffered records `selection` accepts, and the head."""
        found: list[StepRecord] = []
        for record in reversed(self._ring):
            if selection.accepts(record):
                found.append(record)
                if len(found) >= limit:
                    break
        found.reverse()
        return found, self.head

    # ---- reading ----------------------------------------------------------------------------

    def _require_feed(self) -> EventFeed:
        if self._feed is None or not self._ready.is_set():
            msg = "the event feed is not connected yet"
            raise FeedUnavailableError(msg)
        return self._feed

    def _set_state(self, state: FeedState, detail: str) -> None:
        if state != self.state:
            log = logger.info if state == "ok" else logger.warning
            log("event feed %s: %s", state, detail)
        self.state, self.detail = state, detail
        self.metrics.feed_up.set(1 if state == "ok" else 0)

    async def _run(self) -> None:
        feed = self._feed
        assert feed is not None
        loop = asyncio.get_running_loop()
        backoff = 0.5
        while not self._stopping:
            offsets_task: asyncio.Task[None] | None = None
            try:
                partitions = await self.in_history(feed.connect)
                if not self._ready.is_set():
                    await self._load_recent(feed, partitions)
                elif partitions != self.partitions:
                    msg = f"the topic now has {partitions} partitions; restart the API"
                    raise FeedError(msg)
                elif not (await self.in_history(feed.offsets))[1].covers(self.head):
                    await self._start_over(feed, partitions)
                await loop.run_in_executor(self._tail_pool, feed.seek_tail, self.head)
                self._ready.set()
                self._set_state("ok", feed.describe())
                backoff = 0.5
                offsets_task = asyncio.create_task(self._watch_offsets(feed))
                while not self._stopping and not self._topic_behind:
                    batch = await loop.run_in_executor(
                        self._tail_pool, feed.poll_tail, self.tuning.poll_seconds, 1000
                    )
                    # Hand records over in slices, letting streams drain between them: a burst
                    # read in one poll must not overflow the queue of a client that keeps up.
                    step = self._slice
                    for start in range(0, len(batch), step):
                        self._ingest(batch[start : start + step], dispatch=True)
                        await asyncio.sleep(0)
                if self._topic_behind:
                    msg = "the topic ends before what this process has read (recreated?)"
                    raise FeedError(msg)
            except FeedError as exc:
                self._set_state("down", str(exc))
            except Exception as exc:  # the reader must outlive any one failure
                logger.exception("event feed reader failed")
                self._set_state("down", f"reader failed: {type(exc).__name__}")
            finally:
                if offsets_task is not None:
                    offsets_task.cancel()
            if self._stopping:
                break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def _start_over(self, feed: EventFeed, partitions: int) -> None:
        """Forget what was read from a topic that was deleted and created again."""
        logger.warning("the steps topic was recreated: reloading, and ending open streams")
        self._ready.clear()
        self.close_streams("topic_reset")
        self._ring.clear()
        self._topic_behind = False
        await self._load_recent(feed, partitions)

    async def _load_recent(self, feed: EventFeed, partitions: int) -> None:
        """Fill the replay buffer with the newest records of every partition."""
        earliest, end = await self.in_history(feed.offsets)
        per_partition = max(1, self.tuning.replay_buffer // partitions)
        start = Position(
            tuple(
                max(first, last - per_partition)
                for first, last in zip(earliest.offsets, end.offsets, strict=True)
            )
        )
        lists: list[list[FeedRecord]] = []
        for partition in range(partitions):
            records: list[FeedRecord] = []
            next_offset = start[partition]
            while next_offset < end[partition]:
                read = await self.in_history(
                    feed.read, partition, next_offset, self.tuning.history_batch
                )
                records.extend(r for r in read.records if r.offset < end[partition])
                if read.next_offset <= next_offset:
                    break
                next_offset = read.next_offset
            lists.append(records)
        self.partitions = partitions
        self.head = self.coverage = start
        self.earliest = earliest
        # Partitions are merged by write time so the buffer reads like a timeline, while each
        # partition keeps its own order (heapq.merge is stable per input).
        self._ingest(heapq.merge(*lists, key=lambda r: r.timestamp_ms), dispatch=False)
        self.head = self.head.merged(end)
        logger.info(
            "replay buffer loaded: %d events, resume positions from %s", len(self._ring), start
        )

    async def _tick(self) -> None:
        """Wake the streams whose heartbeat or token expiry is due."""
        interval = min(1.0, self.tuning.heartbeat_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for subscriber in self._streams:
                if subscriber.due_at <= now:
                    subscriber.due_at = float("inf")
                    subscriber.wake.set()

    async def _watch_offsets(self, feed: EventFeed) -> None:
        """Refresh the consumer lag and the feed's health every few seconds."""
        while not self._stopping:
            await asyncio.sleep(self.tuning.offsets_interval_seconds)
            # What was read before asking: the tail goes on reading while the answer is on
            # its way, and may pass the end the broker gave (a slow answer under load).
            read_before = self.head
            try:
                earliest, end = await self.in_history(feed.offsets)
            except FeedError as exc:
                self._set_state("down", str(exc))
                continue
            self.earliest = earliest
            if not end.covers(read_before):
                # Offsets went backwards: the topic was recreated. The reader starts over.
                self._topic_behind = True
                continue
            self._set_state("ok", feed.describe())
            for partition in range(min(len(end), self.partitions)):
                lag = max(0, end[partition] - self.head[partition])
                self.metrics.consumer_lag.labels(str(partition)).set(lag)

    def _ingest(self, batch: Iterable[FeedRecord], dispatch: bool) -> None:
        """Take records in the order read: position, buffer, counts, then the streams."""
        now_ms = time.time_ns() // 1_000_000
        metrics = self.metrics
        touched: list[Subscriber] = []
        for raw in batch:
            partition, offset = raw.partition, raw.offset
            if partition >= self.partitions or offset < self.head[partition]:
                continue
            self.head = self.head.advanced(partition, offset)
            record = parse_record(partition, offset, raw.timestamp_ms, raw.value, self.head)
            self._remember(record)
            if not record.valid:
                metrics.events_invalid.inc()
                continue
            self.stats.add(record, now_ms)
            if not dispatch:
                continue
            metrics.events_consumed.inc()
            metrics.step_events.labels(
                record.step or "unknown",
                record.status or "unknown",
                record.device_type or "unknown",
            ).inc()
            metrics.event_age.observe(max(0.0, (now_ms - record.timestamp_ms) / 1000))
            self._dispatch(record, touched)
        for subscriber in touched:
            subscriber.wake.set()

    def _remember(self, record: StepRecord) -> None:
        ring = self._ring
        ring.append(record)
        if len(ring) > self.tuning.replay_buffer:
            evicted = ring.popleft()
            self.coverage = self.coverage.advanced(evicted.partition, evicted.offset)

    def _dispatch(self, record: StepRecord, touched: list[Subscriber]) -> None:
        limit = self.tuning.client_queue
        dropped: list[Subscriber] = []
        for subscriber in self._live:
            skip_below = subscriber.skip_below
            if skip_below is not None:
                if record.offset < skip_below[record.partition]:
                    continue
                if record.position_after is not None and record.position_after.covers(skip_below):
                    subscriber.skip_below = None
            if not (subscriber.accept_all or subscriber.selection.accepts(record)):
                continue
            pending = subscriber.pending
            if len(pending) >= limit:
                dropped.append(subscriber)
                continue
            if not pending:
                touched.append(subscriber)
            pending.append(record)
        for subscriber in dropped:
            self._drop(subscriber, "slow_consumer")

    def _drop(self, subscriber: Subscriber, reason: str) -> None:
        if subscriber.closed is not None:
            return
        subscriber.close(reason)
        self.metrics.clients_dropped.labels(reason).inc()
        if subscriber.live:
            subscriber.live = False
            with contextlib.suppress(ValueError):
                self._live.remove(subscriber)
        if reason == "slow_consumer":
            logger.warning(
                "dropped an SSE client that fell %d events behind", self.tuning.client_queue
            )
