"""Stage 4's write: `patients.last_vitals.<kind>` moves to the newest reading, never back.

One conditional update per (patient, kind) that has a reading in the batch, all in one
unordered bulk write: each statement carries its own "newer than what is held" condition, so
it needs no read first, and two workers (or a replay racing live traffic) writing the same
patient cannot move a kind backwards: the server evaluates the condition and applies the
`$set` on one document atomically (MongoDB, and the local mongo-java-server, both do; the
earlier FerretDB did not, which is why this module used to read, guard and retry).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database

from sinks.mongo_database import write_errors

__all__ = ["latest_vitals", "update_latest_vitals"]

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
    if not newest:
        return {}
    order = list(newest)
    operations = [conditional_update(p, k, newest[p, k]) for p, k in order]
    errors = write_errors(
        db, partial(db.patients.bulk_write, operations, ordered=False), "patients update"
    )
    return {order[index]: error for index, error in errors.items()}


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
