"""Many patients, and many devices per patient, through the running flow on the real services.

The store path once stalled for good at 1,000 patients (an update bulk wedged FerretDB and the
flow waited on it without a timeout or a word). Every message must now be stored, within a
bounded time, with every patient's `last_vitals` on its newest reading.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pipeline_harness import FlowUnderTest, publish, wait_for

from flows.commands.seed import register_device, register_patient, write_roster
from flows.simulator.device_roster import roster
from flows.simulator.kati import KatiMessages
from flows.simulator.simulated_message import encode_body
from flows.simulator.vital_signs import VitalSigns

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def _vital_signs(world: Any, watches: list[Any], count: int) -> tuple[list[tuple[str, bytes]], int]:
    """Return `count` VitalSign messages cycling over `watches`, and the readings they carry."""
    rng = random.Random(5)
    kati = KatiMessages(world, rng, VitalSigns(rng))
    messages: list[tuple[str, bytes]] = []
    readings = 0
    for n in range(count):
        # A second apart: every message is new bytes, and a later one is a newer reading.
        draft = kati.vital_sign(START + timedelta(seconds=n), watch=watches[n % len(watches)])
        messages.append((draft.topic, encode_body(draft.body)))
        readings += len(draft.expected_kinds)
    return messages, readings


def test_a_thousand_patients_with_a_watch_each_are_all_stored(flow: FlowUnderTest) -> None:
    world = roster(seed=21, patients=1000)
    db = flow.db
    write_roster(db, world)
    watches = [p.watch for p in world.patients]
    messages, readings = _vital_signs(world, watches, 3000)
    flow.prepare_session()
    flow.start()

    publish(flow.mqtt_url, messages)

    wait_for(
        lambda: db.observations.count_documents({}) >= readings,
        180,
        flow,
        f"{readings} observations of 3,000 messages from 1,000 patients",
    )
    assert db.observations.count_documents({}) == readings
    assert len(db.observations.distinct("message_id")) == 3000
    # Each watch sent three messages: its patient holds the last one's heart rate.
    updated = db.patients.count_documents({"last_vitals.heart_rate": {"$exists": True}})
    assert updated == 1000


def test_many_devices_of_one_patient_in_one_batch_end_on_the_newest_reading(
    flow: FlowUnderTest,
) -> None:
    world = roster(seed=22, patients=10)
    db = flow.db
    patients = [f"ward-{n}" for n in range(5)]
    watches = [w for p in world.patients for w in (p.watch,)] + list(world.unknown_watches)
    owner: dict[str, str] = {}
    for patient_id in patients:
        register_patient(db, patient_id, hospital_id="h-many")
    for n, watch in enumerate(watches):
        owner[watch.imei] = patients[n % len(patients)]
        register_device(db, f"imei:{watch.imei}", owner[watch.imei])
    messages, readings = _vital_signs(world, watches, 600)
    flow.prepare_session()
    flow.start()

    publish(flow.mqtt_url, messages)

    wait_for(lambda: db.observations.count_documents({}) >= readings, 120, flow, "every reading")
    assert db.observations.count_documents({}) == readings
    for patient_id in patients:
        newest = db.observations.find_one(
            {"patient_id": patient_id, "kind": "heart_rate"}, sort=[("measured_at", -1)]
        )
        held = db.patients.find_one({"_id": patient_id})["last_vitals"]["heart_rate"]
        assert held["observation_id"] == newest["_id"], patient_id
