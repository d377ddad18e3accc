"""GET /patients/{id}/observations (pages, newest first) and .../summary (trend buckets).

Same scopes as the stream (`api.history_access.readable_patient`). Times in queries are ISO
8601; one without an offset is taken as UTC. The window is `from` inclusive, `to` exclusive.
Bad input is a 422 whose `detail` names the parameter and says what is wrong.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from pymongo.database import Database

from api.history_access import get_database, readable_patient, store_errors
from api.query_times import as_utc, invalid_parameter
from flows.model import ObservationKind
from sinks.observation_history import (
    HistoryCursor,
    InvalidCursorError,
    ObservationQuery,
    find_observations,
    summarise,
)

__all__ = [
    "MAX_BUCKETS",
    "MAX_LIMIT",
    "Flag",
    "Observation",
    "ObservationPage",
    "ObservationSummary",
    "SummaryBucket",
    "ValueSummary",
    "router",
]

MAX_LIMIT = 1000
MAX_BUCKETS = 5000
_DEFAULT_SUMMARY_WINDOW = timedelta(hours=24)
_BUCKET = re.compile(r"^([0-9]+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

router = APIRouter(tags=["history"])

Document = dict[str, Any]


class Flag(BaseModel):
    """A clinical flag raised by a reading (thresholds or an emergency)."""

    code: str
    severity: str
    message: str


class Observation(BaseModel):
    """One stored reading (DESIGN.md, "MongoDB"), as the history API returns it."""

    id: str = Field(description="The deterministic id (message fingerprint : reading index)")
    patient_id: str
    hospital_id: str | None = None
    kind: ObservationKind
    device_type: str
    device_id: str
    sub_device: str | None = None
    measured_at: datetime
    device_time: datetime | None = None
    received_at: datetime
    values: dict[str, Any]
    attributes: dict[str, Any] = Field(default_factory=dict)
    code: dict[str, Any] | None = Field(default=None, description="LOINC coding of the kind")
    components: dict[str, Any] = Field(
        default_factory=dict, description="Per value: value, UCUM unit, LOINC code"
    )
    flags: list[Flag] = Field(default_factory=list)
    severity: str = "normal"
    alert: bool = False

    @classmethod
    def from_document(cls, doc: Document) -> Observation:
        """Build from a stored `observations` document."""
        fields = {k: v for k, v in doc.items() if k != "_id" and k in cls.model_fields}
        return cls(id=str(doc["_id"]), **fields)


class ObservationPage(BaseModel):
    """One page of a patient's readings, newest first."""

    patient_id: str
    items: list[Observation]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page"
    )


class ValueSummary(BaseModel):
    """Minimum, mean and maximum of one value over a bucket."""

    min: float
    mean: float
    max: float


class SummaryBucket(BaseModel):
    """The readings whose `measured_at` falls in `[start, start + bucket)`."""

    start: datetime
    count: int
    values: dict[str, ValueSummary]


class ObservationSummary(BaseModel):
    """One kind's readings in buckets of equal width (oldest first; empty buckets left out)."""

    patient_id: str
    kind: ObservationKind
    bucket: str
    from_: datetime = Field(alias="from")
    to: datetime
    computed_in: Literal["database", "api"] = Field(
        description="`database`: an aggregation pipeline; `api`: the store has none (the "
        "demo's embedded store) and the API computed the same buckets itself"
    )
    buckets: list[SummaryBucket]


def _window(
    start: datetime | None, end: datetime | None
) -> tuple[datetime | None, datetime | None]:
    start, end = as_utc("from", start), as_utc("to", end)
    _check_order(start, end)
    return start, end


def _check_order(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start > end:
        msg = f"from ({start.isoformat()}) is after to ({end.isoformat()})"
        raise invalid_parameter("from", msg)


def _bucket_width(bucket: str) -> timedelta:
    match = _BUCKET.match(bucket)
    # Twelve digits are wider than any window in any unit; past 4,300 `int` refuses them (a
    # 500, before this).
    if match is None or len(match.group(1)) > 12 or int(match.group(1)) == 0:
        msg = f"bucket {bucket!r} is not a width like 30s, 15m, 1h or 1d"
        raise invalid_parameter("bucket", msg)
    try:
        return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    except OverflowError:
        msg = f"bucket {bucket!r} is wider than any window: use a narrower bucket"
        raise invalid_parameter("bucket", msg) from None


FromQuery = Annotated[
    datetime | None,
    Query(alias="from", description="Only readings measured at or after (ISO 8601; UTC if naive)"),
]
ToQuery = Annotated[
    datetime | None, Query(alias="to", description="Only readings measured before (ISO 8601)")
]


@router.get(
    "/patients/{patient_id}/observations",
    summary="A patient's readings, newest first, in pages (cursor on measured_at and id)",
    response_model=ObservationPage,
    responses={
        401: {"description": "Token missing, malformed, badly signed or expired"},
        403: {"description": "The patient is outside the token's scope"},
        404: {"description": "No such patient"},
        422: {"description": "Unknown kind, from after to, malformed cursor or limit too big"},
        503: {"description": "The observation store is unreachable"},
    },
)
def patient_observations(
    patient: Annotated[Document, Depends(readable_patient)],
    db: Annotated[Database[Document], Depends(get_database)],
    kind: Annotated[ObservationKind | None, Query(description="Only this kind")] = None,
    start: FromQuery = None,
    end: ToQuery = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Page size, at most {MAX_LIMIT}")
    ] = 100,
    cursor: Annotated[
        str | None, Query(description="The `next_cursor` of the previous page")
    ] = None,
) -> ObservationPage:
    """Page through the readings; a reading stored meanwhile is never repeated or skipped."""
    start, end = _window(start, end)
    try:
        after = HistoryCursor.decode(cursor) if cursor is not None else None
    except InvalidCursorError as exc:
        raise invalid_parameter("cursor", str(exc)) from None
    query = ObservationQuery((patient["_id"],), (str(kind),) if kind else (), start, end)
    with store_errors():
        docs, following = find_observations(db, query, limit, after)
    return ObservationPage(
        patient_id=patient["_id"],
        items=[Observation.from_document(doc) for doc in docs],
        next_cursor=following.encode() if following else None,
    )


@router.get(
    "/patients/{patient_id}/observations/summary",
    summary="Min, mean, max and count of one kind's values per time bucket (for trend charts)",
    response_model=ObservationSummary,
    response_model_by_alias=True,
    responses={
        401: {"description": "Token missing, malformed, badly signed or expired"},
        403: {"description": "The patient is outside the token's scope"},
        404: {"description": "No such patient"},
        422: {"description": "Unknown kind, from after to, bad bucket, too many buckets"},
        503: {"description": "The observation store is unreachable"},
    },
)
def patient_observation_summary(
    patient: Annotated[Document, Depends(readable_patient)],
    db: Annotated[Database[Document], Depends(get_database)],
    kind: Annotated[ObservationKind, Query(description="The kind to summarise")],
    start: FromQuery = None,
    end: ToQuery = None,
    bucket: Annotated[
        str, Query(description="Bucket width: <n>s, <n>m, <n>h or <n>d; aligned to UTC epoch")
    ] = "1h",
) -> ObservationSummary:
    """Summarise in the database; the window defaults to the 24 hours before `to` (or now)."""
    # Ordered once `to` has its default: a `from` in the future is after it too.
    end = as_utc("to", end) or datetime.now(UTC)
    start = as_utc("from", start)
    _check_order(start, end)
    width = _bucket_width(bucket)
    if start is None:
        try:
            start = end - _DEFAULT_SUMMARY_WINDOW
        except OverflowError:
            msg = f"to ({end.isoformat()}) leaves no room for the default 24 h: give from too"
            raise invalid_parameter("to", msg) from None
    if (end - start) / width > MAX_BUCKETS:
        msg = f"from..to spans more than {MAX_BUCKETS} buckets of {bucket}: use a wider bucket"
        raise invalid_parameter("bucket", msg)
    query = ObservationQuery((patient["_id"],), (str(kind),), start, end)
    with store_errors():
        result = summarise(db, query, width)
    return ObservationSummary.model_validate(
        {
            "patient_id": patient["_id"],
            "kind": kind,
            "bucket": bucket,
            "from": start,
            "to": end,
            "computed_in": result.computed_in,
            "buckets": [
                {
                    "start": b.start,
                    "count": b.count,
                    "values": {
                        name: {"min": s.min, "mean": s.mean, "max": s.max}
                        for name, s in b.values.items()
                    },
                }
                for b in result.buckets
            ],
        }
    )
