"""`vitalflow seed`: register the demo patients and their devices, matching the simulator.

Writes the roster of `flows.simulator.device_roster` (same `seed` and `patients` as
`vitalflow simulate`) into `patients` and `devices`. Every write is an upsert by a
deterministic `_id`, so seeding twice changes nothing, and seeding with more patients only
adds. Only what MongoDB 6+ and the local mongo-java-server share is used: upserts with `$set` and
`$setOnInsert`, no transactions; `created_at`/`registered_at` are set on insert only, and
fields the flow maintains (`last_vitals`) are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database

from flows.devices.identifiers import IdKind
from flows.settings import Settings
from flows.simulator.device_roster import (
    DEFAULT_PATIENTS,
    DEFAULT_SEED,
    Roster,
    normalise_registry_key,
    roster,
)
from sinks.mongo_database import open_database

__all__ = [
    "DEVICE_TYPE_OF_ID_KIND",
    "SeedReport",
    "device_documents",
    "patient_documents",
    "register_device",
    "register_patient",
    "seed",
    "seed_registry",
    "write_roster",
]

DEVICE_TYPE_OF_ID_KIND: dict[IdKind, str] = {
    IdKind.BLE: "AVA4",
    IdKind.GATEWAY: "AVA4",
    IdKind.IMEI: "Kati",
    IdKind.CITIZEN_ID: "Qube",
}
# Set once, when the document is created: re-seeding must not move these.
_CREATION_FIELDS = frozenset({"created_at", "registered_at"})

Document = dict[str, Any]


@dataclass(frozen=True)
class SeedReport:
    """What a seeding run found and added."""

    database: str
    hospitals: int
    patients: int
    devices: int
    patients_inserted: int
    devices_inserted: int

    def __str__(self) -> str:
        return (
            f"seeded database {self.database!r}: {self.patients} patients in "
            f"{self.hospitals} hospitals ({self.patients_inserted} new), "
            f"{self.devices} device identifiers ({self.devices_inserted} new)"
        )


def seed(settings: Settings, *, roster_seed: int, patients: int) -> int:
    """`vitalflow seed`: register the roster and print what was added; return the exit code."""
    print(seed_registry(settings, seed=roster_seed, patients=patients))
    return 0


def seed_registry(
    settings: Settings, *, seed: int = DEFAULT_SEED, patients: int = DEFAULT_PATIENTS
) -> SeedReport:
    """Register the demo roster in `settings.mongo_url` / `settings.mongo_db`."""
    database = open_database(
        settings.mongo_url, settings.mongo_db, timeout_seconds=settings.mongo_timeout_seconds
    )
    try:
        return write_roster(database, roster(seed, patients))
    finally:
        database.client.close()


def write_roster(
    database: Database[Document], demo_roster: Roster, *, now: datetime | None = None
) -> SeedReport:
    """Upsert the roster's patients and device identifiers into `database`.

    Takes the database rather than a URL so that any pymongo-compatible store will do
    (the embedded demo store included).
    """
    moment = now or datetime.now(UTC)
    patients = patient_documents(demo_roster, moment)
    devices = device_documents(demo_roster, moment)
    return SeedReport(
        database=database.name,
        hospitals=len(demo_roster.hospitals),
        patients=len(patients),
        devices=len(devices),
        patients_inserted=_upsert(database["patients"], patients),
        devices_inserted=_upsert(database["devices"], devices),
    )


def patient_documents(demo_roster: Roster, now: datetime) -> list[Document]:
    """Return the `patients` documents of the roster."""
    return [
        {
            "_id": patient.patient_id,
            "hospital_id": patient.hospital_id,
            "display_name": patient.display_name,
            "created_at": now,
        }
        for patient in demo_roster.patients
    ]


def device_documents(demo_roster: Roster, now: datetime) -> list[Document]:
    """Return the `devices` documents of the roster: one per registered identifier."""
    documents = []
    for entry in demo_roster.registry_entries():
        document: Document = {
            "_id": entry.key,
            "patient_id": entry.patient_id,
            "id_kind": str(entry.id_kind),
            "device_type": entry.device_type,
            "registered_at": now,
            "source": "seed",
        }
        if entry.kind is not None:
            document["kind"] = str(entry.kind)
        documents.append(document)
    return documents


def register_device(
    database: Database[Document],
    key: str,
    patient_id: str,
    *,
    device_type: str | None = None,
    kind: str | None = None,
    source: str = "manual",
    now: datetime | None = None,
) -> str:
    """Map the identifier `key` (`<id_kind>:<id>`, any spelling) to `patient_id`.

    Returns the normalised key. Registering a key again moves it to the patient given;
    `registered_at` keeps its first value. `device_type` defaults from the id kind (`ble`
    and `gateway` are AVA4, `imei` Kati, `citizen_id` Qube).
    """
    normalised = normalise_registry_key(key)
    id_kind = IdKind(normalised.partition(":")[0])
    document: Document = {
        "_id": normalised,
        "patient_id": patient_id,
        "id_kind": str(id_kind),
        "device_type": device_type or DEVICE_TYPE_OF_ID_KIND[id_kind],
        "registered_at": now or datetime.now(UTC),
        "source": source,
    }
    if kind is not None:
        document["kind"] = kind
    _upsert(database["devices"], [document])
    return normalised


def register_patient(
    database: Database[Document],
    patient_id: str,
    *,
    hospital_id: str,
    display_name: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Create or update the patient `patient_id`; return True when it was new."""
    document: Document = {
        "_id": patient_id,
        "hospital_id": hospital_id,
        "display_name": display_name or patient_id,
        "created_at": now or datetime.now(UTC),
    }
    return _upsert(database["patients"], [document]) == 1


def _upsert_update(document: Document) -> Document:
    changes = {k: v for k, v in document.items() if k != "_id" and k not in _CREATION_FIELDS}
    creation = {k: v for k, v in document.items() if k in _CREATION_FIELDS}
    update: Document = {"$set": changes}
    if creation:
        update["$setOnInsert"] = creation
    return update


def _upsert(collection: Collection[Document], documents: Iterable[Document]) -> int:
    """Upsert `documents` by `_id`; return how many were inserted."""
    operations = [
        UpdateOne({"_id": document["_id"]}, _upsert_update(document), upsert=True)
        for document in documents
    ]
    if not operations:
        return 0
    return collection.bulk_write(operations, ordered=False).upserted_count
