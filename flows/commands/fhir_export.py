"""`vitalflow fhir export`: a patient's or a hospital's Observations as FHIR NDJSON.

One Observation resource per line (the FHIR Bulk Data format), for the observations stored
(`received_at`) at or after `--since`, so that repeated exports with the last run's start as
`--since` pick up late readings too; resource ids are deterministic, so a receiver that gets
one twice upserts it. A hospital's patients are those whose `hospital_id` is it now, as for
the API's `hospital:<id>` scope. The file is written beside its target and renamed into
place: a reader never sees half of it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pymongo.database import Database

from flows.fhir import FHIR_KINDS, to_fhir_observation
from flows.settings import Settings
from sinks.mongo_database import open_database

__all__ = ["ExportReport", "export", "export_observations", "write_fhir_ndjson"]

logger = logging.getLogger("vitalflow")

Document = dict[str, Any]


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    out: Path
    patients: int
    resources: int

    def __str__(self) -> str:
        return f"wrote {self.resources} FHIR Observations of {self.patients} patients to {self.out}"


def export(
    settings: Settings,
    *,
    since: datetime,
    out: Path,
    patient_id: str | None,
    hospital_id: str | None,
) -> int:
    """`vitalflow fhir export`: write the file and print what it holds; return the exit code."""
    try:
        report = export_observations(
            settings, since=since, out=out, patient_id=patient_id, hospital_id=hospital_id
        )
    except ValueError as exc:
        logger.error("vitalflow fhir export: %s", exc)
        return 2
    print(report)
    return 0


def export_observations(
    settings: Settings,
    *,
    since: datetime,
    out: Path,
    patient_id: str | None = None,
    hospital_id: str | None = None,
) -> ExportReport:
    """Export from the configured store; exactly one of `patient_id`, `hospital_id` is given."""
    database = open_database(
        settings.mongo_url, settings.mongo_db, timeout_seconds=settings.mongo_timeout_seconds
    )
    try:
        return write_fhir_ndjson(
            database, since=since, out=out, patient_id=patient_id, hospital_id=hospital_id
        )
    finally:
        database.client.close()


def write_fhir_ndjson(
    db: Database[Document],
    *,
    since: datetime,
    out: Path,
    patient_id: str | None = None,
    hospital_id: str | None = None,
) -> ExportReport:
    """Write the NDJSON file; see the module docstring."""
    if (patient_id is None) == (hospital_id is None):
        msg = "export one patient or one hospital: give exactly one of them"
        raise ValueError(msg)
    if since.tzinfo is None:
        msg = "--since needs a time zone (e.g. 2026-01-01T00:00:00Z)"
        raise ValueError(msg)
    if patient_id is not None:
        patients = [patient_id]
    else:
        patients = [p["_id"] for p in db.patients.find({"hospital_id": hospital_id}, {"_id": 1})]
    query = {
        "patient_id": {"$in": patients},
        "received_at": {"$gte": since},
        "kind": {"$in": [str(kind) for kind in FHIR_KINDS]},
    }
    partial = out.with_name(f".{out.name}.partial")
    written = 0
    with partial.open("w", encoding="utf-8") as stream:
        for doc in db.observations.find(query) if patients else ():
            resource = to_fhir_observation(doc)
            if resource is not None:
                stream.write(json.dumps(resource, separators=(",", ":")) + "\n")
                written += 1
        stream.flush()
        os.fsync(stream.fileno())
    partial.replace(out)
    return ExportReport(out=out, patients=len(patients), resources=written)
