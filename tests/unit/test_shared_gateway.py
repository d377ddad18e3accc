"""An AVA4 gateway serving a household: each reading goes to the patient its cuff belongs to.

The whole flow in process (Bytewax's testing source and sinks, the embedded store), as
`test_whole_flow.py` runs it, on one `dusun_pub` message carrying readings of several
patients' devices.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from api.auth import Access
from connectors.mqtt_source import MqttMessage
from flows.pipeline import build_flow
from flows.settings import Settings
from sinks.mongo_database import open_database

GATEWAY = "08:F9:E0:D1:F7:B4"
DAD_CUFF = "d616f9641622"
MOM_CUFF = "c12488906de0"


@pytest.fixture
def database(tmp_path: Path) -> Any:
    db = open_database(f"montydb://{tmp_path / 'store'}", "vf")
    yield db
    db.client.close()


def _register(db: Any, hospital_of: dict[str, str]) -> None:
    db.patients.insert_many([{"_id": p, "hospital_id": h} for p, h in hospital_of.items()])
    db.devices.insert_many(
        [
            {"_id": f"ble:{DAD_CUFF.upper()}", "patient_id": "dad"},
            {"_id": f"ble:{MOM_CUFF.upper()}", "patient_id": "mom"},
            {"_id": "gateway:08F9E0D1F7B4", "patient_id": "host"},
        ]
    )


def _bp(ble: str | None, high: int, low: int, pulse: int) -> dict[str, Any]:
    item: dict[str, Any] = {"scan_time": 1752390000, "bp_high": high, "bp_low": low, "PR": pulse}
    if ble is not None:
        item["ble_addr"] = ble
    return item


def _run(
    db: Any,
    items: list[dict[str, Any]],
    letters: list[tuple[str, tuple[str, bytes]]] | None = None,
) -> list[dict[str, Any]]:
    payload = {
        "from": "BLE",
        "to": "CLOUD",
        "time": 1752390000,
        "mac": GATEWAY,
        "type": "reportAttribute",
        "device": "WBP BIOLIGHT",
        "data": {
            "attribute": "BP_BIOLIGTH",
            "mac": GATEWAY,
            "value": {"device_list": items},
        },
    }
    steps: list[tuple[str, tuple[str, bytes]]] = []
    delivery = MqttMessage("dusun_pub", json.dumps(payload).encode(), datetime.now(UTC))
    flow = build_flow(
        Settings(),
        source=TestingSource([delivery]),
        steps_sink=TestingSink(steps),
        dlq_sink=TestingSink(letters if letters is not None else []),
        alerts_sink=TestingSink([]),
        database=lambda: db,
    )
    run_main(flow)
    return [json.loads(value)["data"] for _key, (_k, value) in steps]


def _stored(db: Any) -> dict[str, set[tuple[str, int]]]:
    """Patient -> {(kind, first value)} of the stored observations."""
    found: dict[str, set[tuple[str, int]]] = {}
    for doc in db.observations.find({}):
        first = next(iter(doc["values"].values()))
        found.setdefault(doc["patient_id"], set()).add((doc["kind"], first))
    return found


def test_readings_of_one_message_go_to_their_own_patients(database: Any) -> None:
    _register(database, {"dad": "h1", "mom": "h2", "host": "h1"})
    events = _run(
        database,
        [_bp(DAD_CUFF, 120, 80, 70), _bp(MOM_CUFF.upper(), 190, 125, 110), _bp(None, 130, 85, 60)],
    )

    assert [(e["step"], e["status"]) for e in events][-1] == ("5_medical_stored", "success")
    # Each cuff's reading (and the heart rate derived from it) is its owner's; the item that
    # names no cuff is the gateway's patient's.
    assert _stored(database) == {
        "dad": {("blood_pressure", 120), ("heart_rate", 70)},
        "mom": {("blood_pressure", 190), ("heart_rate", 110)},
        "host": {("blood_pressure", 130), ("heart_rate", 60)},
    }
    latest = {d["_id"]: d["last_vitals"]["blood_pressure"] for d in database.patients.find({})}
    assert {p: v["values"]["systolic"] for p, v in latest.items()} == {
        "dad": 120,
        "mom": 190,
        "host": 130,
    }
    # The events name no one patient (a viewer scoped to one must not see another's
    # readings), nor a hospital, as the patients' differ; step 3 lists who they are.
    assert {(e["patient_id"], e["hospital_id"]) for e in events} == {(None, None)}
    lookup = next(e for e in events if e["step"] == "3_patient_lookup")
    assert lookup["processed_data"]["patient_ids"] == ["dad", "host", "mom"]


def test_a_household_in_one_hospital_keeps_the_hospital_on_its_events(database: Any) -> None:
    _register(database, {"dad": "h1", "mom": "h1", "host": "h1"})
    events = _run(database, [_bp(DAD_CUFF, 120, 80, 70), _bp(MOM_CUFF, 150, 95, 80)])

    assert _stored(database) == {
        "dad": {("blood_pressure", 120), ("heart_rate", 70)},
        "mom": {("blood_pressure", 150), ("heart_rate", 80)},
    }
    assert {(e["patient_id"], e["hospital_id"]) for e in events} == {(None, "h1")}


def test_readings_of_one_patient_keep_the_patient_on_the_events(database: Any) -> None:
    # An unregistered cuff behind a registered one's gateway: the gateway's patient, and
    # here that is the same patient as the registered cuff's.
    _register(database, {"dad": "h1", "mom": "h2", "host": "h1"})
    database.devices.update_one({"_id": "gateway:08F9E0D1F7B4"}, {"$set": {"patient_id": "dad"}})
    events = _run(database, [_bp(DAD_CUFF, 120, 80, 70), _bp("aabbccddeeff", 125, 82, 72)])

    assert set(_stored(database)) == {"dad"}
    assert {(e["patient_id"], e["hospital_id"]) for e in events} == {("dad", "h1")}


def test_an_unknown_cuffs_reading_is_no_ones_and_dead_lettered(database: Any) -> None:
    # The gateway is registered to no one: the unknown cuff's hypertensive reading must not
    # become the registered cuff's owner's.
    _register(database, {"dad": "h1", "mom": "h2", "host": "h1"})
    database.devices.delete_one({"_id": "gateway:08F9E0D1F7B4"})
    letters: list[tuple[str, tuple[str, bytes]]] = []
    events = _run(
        database, [_bp("aabbccddeeff", 185, 120, 90), _bp(DAD_CUFF, 120, 80, 70)], letters
    )

    assert _stored(database) == {"dad": {("blood_pressure", 120), ("heart_rate", 70)}}
    # Indices are the message's: a replay once the cuff is registered stores it as :0 and :1.
    assert sorted(d["_id"].rpartition(":")[2] for d in database.observations.find({})) == [
        "2",
        "3",
    ]
    assert {(e["patient_id"], e["hospital_id"]) for e in events} == {("dad", "h1")}
    lookup = next(e for e in events if e["step"] == "3_patient_lookup")
    [rejected] = lookup["processed_data"]["rejected"]
    assert rejected["code"] == "unknown_device" and "ble:AABBCCDDEEFF" in rejected["message"]
    [(_key, (_k, value))] = letters
    assert json.loads(value)["reason"]["code"] == "parts_rejected"


def test_a_households_events_are_visible_to_its_hospitals_viewers(database: Any) -> None:
    _register(database, {"dad": "h1", "mom": "h1", "host": "h1"})
    events = _run(database, [_bp(DAD_CUFF, 120, 80, 70), _bp(MOM_CUFF, 150, 95, 80)])
    hospital, dad = Access(hospitals=frozenset({"h1"})), Access(patients=frozenset({"dad"}))
    assert all(hospital.can_see(e["patient_id"], e["hospital_id"]) for e in events)
    assert not any(dad.can_see(e["patient_id"], e["hospital_id"]) for e in events)
