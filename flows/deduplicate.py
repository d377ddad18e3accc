"""Stateful de-duplication keyed by device: a redelivered copy is reported and not stored twice.

Each device keeps a window of recent message ids (fingerprints of topic and payload bytes) in
first-seen order: when each was first seen, how many deliveries came, and whether one of them
went on to be stored. Entries expire after a TTL and the window is capped, so memory is
bounded by devices x cap; a device's state is dropped once empty. Bytewax recovery snapshots
the state at each epoch, so it survives restarts, and a delivery re-processed after a crash
gets the same number (so its events keep their ids). The window keeps itself encoded
(`flows.dedup_window`): a snapshot of a full one is a copy of bytes, not a pickled dict.

A copy is a duplicate only if an earlier delivery went on to be stored (or updated a device's
status): a copy whose earlier deliveries all ended in an error is processed again, an error
of the store's own writes included (the store reports it back: `flows.store_failures`). A copy
sent by `vitalflow dlq replay` is never a duplicate, whatever the state says, because the letter
proves that delivery was not stored: its first pass may have failed at step 4 or 5, after this
stage had remembered it. Storing is idempotent (deterministic `_id`s), so letting a copy
through can never double a record. Every delivery gets its own number, and with it event ids of
its own; a replay numbers on from the delivery it replays, even after the TTL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bytewax.operators import StatefulLogic
from typing_extensions import override

from flows.dedup_window import DedupWindow, Entry
from flows.flow_metrics import DEDUP_DEVICES, DEDUP_ENTRIES
from flows.model import Envelope, Step, StepOutcome, StepStatus
from flows.store_failures import STORE_FAILURES

__all__ = ["DedupLogic", "DedupState", "dedup_builder", "dedup_key"]

DUPLICATE = "duplicate"

# What the step snapshots: a `DedupWindow`'s bytes. Releases before it snapshotted a dict of
# message_id -> (first seen, POSIX seconds; deliveries numbered so far; whether one was
# stored), and before that pairs, all of stored messages; both resume.
DedupState = bytes | dict[str, tuple[float, int, bool] | tuple[float, int]]


def dedup_key(envelope: Envelope) -> str:
    """Return the de-dup key of a message: its device, as `<device_type>/<device_id>`."""
    return f"{envelope.device_type}/{envelope.device_id}"


@dataclass
class DedupLogic(StatefulLogic[Envelope, Envelope, DedupState]):
    """The de-dup state of one device, with TTL expiry and a size cap."""

    seen: DedupWindow
    ttl: timedelta
    max_entries: int

    @override
    def on_item(self, value: Envelope) -> tuple[list[Envelope], bool]:
        before = len(self.seen)
        result = self._deliver(value)
        DEDUP_ENTRIES.inc(len(self.seen) - before)
        return result

    def _deliver(self, value: Envelope) -> tuple[list[Envelope], bool]:
        message_id = value.delivery.message_id
        now = value.delivery.received_at.timestamp()
        entry = self.seen.get(message_id)
        if entry is not None and now - entry[0] > self.ttl.total_seconds():
            self.seen.remove(message_id)
            entry = None
        first_seen, earlier = (entry[0], entry[1]) if entry is not None else (now, 0)
        # Counted as stored when it went on to be; not if its writes then failed.
        stored = _was_stored(entry) and not STORE_FAILURES.forget(message_id)
        number = max(earlier, value.delivery.replay_of or 0) + 1
        if stored and value.delivery.replay_of is None and value.failed is None:
            self.seen.put(message_id, first_seen, number, True)
            return [_as_duplicate(value, number)], False
        # A delivery that failed before this stage is remembered too, so a later copy gets a
        # number (and event ids) of its own; it does not make that copy a duplicate.
        will_store = value.failed is None
        self.seen.put(message_id, first_seen, number, stored or will_store)
        if entry is None and len(self.seen) > self.max_entries:
            self.seen.drop_oldest(len(self.seen) - self.max_entries)
        return [value.replace(delivery_number=number)], False

    @override
    def on_notify(self) -> tuple[list[Envelope], bool]:
        horizon = datetime.now(UTC).timestamp() - self.ttl.total_seconds()
        # Insertion order is first-seen order, so expired entries sit at the front.
        DEDUP_ENTRIES.dec(self.seen.expire(horizon))
        if self._is_empty():
            DEDUP_DEVICES.dec()
        return [], self._is_empty()

    @override
    def notify_at(self) -> datetime | None:
        oldest = self.seen.oldest()
        if oldest is None:
            return None
        return datetime.fromtimestamp(oldest[1], UTC) + self.ttl

    @override
    def snapshot(self) -> DedupState:
        return self.seen.snapshot()

    def _is_empty(self) -> bool:
        return not self.seen


def _was_stored(entry: Entry | None) -> bool:
    return entry is not None and entry[2]


def dedup_builder(ttl: timedelta, max_entries: int) -> Callable[[DedupState | None], DedupLogic]:
    """Return the builder `op.stateful` calls for each device, fresh or resumed."""

    def build(resume_state: DedupState | None) -> DedupLogic:
        seen = DedupWindow.restore(resume_state)
        DEDUP_DEVICES.inc()
        DEDUP_ENTRIES.inc(len(seen))
        return DedupLogic(seen, ttl, max_entries)

    return build


def _as_duplicate(envelope: Envelope, count: int) -> Envelope:
    received = envelope.outcomes[0]
    skipped = StepOutcome(
        step=Step.PARSED,
        status=StepStatus.SKIPPED,
        at=envelope.outcomes[1].at if len(envelope.outcomes) > 1 else received.at,
        reason=DUPLICATE,
        processed_data={"delivery": count},
    )
    return envelope.replace(
        outcomes=[received, skipped],
        parsed=None,
        patient_id=None,
        hospital_id=None,
        observations=[],
        reading_patients=(),
        delivery_number=count,
    )
