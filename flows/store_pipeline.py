"""Stages 4 and 5 overlapped with the next batch: the store's round trips run beside the worker.

With the store as a plain batch step the worker's one thread waited for each batch's writes
(a third of its time at 1,000 msg/s, py-spy) while the server worked, and the server idled
while the worker parsed the next batch. Here a batch's writes (`flows.store.ObservationStore`,
unchanged) run on a thread of their own while the worker goes on with the next batch; a batch
is emitted, with its stage 4 and 5 outcomes, when its writes have returned: at the next batch
or at a notification a few milliseconds later when no batch follows. Batches are written one
after the other, in order, on that thread; up to `VITALFLOW_STORE_IN_FLIGHT` (2) are out at
once, and the worker waits only when a further batch comes: with one, each pause of the
server (its collector, a page flush) stopped the worker too, and the messages behind it waited
for the pause and then for their own parsing (at 1,000 msg/s, five interleaved runs each,
publish -> stored p50 53-227 ms, median 102, with one; 37-183, median 56, with two; README).

What keeps the guarantees:
- Bytewax calls `snapshot` when the epoch closes, before the epoch counts as complete
  downstream and so before the MQTT source acks it (`connectors.mqtt_source`). `snapshot`
  waits for every batch in flight, so nothing is acked before it is stored.
- Written envelopes not yet emitted when the epoch closes are the step's state: they are in
  the epoch's recovery snapshot and are emitted in the next epoch, or on resume after a crash.
  Without recovery a crash at that moment would lose their step events, so `flows.pipeline`
  overlaps only when recovery is on.

With recovery on and the overlap off (`VITALFLOW_STORE_OVERLAP=false`, or a store that is
not a server), the step is the same stateful step writing inline, in the worker
(`PipelinedStore(..., overlap=False)`): a batch is emitted as soon as its writes return, and
what a snapshot taken with the overlap on held over an epoch's end (a crash, then a restart
with the overlap turned off) is still read and emitted on resume. A plain batch step there
had no state to read it into, and those messages' step events were never sent.

The state is kept under one key per worker: the de-dup key of the first envelope the worker's
thread stored. Bytewax routes every stateful step's keys with the same hash, and every envelope
reaching this step is on the worker that owns its device's de-dup key, so that key routes to
this very worker and nothing crosses between workers. (Were the routing ever different, the
envelopes would only travel to another worker: slower, still correct.)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from bytewax.operators import StatefulBatchLogic
from typing_extensions import override

from flows.deduplicate import dedup_key
from flows.model import Envelope

__all__ = ["PipelinedStore", "StoreLogic", "WorkerKey"]

# How soon to look again for a batch in flight when no new batch comes: a write of a small
# batch takes a few milliseconds, and each look is one activation of the step.
_POLL = timedelta(milliseconds=2)

Writer = Callable[[list[Envelope]], Iterable[Envelope]]


class WorkerKey:
    """The key function of the store step: one key per worker thread (the module says why)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self, envelope: Envelope) -> str:
        """Return this worker thread's store key."""
        key: str | None = getattr(self._local, "key", None)
        if key is None:
            key = self._local.key = dedup_key(envelope)
        return key


class StoreLogic(StatefulBatchLogic[Envelope, Envelope, list[Envelope]]):
    """One worker's store: batches in flight written in order, envelopes held until emitted."""

    def __init__(
        self,
        write: Callable[[list[Envelope]], Future[list[Envelope]]],
        most_in_flight: int = 2,
    ) -> None:
        self._write = write
        self._most = most_in_flight
        self._held: list[Envelope] = []
        self._in_flight: deque[Future[list[Envelope]]] = deque()

    def restore(self, held: list[Envelope]) -> None:
        """Take over envelopes a snapshot held: written, their events not yet emitted."""
        self._held = list(held)

    def _emit(self, *, keep: int | None) -> list[Envelope]:
        """Emit what is held and the written batches, in order; wait until `keep` are left.

        `keep=None` waits for none: only the batches already written (from the oldest on).
        """
        out, self._held = self._held, []
        while self._in_flight and (
            (keep is not None and len(self._in_flight) > keep) or self._in_flight[0].done()
        ):
            # An exception of the write is raised here, in the worker, as a plain batch
            # step's would have been.
            out.extend(self._in_flight.popleft().result())
        return out

    def _idle(self) -> bool:
        return not self._in_flight and not self._held

    @override
    def on_batch(self, values: list[Envelope]) -> tuple[Iterable[Envelope], bool]:
        # Wait only when `most_in_flight` batches are already out (their writes had this
        # batch's parsing to finish in): writes keep their order (one writer thread) and
        # memory holds at most that many batches and this one.
        out = self._emit(keep=self._most - 1)
        self._in_flight.append(self._write(values))
        # A write done already (inline, without the overlap) is emitted now, not at a notify.
        while self._in_flight and self._in_flight[0].done():
            out.extend(self._in_flight.popleft().result())
        return out, StatefulBatchLogic.RETAIN

    @override
    def on_notify(self) -> tuple[Iterable[Envelope], bool]:
        out = self._emit(keep=None)
        return out, self._idle()

    @override
    def on_eof(self) -> tuple[Iterable[Envelope], bool]:
        return self._emit(keep=0), StatefulBatchLogic.DISCARD

    @override
    def notify_at(self) -> datetime | None:
        if self._idle():
            return None
        return datetime.now(UTC) + _POLL

    @override
    def snapshot(self) -> list[Envelope]:
        # The epoch is closing: what it carried must be stored before it completes (and the
        # source acks it). Written envelopes are held over to the next epoch, and kept in
        # this snapshot for a resume.
        while self._in_flight:
            self._held.extend(self._in_flight.popleft().result())
        return list(self._held)


class PipelinedStore:
    """The builder of the store step: a `StoreLogic` per key, one writer thread per worker.

    With `overlap=False` a batch is written inline, in the worker, before `on_batch` returns.
    """

    def __init__(
        self, new_writer: Callable[[], Writer], most_in_flight: int = 2, *, overlap: bool = True
    ) -> None:
        self._new_writer = new_writer
        self._most_in_flight = most_in_flight
        self._overlap = overlap
        self._local = threading.local()

    def _submit(self, values: list[Envelope]) -> Future[list[Envelope]]:
        # Per worker thread: its own writer (store, connection, caches) and one thread, so a
        # worker's batches are written one after the other, in order.
        if not hasattr(self._local, "writer"):
            self._local.writer = self._new_writer()
        writer: Writer = self._local.writer
        if not self._overlap:  # a write that fails raises here, in the worker
            written: Future[list[Envelope]] = Future()
            written.set_result(list(writer(values)))
            return written
        if not hasattr(self._local, "executor"):
            self._local.executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="vitalflow-store-writer"
            )
        executor: ThreadPoolExecutor = self._local.executor
        return executor.submit(lambda: list(writer(values)))

    def __call__(self, resume: list[Envelope] | None) -> StoreLogic:
        """Build the logic of a key, with what its snapshot held on a resume."""
        logic = StoreLogic(self._submit, self._most_in_flight)
        if resume:
            logic.restore(resume)
        return logic
