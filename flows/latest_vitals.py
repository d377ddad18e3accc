"""Stage 4's write: `patients.last_vitals.<kind>` moves to the newest reading, never back.

Writes cost by the statement (mongo-java-server's H2 backend rewrites the whole patient
document for each), so the common case costs one read and one statement per patient, not one
per (patient, kind): the batch reads what its patients hold (one `$in` query), then `$set`s
every kind a patient has a newer reading of, guarded by the `measured_at` values it read. If
another writer changed a patient in between (a second worker, a replay), its guard misses;
the server does not say which did, so every target of the batch is then written again by one
conditional statement per (patient, kind), which needs no read and cannot move a kind back
(the server applies each statement to its document atomically, as MongoDB does). Both rounds
are idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from sinks.mongo_database import log_write_errors, mongo_call, write_errors

__all__ = ["HeldVitals", "conditional_update", "latest_vitals", "update_latest_vitals"]

Target = tuple[str, str]  # (patient_id, kind)


def latest_vitals(doc: dict[str, Any]) -> dict[str, Any]:
    """Return what `patients.last_vitals.<kind>` holds of an observation."""
    return {
        "observation_id": doc["_id"],
        "measured_at": doc["measured_at"],
        "values": doc["values"],
        "severity": doc.get("severity", "normal"),
        "device_type": doc["device_type"],
    }


class HeldVitals:
    """What a worker last knew its patients to hold, so that most batches need no read.

    It can only be stale when another writer (a second worker, a replay) changed a patient
    meanwhile: the guard built from it then misses, the conditional statements settle the
    batch, and what the batch's patients hold is read again next time.
    """

    def __init__(self, max_patients: int = 100_000) -> None:
        self._known: dict[str, dict[str, datetime]] = {}
        self._max = max_patients

    def of(
        self, db: Database[dict[str, Any]], patients: list[str]
    ) -> dict[str, dict[str, datetime]]:
        """Return what each existing patient holds, reading only those not known yet."""
        unknown = [p for p in patients if p not in self._known]
        if unknown:
            if len(self._known) + len(unknown) > self._max:
                self._known.clear()
            self._known.update(_held(db, unknown))
        return {p: self._known[p] for p in patients if p in self._known}

    def wrote(self, patient: str, kinds: dict[str, dict[str, Any]]) -> None:
        """Remember that `patient` now holds these readings."""
        held = dict(self._known.get(patient, {}))
        for kind, doc in kinds.items():
            held[kind] = _bson_time(doc["measured_at"])
        self._known[patient] = held

    def forget(self, patients: list[str]) -> None:
        """Read these patients again next time."""
        for patient in patients:
            self._known.pop(patient, None)


def update_latest_vitals(
    db: Database[dict[str, Any]],
    newest: dict[Target, dict[str, Any]],
    known: HeldVitals | None = None,
) -> dict[Target, str]:
    """Point each target at its observation in `newest` unless the patient holds a newer one.

    Returns the write errors by target. A patient that does not exist is left alone, as a
    conditional update would. `known` carries what earlier batches wrote (a fresh one reads
    every patient first).
    """
    if not newest:
        return {}
    known = known or HeldVitals()
    by_patient: dict[str, dict[str, dict[str, Any]]] = {}
    for (patient, kind), doc in newest.items():
        by_patient.setdefault(patient, {})[kind] = doc
    held = known.of(db, list(by_patient))
    newer_of: dict[str, dict[str, dict[str, Any]]] = {}
    patients: list[str] = []
    operations: list[UpdateOne] = []
    for patient, kinds in by_patient.items():
        if patient not in held:
            continue
        newer = {k: d for k, d in kinds.items() if _is_newer(d["measured_at"], held[patient], k)}
        if newer:
            patients.append(patient)
            newer_of[patient] = newer
            operations.append(_guarded_update(patient, newer, held[patient]))
    if not operations:
        return {}
    matched, errors = _guarded_write(db, operations)
    failures = {
        (patients[i], kind): error
        for i, error in errors.items()
        for kind in by_patient[patients[i]]
    }
    if matched == len(operations) - len(errors):
        for index, patient in enumerate(patients):
            if index not in errors:
                known.wrote(patient, newer_of[patient])
    else:
        known.forget(list(by_patient))
        # A guard missed: someone wrote in between. One statement per kind settles it.
        retry = {t: d for t, d in newest.items() if t not in failures and t[0] in held}
        order = list(retry)
        statements = [conditional_update(p, k, retry[p, k]) for p, k in order]
        write = partial(db.patients.bulk_write, statements, ordered=False)
        for index, error in write_errors(db, write, "patients update").items():
            failures[order[index]] = error
    return failures


def conditional_update(patient_id: str, kind: str, doc: dict[str, Any]) -> UpdateOne:
    """Set `last_vitals.<kind>` to `doc` unless the patient already holds a newer reading."""
    field = f"last_vitals.{kind}"
    return UpdateOne(
        {
            "_id": patient_id,
            "$or": [
                {field: {"$exists": False}},
                {f"{field}.measured_at": {"$lt": doc["measured_at"]}},
            ],
        },
        {"$set": {field: latest_vitals(doc)}},
    )


def _held(db: Database[dict[str, Any]], patients: list[str]) -> dict[str, dict[str, datetime]]:
    """Return, for each existing patient, the `measured_at` of each kind it holds."""

    def query() -> list[dict[str, Any]]:
        return list(db.patients.find({"_id": {"$in": patients}}, {"last_vitals": 1}))

    held: dict[str, dict[str, datetime]] = {}
    for doc in mongo_call(db, "patients read", query):
        vitals = doc.get("last_vitals")
        entries = vitals.items() if isinstance(vitals, dict) else ()
        held[doc["_id"]] = {
            kind: entry["measured_at"]
            for kind, entry in entries
            if isinstance(entry, dict) and isinstance(entry.get("measured_at"), datetime)
        }
    return held


def _is_newer(measured_at: datetime, held: dict[str, datetime], kind: str) -> bool:
    current = held.get(kind)
    if current is None:
        return True
    if current.tzinfo is None:
        current = current.replace(tzinfo=UTC)
    return _bson_time(measured_at) > current


def _bson_time(moment: datetime) -> datetime:
    # BSON dates keep milliseconds: compare at that precision, or a reading would look newer
    # than its own stored copy and be written again.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _guarded_update(
    patient: str, newer: dict[str, dict[str, Any]], held: dict[str, datetime]
) -> UpdateOne:
    guard: dict[str, Any] = {"_id": patient}
    for kind in newer:
        current = held.get(kind)
        guard[f"last_vitals.{kind}.measured_at"] = (
            current if current is not None else {"$exists": False}
        )
    fields = {f"last_vitals.{kind}": latest_vitals(doc) for kind, doc in newer.items()}
    return UpdateOne(guard, {"$set": fields})


def _guarded_write(
    db: Database[dict[str, Any]], operations: list[UpdateOne]
) -> tuple[int, dict[int, str]]:
    """Run the guarded updates; return how many matched and the write errors by index."""
    write = partial(db.patients.bulk_write, operations, ordered=False)
    try:
        result = mongo_call(db, "patients update", write)
    except BulkWriteError as exc:
        errors = {
            int(e["index"]): f"patients update: {e.get('errmsg', 'write error')}"
            for e in exc.details.get("writeErrors", [])
        }
        log_write_errors(db, "patients update", errors)
        return int(exc.details.get("nMatched", 0)), errors
    return result.matched_count, {}
