"""Stateful de-duplication keyed by device: a redelivered copy is reported and not stored twice.

Each device keeps an insertion-ordered map of recent message ids (fingerprints of topic and
payload bytes) with when each was first seen and how often. Entries expire after a TTL and the
map is capped, so memory is bounded by devices x cap; a device's state is dropped once empty.
Bytewax recovery snapshots the state at each epoch, so it survives restarts.

Only messages that go on to be stored (or that update a device's status) are remembered: a
copy whose first delivery ended in an error was never stored, so it is processed again (this
is what makes dead-letter replay work without any marker on the replayed message).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bytewax.operators import StatefulLogic
from typing_extensions import override

from flows.model import Envelope, Step, StepOutcome, StepStatus

__all__ = ["DedupLogic", "DedupState", "dedup_builder", "device_key"]

DUPLICATE = "duplicate"

# message_id -> (first seen, POSIX seconds; deliveries seen so far)
DedupState = dict[str, tuple[float, int]]


def device_key(envelope: Envelope) -> str:
    """Return the de-dup key of a message: its device, as `<device_type>/<device_id>`."""
    return f"{envelope.device_type}/{envelope.device_id}"


@dataclass
class DedupLogic(StatefulLogic[Envelope, Envelope, DedupState]):
    """The de-dup state of one device, with TTL expiry and a size cap."""

    seen: DedupState
    ttl: timedelta
    max_entries: int

    @override
    def on_item(self, value: Envelope) -> tuple[list[Envelope], bool]:
        if value.failed is not None:
            return [value], self._is_empty()
        message_id = value.delivery.message_id
        now = value.delivery.received_at.timestamp()
        entry = self.seen.get(message_id)
        if entry is not None and now - entry[0] <= self.ttl.total_seconds():
            count = entry[1] + 1
            self.seen[message_id] = (entry[0], count)
            return [_as_duplicate(value, count)], False
        self.seen.pop(message_id, None)
        self.seen[message_id] = (now, 1)
        while len(self.seen) > self.max_entries:
            del self.seen[next(iter(self.seen))]
        return [value], False

    @override
    def on_notify(self) -> tuple[list[Envelope], bool]:
        horizon = datetime.now(UTC).timestamp() - self.ttl.total_seconds()
        # Insertion order is first-seen order, so expired entries sit at the front.
        while self.seen:
            oldest = next(iter(self.seen))
            if self.seen[oldest][0] > horizon:
                break
            del self.seen[oldest]
        return [], self._is_empty()

    @override
    def notify_at(self) -> datetime | None:
        if not self.seen:
            return None
        first_seen = self.seen[next(iter(self.seen))][0]
        return datetime.fromtimestamp(first_seen, UTC) + self.ttl

    @override
    def snapshot(self) -> DedupState:
        return dict(self.seen)

    def _is_empty(self) -> bool:
        return not self.seen


def dedup_builder(ttl: timedelta, max_entries: int) -> Callable[[DedupState | None], DedupLogic]:
    """Return the builder `op.stateful` calls for each device, fresh or resumed."""

    def build(resume_state: DedupState | None) -> DedupLogic:
        return DedupLogic(dict(resume_state or {}), ttl, max_entries)

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
    return replace(
        envelope,
        outcomes=[received, skipped],
        parsed=None,
        patient_id=None,
        hospital_id=None,
        observations=[],
        delivery_number=count,
    )
