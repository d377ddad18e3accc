"""Reading stored observations back: pages newest first, bucketed summaries, their indexes.

Pages are ordered by `(measured_at, _id)` descending, a total order (`_id` is unique), and a
`HistoryCursor` is the position of the last reading handed out: the next page starts strictly
after it. A reading stored while a client pages through is therefore never repeated, and
never skipped when it sorts after the cursor (an old reading delivered late); one that sorts
before the cursor (newer than the pages already read) is found by asking for the first page
again.

Summaries are computed by the database with one aggregation pipeline. Buckets start at whole
multiples of the bucket width since the Unix epoch (UTC), computed as
`measured_at - (toLong(measured_at) mod width)`: `$dateTrunc` would read better but the
MongoDB-wire server the tests run on (mongo-java-server) lacks it, while `$toLong`, `$mod`
and date-minus-number are shared by MongoDB 6+ and it. The embedded store of the demo
(montydb) has no aggregation at all, and a server may refuse an operator (FerretDB 1.x has
no `$subtract` in `$group`): there `summarise` falls back to the same arithmetic in Python,
logs why, and says so in its result (`computed_in="api"`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import OperationFailure

from flows.codes_and_flags import CODINGS
from flows.model import ObservationKind

__all__ = [
    "HISTORY_INDEXES",
    "BucketSummary",
    "HistoryCursor",
    "IndexSpec",
    "InvalidCursorError",
    "ObservationQuery",
    "SummaryResult",
    "ValueStats",
    "ensure_history_indexes",
    "find_observations",
    "summarise",
    "summary_pipeline",
    "summary_values",
]

logger = logging.getLogger(__name__)

Document = dict[str, Any]


@dataclass(frozen=True)
class IndexSpec:
    """One secondary index: the collection, its keys in order, and the query it serves."""

    collection: str
    keys: tuple[tuple[str, int], ...]
    serves: str

    @property
    def name(self) -> str:
        """The index name MongoDB would give it (`patient_id_1_measured_at_-1_...`)."""
        return "_".join(f"{key}_{direction}" for key, direction in self.keys)


HISTORY_INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec(
        "observations",
        (("patient_id", ASCENDING), ("measured_at", DESCENDING), ("_id", DESCENDING)),
        "GET /patients/{id}/observations without kind, newest first; FHIR search without code",
    ),
    IndexSpec(
        "observations",
        (
            ("patient_id", ASCENDING),
            ("kind", ASCENDING),
            ("measured_at", DESCENDING),
            ("_id", DESCENDING),
        ),
        "GET /patients/{id}/observations?kind=, .../summary, FHIR search with code",
    ),
    IndexSpec(
        "observations",
        (("patient_id", ASCENDING), ("received_at", ASCENDING)),
        "vitalflow fhir export --since (stored since)",
    ),
    IndexSpec(
        "patients",
        (("hospital_id", ASCENDING),),
        "GET /patients for hospital-scoped tokens; fhir export --hospital",
    ),
    IndexSpec("devices", (("patient_id", ASCENDING),), "the devices of the listed patients"),
    IndexSpec(
        "observations",
        (("alert", ASCENDING), ("measured_at", DESCENDING), ("_id", DESCENDING)),
        "GET /alerts: the alerting observations, newest first",
    ),
)


def ensure_history_indexes(db: Database[Document]) -> list[str]:
    """Create the history indexes (a no-op for those that exist); return their names.

    Stores without `create_index` (the demo's embedded store, which scans anyway) get none,
    and the empty list says so.
    """
    created: list[str] = []
    for spec in HISTORY_INDEXES:
        collection = db[spec.collection]
        create = getattr(collection, "create_index", None)
        if create is None:
            logger.info("the store has no secondary indexes; history queries scan")
            return []
        created.append(create(list(spec.keys), name=spec.name))
    return created


class InvalidCursorError(ValueError):
    """A cursor that this API did not hand out (an HTTP 422)."""


@dataclass(frozen=True)
class HistoryCursor:
    """The position after which the next page starts: a reading's `(measured_at, _id)`."""

    measured_at_ms: int
    observation_id: str

    @classmethod
    def after(cls, doc: Mapping[str, Any]) -> HistoryCursor:
        """Return the position of a stored observation document."""
        return cls(_epoch_ms(doc["measured_at"]), str(doc["_id"]))

    def encode(self) -> str:
        """Return the opaque, URL-safe text a client passes back as `cursor`."""
        raw = json.dumps([self.measured_at_ms, self.observation_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> HistoryCursor:
        """Read a cursor; raise `InvalidCursorError` for anything `encode` did not make."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            value = json.loads(raw)
        except (binascii.Error, ValueError, RecursionError) as exc:
            msg = "malformed cursor: pass back the next_cursor of a previous page unchanged"
            raise InvalidCursorError(msg) from exc
        if (
            not isinstance(value, list)
            or len(value) != len(("measured_at", "_id"))
            or not isinstance(value[0], int)
            or isinstance(value[0], bool)
            or not _MIN_MS <= value[0] <= _MAX_MS
            or not isinstance(value[1], str)
            # An `_id` is text BSON can hold: a lone surrogate is none (a 500, before this).
            or not _encodable(value[1])
        ):
            msg = "malformed cursor: pass back the next_cursor of a previous page unchanged"
            raise InvalidCursorError(msg)
        return cls(value[0], value[1])

    @property
    def measured_at(self) -> datetime:
        """The position's time, as the BSON date it was read from."""
        return _EPOCH + timedelta(milliseconds=self.measured_at_ms)


@dataclass(frozen=True)
class ObservationQuery:
    """Which observations of which patients: kinds, and a `[start, end)` window on `measured_at`."""

    patient_ids: tuple[str, ...]
    kinds: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None

    def filter(self) -> Document:
        """Return the MongoDB filter."""
        query: Document = {
            "patient_id": self.patient_ids[0]
            if len(self.patient_ids) == 1
            else {"$in": list(self.patient_ids)}
        }
        if self.kinds:
            query["kind"] = self.kinds[0] if len(self.kinds) == 1 else {"$in": list(self.kinds)}
        window: Document = {}
        if self.start is not None:
            window["$gte"] = self.start
        if self.end is not None:
            window["$lt"] = self.end
        if window:
            query["measured_at"] = window
        return query


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What a cursor's time may be: a date Python holds (a tampered one would overflow `timedelta`).
_MIN_MS = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
_MAX_MS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
_NEWEST_FIRST = [("measured_at", DESCENDING), ("_id", DESCENDING)]


def find_observations(
    db: Database[Document], query: ObservationQuery, limit: int, after: HistoryCursor | None
) -> tuple[list[Document], HistoryCursor | None]:
    """Return up to `limit` observations newest first, after `after`, and the next cursor.

    The next cursor is None when this page is the last one.
    """
    condition = query.filter()
    if after is not None:
        at = after.measured_at
        position = {
            "$or": [
                {"measured_at": {"$lt": at}},
                {"measured_at": at, "_id": {"$lt": after.observation_id}},
            ]
        }
        condition = {"$and": [condition, position]}
    # One more than asked tells whether there is a next page without a count.
    docs = list(db.observations.find(condition).sort(_NEWEST_FIRST).limit(limit + 1))
    if len(docs) <= limit:
        return docs, None
    page = docs[:limit]
    return page, HistoryCursor.after(page[-1])


def summary_values(kind: str) -> tuple[str, ...]:
    """Return the numeric values summarised for a kind: those with a LOINC code."""
    coding = CODINGS.get(ObservationKind(kind))
    return tuple(coding.components) if coding else ()


@dataclass(frozen=True)
class ValueStats:
    """Minimum, mean and maximum of one value in one bucket."""

    min: float
    mean: float
    max: float


@dataclass(frozen=True)
class BucketSummary:
    """The readings of one bucket: how many, and the statistics of each value."""

    start: datetime
    count: int
    values: dict[str, ValueStats] = field(default_factory=dict)


@dataclass(frozen=True)
class SummaryResult:
    """A summary's buckets (oldest first), and whether the database or the API computed it."""

    buckets: list[BucketSummary]
    computed_in: Literal["database", "api"]


# NotImplemented, InvalidPipelineOperator: a server without one of the pipeline's operators.
_UNSUPPORTED_CODES = frozenset({238, 168})


def _group_field(value: str, statistic: str) -> str:
    return f"{value}__{statistic}"


def summary_pipeline(query: ObservationQuery, width: timedelta) -> list[Document]:
    """Return the aggregation pipeline of a summary (one kind) in buckets of `width`."""
    width_ms = int(width.total_seconds() * 1000)
    group: Document = {
        "_id": {"$subtract": ["$measured_at", {"$mod": [{"$toLong": "$measured_at"}, width_ms]}]},
        "count": {"$sum": 1},
    }
    for value in summary_values(query.kinds[0]):
        source = f"$values.{value}"
        group[_group_field(value, "min")] = {"$min": source}
        group[_group_field(value, "mean")] = {"$avg": source}
        group[_group_field(value, "max")] = {"$max": source}
    return [{"$match": query.filter()}, {"$group": group}, {"$sort": {"_id": ASCENDING}}]


def summarise(db: Database[Document], query: ObservationQuery, width: timedelta) -> SummaryResult:
    """Summarise one kind's readings in buckets of `width`, in the database where it can."""
    values = summary_values(query.kinds[0])
    aggregate = getattr(db.observations, "aggregate", None)
    if aggregate is None:
        logger.info("summary computed in the API: the store has no aggregation pipeline")
        return SummaryResult(_summarise_in_python(db, query, width, values), "api")
    try:
        rows = list(aggregate(summary_pipeline(query, width)))
    except OperationFailure as exc:
        if exc.code not in _UNSUPPORTED_CODES:
            raise
        logger.warning("summary computed in the API: the server refused the pipeline: %s", exc)
        return SummaryResult(_summarise_in_python(db, query, width, values), "api")
    buckets = []
    for row in rows:
        stats = {}
        for value in values:
            low, mean, high = (row.get(_group_field(value, s)) for s in ("min", "mean", "max"))
            if _number(low) and _number(mean) and _number(high):
                stats[value] = ValueStats(float(low), float(mean), float(high))
        buckets.append(BucketSummary(_as_utc(row["_id"]), int(row["count"]), stats))
    return SummaryResult(buckets, "database")


def _summarise_in_python(
    db: Database[Document], query: ObservationQuery, width: timedelta, values: Iterable[str]
) -> list[BucketSummary]:
    """Compute the buckets of `summary_pipeline` in Python, for a store without aggregation."""
    width_ms = int(width.total_seconds() * 1000)
    counts: dict[int, int] = {}
    numbers: dict[int, dict[str, list[float]]] = {}
    for doc in db.observations.find(query.filter(), {"measured_at": 1, "values": 1}):
        millis = _epoch_ms(doc["measured_at"])
        start = millis - millis % width_ms
        counts[start] = counts.get(start, 0) + 1
        held = doc.get("values") or {}
        for value in values:
            number = held.get(value)
            if isinstance(number, int | float) and not isinstance(number, bool):
                numbers.setdefault(start, {}).setdefault(value, []).append(float(number))
    return [
        BucketSummary(
            _EPOCH + timedelta(milliseconds=start),
            counts[start],
            {
                value: ValueStats(min(found), sum(found) / len(found), max(found))
                for value, found in numbers.get(start, {}).items()
            },
        )
        for start in sorted(counts)
    ]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _epoch_ms(moment: datetime) -> int:
    # BSON dates hold milliseconds: a position finer than that would never match its document.
    return (_as_utc(moment) - _EPOCH) // timedelta(milliseconds=1)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
