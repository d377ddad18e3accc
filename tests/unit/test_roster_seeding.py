"""Writing the roster into a registry: document shapes and idempotency, on the embedded store.

The demo's embedded store (montydb on disk) stands in for MongoDB here; the same code runs
against the real MongoDB-wire server in tests/integration/test_seed_registry.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.commands.seed import (
    device_documents,
    patient_documents,
    register_device,
    register_patient,
    write_roster,
)
from flows.simulator.device_roster import roster
from sinks.embedded_store import open_embedded_database

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def database(tmp_path: Path) -> Any:
    return open_embedded_database(f"montydb://{tmp_path}", "vitalflow_test")


def test_patient_documents_have_the_design_fields():
    documents = patient_documents(roster(7, 3), T0)
    assert documents[0] == {
        "_id": "demo-p-001",
        "hospital_id": "demo-hospital-a",
        "display_name": "Demo Patient 001",
        "created_at": T0,
    }


def test_device_documents_have_the_design_fields():
    demo = roster(7, 3)
    documents = {d["_id"]: d for d in device_documents(demo, T0)}
    patient = demo.patients[0]
    cuff = next(d for d in patient.gateway.devices if d.model.kind == "blood_pressure")
    assert documents[f"ble:{cuff.address}"] == {
        "_id": f"ble:{cuff.address}",
        "patient_id": "demo-p-001",
        "id_kind": "ble",
        "device_type": "AVA4",
        "kind": "blood_pressure",
        "registered_at": T0,
        "source": "seed",
    }
    watch = documents[f"imei:{patient.watch.imei}"]
    assert watch["device_type"] == "Kati" and "kind" not in watch
    assert all(
        type(d["id_kind"]) is str and d["_id"].startswith(d["id_kind"] + ":")
        for d in documents.values()
    )


def test_writing_the_roster_twice_changes_nothing(database: Any):
    demo = roster(7, 6)
    first = write_roster(database, demo, now=T0)
    before = sorted(database["devices"].find(), key=lambda d: d["_id"])
    second = write_roster(database, demo, now=T0 + timedelta(hours=1))
    assert (first.patients_inserted, first.devices_inserted) == (6, first.devices)
    assert (second.patients_inserted, second.devices_inserted) == (0, 0)
    assert database["patients"].count_documents({}) == 6
    assert database["devices"].count_documents({}) == first.devices
    assert sorted(database["devices"].find(), key=lambda d: d["_id"]) == before


def test_reseeding_leaves_what_the_flow_wrote_alone(database: Any):
    write_roster(database, roster(7, 2), now=T0)
    database["patients"].update_one(
        {"_id": "demo-p-001"}, {"$set": {"last_vitals.spo2": {"value": 97}}}
    )
    write_roster(database, roster(7, 2), now=T0 + timedelta(days=1))
    patient = database["patients"].find_one({"_id": "demo-p-001"})
    assert patient["last_vitals"] == {"spo2": {"value": 97}}
    assert patient["created_at"].replace(tzinfo=UTC) == T0


def test_seeding_more_patients_only_adds(database: Any):
    write_roster(database, roster(7, 4), now=T0)
    report = write_roster(database, roster(7, 6), now=T0)
    assert report.patients_inserted == 2
    assert database["patients"].count_documents({}) == 6


def test_register_device_normalises_the_key_and_can_move_it(database: Any):
    key = register_device(
        database, "ble:d6:16:f9:64:16:22", "demo-p-001", kind="blood_pressure", now=T0
    )
    assert key == "ble:D616F9641622"
    register_device(database, "ble:D616F9641622", "demo-p-002", now=T0 + timedelta(days=1))
    document = database["devices"].find_one({"_id": key})
    assert document["patient_id"] == "demo-p-002"
    assert document["device_type"] == "AVA4" and document["source"] == "manual"
    assert document["registered_at"].replace(tzinfo=UTC) == T0
    assert database["devices"].count_documents({}) == 1


def test_register_device_refuses_an_unusable_key(database: Any):
    with pytest.raises(ValueError):
        register_device(database, "imei:not-an-imei", "demo-p-001")


def test_register_patient_reports_whether_it_was_new(database: Any):
    assert register_patient(database, "test-p-1", hospital_id="demo-hospital-b", now=T0)
    assert not register_patient(database, "test-p-1", hospital_id="demo-hospital-b", now=T0)
    assert database["patients"].find_one({"_id": "test-p-1"})["hospital_id"] == "demo-hospital-b"


def test_report_reads_as_a_summary(database: Any):
    text = str(write_roster(database, roster(7, 3), now=T0))
    assert "3 patients in 3 hospitals (3 new)" in text
