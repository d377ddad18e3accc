"""Stages 4 and 5: latest vitals on the patient, then the observations, in bulk.

Each batch costs three round trips at most: one bulk of device status upserts, one bulk of
`last_vitals` updates (one conditional statement per patient and kind, only with readings
newer than what it holds: `flows.latest_vitals`), and one unordered insert of all
observations. Every write is idempotent (deterministic `_id`s,
"newer than" conditions, `$set` upserts), so re-processing after a crash or a replay changes
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from bson.errors import InvalidDocument, InvalidStringData
from pymongo import UpdateOne
from pymongo.database import Database

from flows.latest_vitals import HeldVitals, update_latest_vitals
from flows.model import SEVERITY_ORDER, Envelope, Step, StepOutcome, StepStatus
from flows.redact import redact
from flows.store_failures import STORE_FAILURES
from sinks.mongo_database import mongo_call, write_errors

__all__ = ["UNSTORABLE", "ObservationStore", "device_status_update"]

logger = logging.getLogger(__name__)

# What the driver raises, before it sends anything, for a value BSON cannot hold (a lone
# surrogate, an integer beyond 64 bits, a key it refuses). The parser keeps such values out;
# should one get past it, it is that message's error, not a reason to stop the flow, which
# would meet it again on every redelivery.
_UNENCODABLE = (InvalidDocument, InvalidStringData, UnicodeEncodeError, OverflowError)
UNSTORABLE = "unstorable_value"


class ObservationStore:
    """The writes of stages 4 and 5 for a batch.

    A `flat_map_batch` mapper, or the writer `flows.store_pipeline` runs on a thread of its
    own, one per worker.
    """

    def __init__(self, database: Callable[[], Database[dict[str, Any]]]) -> None:
        self._open = database
        self._db: Database[dict[str, Any]] | None = None
        # The three writes of a batch touch three collections and do not depend on each
        # other's results, so against a server they go out at once: the batch waits for the
        # slowest instead of the sum (measured on mongo-java-server/H2, see README).
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vitalflow-store")
        # What this worker's patients hold, as far as it knows: saves a read per batch.
        self._held = HeldVitals()

    def __call__(self, batch: list[Envelope]) -> Iterable[Envelope]:
        """Write what the batch carries and record stages 4 and 5 on each envelope."""
        try:
            return self._write(batch)
        except _UNENCODABLE as exc:
            if len(batch) > 1:
                # Which message holds it is found by writing them one by one: every write is
                # idempotent, so what the batch's attempt wrote is written again unchanged.
                logger.warning(
                    "a batch of %d messages holds a value the database cannot hold (%s); "
                    "writing them one by one",
                    len(batch),
                    type(exc).__name__,
                )
                return [done for envelope in batch for done in self([envelope])]
            return [_unstorable(batch[0], exc)]

    def _write(self, batch: list[Envelope]) -> list[Envelope]:
        db = self._database()
        ready = [i for i, e in enumerate(batch) if not e.finished and e.observations]
        envelopes = [batch[i] for i in ready]
        if isinstance(db, Database):
            status = self._pool.submit(self._write_device_status, db, batch)
            inserted = self._pool.submit(_insert_observations, db, envelopes)
            try:
                updated = self._update_patients(db, envelopes)
            finally:
                # Both end before anything else is written (after an encoding error, the
                # batch again, one message at a time); `exception()` waits without raising.
                status.exception()
                inserted.exception()
            insert_errors = inserted.result()
            status.result()
        else:
            # The demo's embedded store is not made for concurrent callers.
            self._write_device_status(db, batch)
            updated = self._update_patients(db, envelopes)
            insert_errors = _insert_observations(db, envelopes)
        # An envelope whose patient update failed ends its chain at step 4 (and is
        # dead-lettered) even if its observations went in meanwhile: a replay inserts nothing
        # twice (deterministic ids) and retries the update.
        storable = [p for p, e in enumerate(updated) if not e.finished]
        stored = _record(
            [updated[p] for p in storable],
            {n: insert_errors[p] for n, p in enumerate(storable) if p in insert_errors},
            Step.STORED,
            "store_failed",
            lambda _position, e: _stored_summary(e),
        )
        for position, envelope in zip(storable, stored, strict=True):
            updated[position] = envelope
        STORE_FAILURES.add(e.delivery.message_id for e in updated if e.failed is not None)
        return _put_back(list(batch), ready, updated)

    def _database(self) -> Database[dict[str, Any]]:
        if self._db is None:
            self._db = self._open()
        return self._db

    @staticmethod
    def _write_device_status(db: Database[dict[str, Any]], batch: list[Envelope]) -> None:
        # One upsert per device: within a batch only its latest status matters.
        latest: dict[str, dict[str, Any]] = {}
        for envelope in batch:
            update = device_status_update(envelope)
            if update is not None:
                key, fields = update
                latest[key] = fields
        if not latest:
            return
        updates = [UpdateOne({"_id": k}, {"$set": f}, upsert=True) for k, f in latest.items()]
        mongo_call(
            db,
            "device_status upsert",
            partial(db.device_status.bulk_write, updates, ordered=False),
        )

    def _update_patients(
        self, db: Database[dict[str, Any]], ready: list[Envelope]
    ) -> list[Envelope]:
        # The newest reading of each (patient, kind) in the batch: the number of writes is
        # bounded by the patients that changed, not by the traffic.
        newest: dict[tuple[str, str], dict[str, Any]] = {}
        contributors: dict[tuple[str, str], list[int]] = {}
        kinds_of: dict[int, list[str]] = {}
        for position, envelope in enumerate(ready):
            kinds = set()
            for doc in envelope.observations:
                target = (str(doc["patient_id"]), doc["kind"])
                kinds.add(doc["kind"])
                if target not in newest or doc["measured_at"] >= newest[target]["measured_at"]:
                    newest[target] = doc
                contributors.setdefault(target, []).append(position)
            kinds_of[position] = sorted(kinds)
        failures: dict[int, str] = {}
        for target, error in update_latest_vitals(db, newest, self._held).items():
            for position in contributors[target]:
                failures.setdefault(position, error)
        return _record(
            ready,
            failures,
            Step.UPDATED,
            "patient_update_failed",
            lambda position, e: {"patient_id": e.patient_id, "kinds": kinds_of[position]},
        )


def _insert_observations(db: Database[dict[str, Any]], envelopes: list[Envelope]) -> dict[int, str]:
    """Insert every observation of `envelopes`; return the first error of each, by position."""
    documents: list[dict[str, Any]] = []
    owners: list[int] = []
    for position, envelope in enumerate(envelopes):
        documents.extend(envelope.observations)
        owners.extend([position] * len(envelope.observations))
    if not documents:
        return {}
    failures = write_errors(
        db, partial(db.observations.insert_many, documents, ordered=False), "observations insert"
    )
    errors: dict[int, str] = {}
    for index, error in failures.items():
        errors.setdefault(owners[index], error)
    return errors


def device_status_update(envelope: Envelope) -> tuple[str, dict[str, Any]] | None:
    """Return the `device_status` key and the fields to `$set` for an envelope, if it has any."""
    parsed = envelope.parsed
    if parsed is None or parsed.status is None or envelope.failed is not None:
        return None
    status = parsed.status
    fields: dict[str, Any] = {
        "device_type": envelope.device_type,
        "device_id": envelope.device_id,
        "last_seen": envelope.delivery.received_at,
        "last_message_kind": parsed.message_kind,
    }
    for name in ("online", "battery", "signal"):
        value = getattr(status, name)
        if value is not None:
            fields[name] = value
    if status.details:
        fields["details"] = status.details
    return status.device_key, fields


def _unstorable(envelope: Envelope, exc: Exception) -> Envelope:
    """End `envelope`'s chain at step 4 with an error: it holds what BSON cannot encode."""
    # The type only: the driver's message may quote the value, personal data included.
    if envelope.finished:  # its chain has ended already (a status-only message, say)
        logger.error(
            "message %s: its device status holds a value the database cannot hold (%s); "
            "not written",
            envelope.delivery.message_id,
            type(exc).__name__,
        )
        return envelope
    logger.error(
        "message %s holds a value the database cannot hold (%s): not stored, dead-lettered",
        envelope.delivery.message_id,
        type(exc).__name__,
    )
    STORE_FAILURES.add([envelope.delivery.message_id])
    message = f"a value the database cannot hold ({type(exc).__name__})"
    [failed] = _record([envelope], {0: message}, Step.UPDATED, UNSTORABLE, lambda _p, _e: {})
    return failed


def _put_back(batch: list[Envelope], positions: list[int], done: list[Envelope]) -> list[Envelope]:
    for position, envelope in zip(positions, done, strict=True):
        batch[position] = envelope
    return batch


def _record(
    envelopes: list[Envelope],
    errors: dict[int, str],
    step: Step,
    error_code: str,
    summary: Callable[[int, Envelope], dict[str, Any]],
) -> list[Envelope]:
    """Append the outcome of `step` to each envelope: its first write error, or success."""
    now = datetime.now(UTC)
    result = []
    for position, envelope in enumerate(envelopes):
        if position in errors:
            outcome = StepOutcome(
                step=step,
                status=StepStatus.ERROR,
                at=now,
                error_code=error_code,
                error_message=errors[position],
            )
        else:
            outcome = StepOutcome(
                step=step,
                status=StepStatus.SUCCESS,
                at=now,
                processed_data=summary(position, envelope),
            )
        result.append(envelope.replace(outcomes=[*envelope.outcomes, outcome]))
    return result


def _stored_summary(envelope: Envelope) -> dict[str, Any]:
    observations = [
        {
            "id": d["_id"],
            "kind": d["kind"],
            "values": redact(d["values"]),  # free texts, as at step 2
            "flags": d.get("flags", []),
            "severity": d.get("severity", "normal"),
        }
        for d in envelope.observations
    ]
    severity = max(
        (o["severity"] for o in observations),
        key=lambda s: SEVERITY_ORDER.index(s) if s in SEVERITY_ORDER else 0,
        default="normal",
    )
    return {
        "observations": observations,
        "count": len(observations),
        "severity": severity,
        "alert": any(d.get("alert", False) for d in envelope.observations),
    }
