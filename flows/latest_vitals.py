"""Stage 4's write: `patients.last_vitals.<kind>` moves to the newest reading, never back.

One update per patient instead of one per (patient, kind): the batch reads what each patient
holds, then `$set`s every kind it has a newer reading of, guarded by the `measured_at` values
it read. A guard that no longer matches means another worker wrote in between; the patients of
that chunk are read again and retried, and after a few rounds the rest fall back to one
conditional update per kind, which needs no read. Updates are the expensive statement on
FerretDB (measured ~4 ms each, one SQLite transaction apiece), so this matters when a batch
holds several kinds per patient, as a watch's vitals, steps and location do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from sinks.backoff import call_with_backoff
from sinks.mongo_database import TRANSIENT_MONGO_ERRORS, write_errors

__all__ = ["UPDATE_CHUNK", "latest_vitals", "update_latest_vitals"]

# FerretDB 1.24 (SQLite) holds one pooled connection per update statement until the command
# ends, from a pool of 100: an update command of ~100 statements deadlocks the server
# (measured: 99 fine, 101 hangs forever). Update batches are sent in chunks well below that,
# leaving room for a few workers writing at once.
UPDATE_CHUNK = 32

# Optimistic rounds before the rest go one kind at a time; only contention needs a second.
_ROUNDS = 3

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


def update_latest_vitals(
    db: Database[dict[str, Any]], newest: dict[Target, dict[str, Any]]
) -> dict[Target, str]:
    """Point each target at its observation in `newest` unless the patient holds a newer one.

    Returns the write errors by target. A patient that does not exist is left alone, as a
    conditional update would.
    """
    by_patient: dict[str, dict[str, dict[str, Any]]] = {}
    for (patient, kind), doc in newest.items():
        by_patient.setdefault(patient, {})[kind] = doc
    failures: dict[Target, str] = {}
    pending = by_patient
    for _ in range(_ROUNDS):
        if not pending:
            return failures
        pending = _optimistic_round(db, pending, failures)
    leftover = {(p, k): doc for p, kinds in pending.items() for k, doc in kinds.items()}
    _one_kind_at_a_time(db, leftover, failures)
    return failures


def _optimistic_round(
    db: Database[dict[str, Any]],
    pending: dict[str, dict[str, dict[str, Any]]],
    failures: dict[Target, str],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Write what is newer than what each patient holds; return the patients to try again."""
    held = _held(db, list(pending))
    patients: list[str] = []
    operations: list[UpdateOne] = []
    for patient, kinds in pending.items():
        if patient not in held:
            continue
        newer = {k: d for k, d in kinds.items() if _is_newer(d["measured_at"], held[patient], k)}
        if not newer:
            continue
        guard: dict[str, Any] = {"_id": patient}
        for kind in newer:
            current = held[patient].get(kind)
            guard[f"last_vitals.{kind}.measured_at"] = (
                current if current is not None else {"$exists": False}
            )
        patients.append(patient)
        operations.append(
            UpdateOne(
                guard, {"$set": {f"last_vitals.{k}": latest_vitals(d) for k, d in newer.items()}}
            )
        )
    again: dict[str, dict[str, dict[str, Any]]] = {}
    for start in range(0, len(operations), UPDATE_CHUNK):
        chunk_patients = patients[start : start + UPDATE_CHUNK]
        matched, errors = _guarded_write(db, operations[start : start + UPDATE_CHUNK])
        for index, error in errors.items():
            for kind in pending[chunk_patients[index]]:
                failures[chunk_patients[index], kind] = error
        if matched < len(chunk_patients) - len(errors):
            # Which guard missed is not reported: read the chunk again. Patients written in
            # this round hold their new readings then and drop out as "not newer".
            for index, patient in enumerate(chunk_patients):
                if index not in errors:
                    again[patient] = pending[patient]
    return again


def _held(db: Database[dict[str, Any]], patients: list[str]) -> dict[str, dict[str, datetime]]:
    """Return, for each existing patient, the `measured_at` of each kind it holds."""

    def query() -> list[dict[str, Any]]:
        return list(db.patients.find({"_id": {"$in": patients}}, {"last_vitals": 1}))

    held: dict[str, dict[str, datetime]] = {}
    for doc in call_with_backoff(query, "patients read", TRANSIENT_MONGO_ERRORS):
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
    # BSON dates keep milliseconds: compare at that precision, or a reading would look newer
    # than its own stored copy and be written again in every round.
    stored = measured_at.replace(microsecond=measured_at.microsecond // 1000 * 1000)
    if current.tzinfo is None:
        current = current.replace(tzinfo=UTC)
    return stored > current


def _guarded_write(
    db: Database[dict[str, Any]], operations: list[UpdateOne]
) -> tuple[int, dict[int, str]]:
    """Run the updates; return how many matched and the write errors by index."""
    try:
        result = call_with_backoff(
            partial(db.patients.bulk_write, operations, ordered=False),
            "patients update",
            TRANSIENT_MONGO_ERRORS,
        )
    except BulkWriteError as exc:
        errors = {
            int(e["index"]): f"patients update: {e.get('errmsg', 'write error')}"
            for e in exc.details.get("writeErrors", [])
        }
        return int(exc.details.get("nMatched", 0)), errors
    return result.matched_count, {}


def _one_kind_at_a_time(
    db: Database[dict[str, Any]],
    targets: dict[Target, dict[str, Any]],
    failures: dict[Target, str],
) -> None:
    # Each statement carries its own "newer than" condition, so no read and no race.
    order = list(targets)
    operations = [_conditional_update(p, k, targets[p, k]) for p, k in order]
    for start in range(0, len(operations), UPDATE_CHUNK):
        chunk = operations[start : start + UPDATE_CHUNK]
        errors = write_errors(
            partial(db.patients.bulk_write, chunk, ordered=False), "patients update"
        )
        for index, error in errors.items():
            failures[order[start + index]] = error


def _conditional_update(patient_id: str, kind: str, doc: dict[str, Any]) -> UpdateOne:
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
