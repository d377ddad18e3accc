"""Which events a request asked for (its filters) intersected with what its token may see.

Each filter takes one or more values (repeated parameters or a comma list) and an event must
match one value of every filter given. A filter that names a hospital or patient outside the
token's scope is refused (403) rather than silently narrowed, so a caller learns about it;
a `patient_id` filter is accepted for a hospital-scoped token because the API cannot know a
patient's hospital before seeing an event, and the scope still applies to every event sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.auth import Access
from api.records import StepRecord
from flows.model import Step, StepStatus

__all__ = ["STATUSES", "STEPS", "EventFilter", "OutOfScopeError", "Selection", "split_values"]

STEPS = tuple(str(step) for step in Step)
STATUSES = tuple(str(status) for status in StepStatus)


class OutOfScopeError(Exception):
    """A filter asks for events the token may not see (an HTTP 403)."""


def split_values(values: list[str] | None) -> frozenset[str] | None:
    """Flatten repeated and comma-separated query values; None when nothing was given."""
    if not values:
        return None
    found = frozenset(v.strip() for value in values for v in value.split(",") if v.strip())
    return found or None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """The filters of one request; None means "any"."""

    device_types: frozenset[str] | None = None
    device_ids: frozenset[str] | None = None
    patient_ids: frozenset[str] | None = None
    hospital_ids: frozenset[str] | None = None
    steps: frozenset[str] | None = None
    statuses: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        """True when no filter was given."""
        return all(
            value is None
            for value in (
                self.device_types,
                self.device_ids,
                self.patient_ids,
                self.hospital_ids,
                self.steps,
                self.statuses,
            )
        )

    def matches(self, record: StepRecord) -> bool:
        """Whether the record passes every filter."""
        return (
            (self.steps is None or record.step in self.steps)
            and (self.statuses is None or record.status in self.statuses)
            and (self.device_types is None or record.device_type in self.device_types)
            and (self.device_ids is None or record.device_id in self.device_ids)
            and (self.patient_ids is None or record.patient_id in self.patient_ids)
            and (self.hospital_ids is None or record.hospital_id in self.hospital_ids)
        )

    def check_scope(self, access: Access) -> None:
        """Raise `OutOfScopeError` for a filter naming what the token may not see."""
        if access.everything:
            return
        if self.hospital_ids is not None:
            outside = self.hospital_ids - access.hospitals
            if outside:
                msg = f"the token does not grant {len(outside)} of the requested hospitals"
                raise OutOfScopeError(msg)
        if self.patient_ids is not None and not access.hospitals:
            outside = self.patient_ids - access.patients
            if outside:
                msg = f"the token does not grant {len(outside)} of the requested patients"
                raise OutOfScopeError(msg)


@dataclass(frozen=True, slots=True)
class Selection:
    """A request's filters and its token's access: what one stream or query may carry."""

    access: Access
    filter: EventFilter

    def accepts(self, record: StepRecord) -> bool:
        """Whether the record may be sent and was asked for."""
        return (
            record.valid
            and self.access.can_see(record.patient_id, record.hospital_id)
            and self.filter.matches(record)
        )
