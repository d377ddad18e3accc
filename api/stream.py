"""One SSE stream: from a resume position, through history and the replay buffer, to live.

Frames, in order (every one carries `id:`, the stream's position, so `Last-Event-ID` works
whichever frame a client saw last):

- `ready` first (after a `retry:` hint): `{"position", "resumed", "auth"}` (not `open`,
  which EventSource reserves for its own connection event);
- `reset` when the requested position is no longer held (retention removed it) or is not a
  position of this topic: `{"reason", "requested", "position", "lost"}`; the stream goes on
  from the earliest events still held, so a gap is always announced, never silent;
- one frame per step event, named after the step, with the CloudEvent as data;
- `heartbeat` every `heartbeat_seconds` without other frames: `{"position", "time"}` (it also
  moves a filtered stream's position past events it did not want);
- `close` last when the server ends the stream: `{"reason"}` with reason `slow_consumer` (the
  client fell `client_queue` events behind), `token_expired`, `shutdown`, `topic_reset` (the
  topic was recreated) or `feed_unavailable` (Kafka went away mid-catch-up). A client simply
  reconnects (EventSource does so by itself) and resumes where it was.

A stream catches up in three stages, each exactly continuing the previous one: records older
than the replay buffer are read from the topic; then the buffer is replayed; then, in the same
event-loop step in which the buffer had nothing more for it, it is registered with the hub for
live records, so no record can fall between the stages.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from api.hub import FeedUnavailableError, StreamHub, Subscriber
from api.position import Position
from api.records import StepRecord, format_frame, parse_record
from api.selection import Selection

__all__ = ["EventStream", "StepEventResponse"]

logger = logging.getLogger(__name__)

# Frames are joined into writes of about this size: one write per wake-up keeps the per-client
# cost low, and the cap keeps the copies bounded (uvicorn pauses writing at 64 KiB anyway).
_CHUNK_BYTES = 64 * 1024


def _chunks(frames: list[bytes]) -> Iterator[bytes]:
    """Join frames into writes of at most about `_CHUNK_BYTES`."""
    start, size = 0, 0
    for index, frame in enumerate(frames):
        size += len(frame)
        if size >= _CHUNK_BYTES:
            yield b"".join(frames[start : index + 1])
            start, size = index + 1, 0
    if start < len(frames):
        yield b"".join(frames[start:])


def _control(event: str, position: Position, payload: dict[str, Any]) -> bytes:
    return format_frame(event, json.dumps(payload, separators=(",", ":")), position)


class EventStream:
    """The frames of one client's stream, as an async iterator of byte chunks."""

    def __init__(
        self,
        hub: StreamHub,
        selection: Selection,
        requested: Position | None,
        auth_mode: str,
    ) -> None:
        self.hub = hub
        self.selection = selection
        self.requested = requested
        self.auth_mode = auth_mode
        self.tuning = hub.tuning
        self.cursor = hub.head
        # True once every record the hub read before the last one handled has been handled
        # here too; the hub's shared frames then carry exactly this stream's position.
        self._aligned = False
        self._last_sent = time.monotonic()

    async def frames(self) -> AsyncIterator[bytes]:
        """Yield byte chunks of whole SSE frames until the stream ends."""
        hub = self.hub
        subscriber = hub.attach(self.selection)
        try:
            try:
                opening = await self._open()
                yield opening
                self._last_sent = time.monotonic()
                async for chunk in self._catch_up(subscriber):
                    yield chunk
                    self._last_sent = time.monotonic()
            except FeedUnavailableError:
                # Kafka went away while this stream read history: end cleanly; the client
                # retries from its last id.
                subscriber.close("feed_unavailable")
                yield _control("close", self.cursor, {"reason": "feed_unavailable"})
                return
            if subscriber.closed is not None:
                return  # the catch-up sent the final frame
            async for chunk in self._follow(subscriber):
                yield chunk
                self._last_sent = time.monotonic()
        finally:
            hub.detach(subscriber)

    # ---- stages -----------------------------------------------------------------------------

    async def _open(self) -> bytes:
        hub = self.hub
        requested = self.requested
        head = f"retry: {self.tuning.retry_ms}\n".encode()
        info = {"resumed": requested is not None, "auth": self.auth_mode}
        if requested is None:
            self.cursor = hub.head
            self._aligned = True
            return head + _control("ready", self.cursor, {"position": str(self.cursor), **info})
        shown = requested.resized(hub.partitions)
        if len(requested) > hub.partitions and any(requested.offsets[hub.partitions :]):
            # An offset in a partition this topic does not have: the position is of another
            # topic (or of this one before it was recreated), so none of its offsets can be
            # trusted. Until the reset frame is sent, frames keep the id the client sent, so
            # a reconnect in between is recognised again instead of silently resized.
            self.cursor = requested
            opening = head + _control("ready", requested, {"position": str(shown), **info})
            earliest, _ = await hub.offsets()
            self.cursor = earliest
            return opening + self._reset_frame("position_unknown", requested, {})
        opening = head + _control("ready", shown, {"position": str(shown), **info})
        # Set before anything can fail: a final frame must never carry a position the
        # client has not reached.
        self.cursor = cursor = shown
        if hub.coverage.covers(cursor) and hub.head.covers(cursor):
            return opening  # inside what this process has read: nothing can have aged out
        earliest, end = await hub.offsets()
        reasons: list[str] = []
        lost: dict[str, int] = {}
        for partition in range(hub.partitions):
            if cursor[partition] > end[partition]:
                # Ahead of the topic's end: a position of another incarnation of the topic.
                reasons.append("position_unknown")
                cursor = cursor.with_offset(partition, earliest[partition])
            elif cursor[partition] < earliest[partition]:
                reasons.append("position_expired")
                lost[str(partition)] = earliest[partition] - cursor[partition]
                cursor = cursor.with_offset(partition, earliest[partition])
        self.cursor = cursor
        if not reasons:
            return opening
        return opening + self._reset_frame(
            "position_expired" if "position_expired" in reasons else "position_unknown",
            shown,
            lost,
        )

    def _reset_frame(self, reason: str, requested: Position, lost: dict[str, int]) -> bytes:
        self.hub.metrics.resets.inc()
        return _control(
            "reset",
            self.cursor,
            {
                "reason": reason,
                "requested": str(requested),
                "position": str(self.cursor),
                "lost": lost,
            },
        )

    async def _catch_up(self, subscriber: Subscriber) -> AsyncIterator[bytes]:
        """History, then the replay buffer, then registration for live records."""
        hub = self.hub
        batch = self.tuning.history_batch
        while True:
            ending = self._ending(subscriber)
            if ending is not None:
                yield ending
                return
            behind = [p for p in range(hub.partitions) if self.cursor[p] < hub.coverage[p]]
            if behind:
                frames = [f for p in behind for f in await self._from_history(p, batch)]
            else:
                records = hub.replay_since(self.cursor, batch)
                if not records:
                    # No await since replay_since: nothing the hub reads can be missed.
                    hub.go_live(subscriber, self.cursor)
                    return
                frames = self._frames_of(records, filtered=False)
            if frames:
                for chunk in _chunks(frames):
                    yield chunk
            elif time.monotonic() - self._last_sent >= self.tuning.heartbeat_seconds:
                yield self._heartbeat()

    async def _from_history(self, partition: int, limit: int) -> list[bytes]:
        start = self.cursor[partition]
        read = await self.hub.read_history(partition, start, limit)
        first = read.records[0].offset if read.records else read.next_offset
        frames: list[bytes] = []
        if first > start:
            # Offsets may skip Kafka's transaction markers; only a moved log start is a loss.
            earliest, _ = await self.hub.offsets()
            if earliest[partition] > start:
                requested = self.cursor
                self.cursor = self.cursor.with_offset(partition, earliest[partition])
                frames.append(
                    self._reset_frame(
                        "position_expired",
                        requested,
                        {str(partition): earliest[partition] - start},
                    )
                )
        accepts = self.selection.accepts
        for raw in read.records:
            if raw.offset < self.cursor[partition]:
                continue
            self.cursor = self.cursor.advanced(partition, raw.offset)
            record = parse_record(partition, raw.offset, raw.timestamp_ms, raw.value)
            if accepts(record):
                frames.append(record.frame_with_id(self.cursor))
        self.cursor = self.cursor.with_offset(
            partition, max(self.cursor[partition], read.next_offset)
        )
        self._aligned = False
        self._count_sent(len(frames))
        return frames

    async def _follow(self, subscriber: Subscriber) -> AsyncIterator[bytes]:
        """Live records from the hub, heartbeats when idle, a final frame when closed."""
        hub = self.hub
        pending = subscriber.pending
        heartbeat = self.tuning.heartbeat_seconds
        expires_at = self.selection.access.expires_at
        # The hub's ticker wakes the stream at `due_at` (monotonic); one shared timer is
        # cheaper than arming a timeout around every wait of every stream.
        expires_due = (
            time.monotonic() + (expires_at - time.time()) if expires_at is not None else None
        )
        while True:
            if pending:
                taken: list[StepRecord] = []
                size = 0
                while pending and size < _CHUNK_BYTES:
                    record = pending.popleft()
                    taken.append(record)
                    size += len(record.frame)
                yield b"".join(self._frames_of(taken, filtered=True))
                continue
            ending = self._ending(subscriber)
            if ending is not None:
                yield ending
                return
            due = self._last_sent + heartbeat
            if expires_due is not None:
                due = min(due, expires_due)
            if time.monotonic() < due:
                subscriber.due_at = due
                subscriber.wake.clear()
                await subscriber.wake.wait()
                continue
            # Queue empty and still live: every record read so far was sent or filtered out.
            self.cursor = self.cursor.merged(hub.head)
            yield self._heartbeat()

    # ---- frames -----------------------------------------------------------------------------

    def _frames_of(self, records: list[StepRecord], filtered: bool) -> list[bytes]:
        """Build frames for records in hub order (`filtered`: the hub applied the selection)."""
        if self._aligned and filtered:
            # The common case: every frame is the hub's own, shared by all aligned streams.
            last = records[-1].position_after
            assert last is not None
            self.cursor = last
            self._count_sent(len(records))
            return [record.frame for record in records]
        accepts = self.selection.accepts
        frames: list[bytes] = []
        for record in records:
            after = record.position_after
            assert after is not None
            wanted = filtered or accepts(record)
            if self._aligned:
                self.cursor = after
                if wanted:
                    frames.append(record.frame)
                continue
            merged = self.cursor.merged(after)
            self.cursor = merged
            if merged.offsets == after.offsets:
                self._aligned = True
                if wanted:
                    frames.append(record.frame)
            elif wanted:
                frames.append(record.frame_with_id(merged))
        self._count_sent(len(frames))
        return frames

    def _count_sent(self, count: int) -> None:
        if count:
            self.hub.metrics.events_sent.inc(count)

    def _heartbeat(self) -> bytes:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return _control("heartbeat", self.cursor, {"position": str(self.cursor), "time": now})

    def _ending(self, subscriber: Subscriber) -> bytes | None:
        """Return the final frame if the stream must end now."""
        if subscriber.closed is None and self.selection.access.expired():
            subscriber.close("token_expired")
            self.hub.metrics.clients_dropped.labels("token_expired").inc()
        if subscriber.closed is None:
            return None
        return _control("close", self.cursor, {"reason": subscriber.closed})


class StepEventResponse(EventSourceResponse):
    """An SSE response that ends quietly when a client stops reading for `send_timeout`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream; a send timeout is a client problem, logged without a traceback."""
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            logger.warning(
                "cut an SSE stream whose client read nothing for %s s", self.send_timeout
            )
