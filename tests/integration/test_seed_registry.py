"""`seed_registry` against the real MongoDB-wire server: idempotent, and what the simulator needs.

Each test seeds its own database (`vf_test_<id>`) and drops it afterwards.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pymongo
import pytest

from flows.commands.seed import register_device, seed_registry
from flows.settings import Settings
from flows.simulator.device_roster import roster
from flows.simulator.payload_factory import payload_stream, simulated_clock

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(services: Any, unique_id: str) -> Iterator[Settings]:
    seeded = Settings(mongo_url=services.mongo_url, mongo_db=f"vf_test_{unique_id}")
    yield seeded
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(services.mongo_url)
    try:
        client.drop_database(seeded.mongo_db)
    finally:
        client.close()


@pytest.fixture
def database(settings: Settings) -> Iterator[Any]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        settings.mongo_url, tz_aware=True
    )
    yield client[settings.mongo_db]
    client.close()


def test_seeding_twice_leaves_the_counts_unchanged(settings: Settings, database: Any):
    first = seed_registry(settings, seed=7, patients=12)
    counts = (database["patients"].count_documents({}), database["devices"].count_documents({}))
    second = seed_registry(settings, seed=7, patients=12)
    assert counts == (12, first.devices)
    assert (first.patients_inserted, first.devices_inserted) == (12, first.devices)
    assert (second.patients_inserted, second.devices_inserted) == (0, 0)
    assert (
        database["patients"].count_documents({}),
        database["devices"].count_documents({}),
    ) == counts


def test_seeded_documents_have_the_design_shape(settings: Settings, database: Any):
    seed_registry(settings, seed=7, patients=3)
    patient = database["patients"].find_one({"_id": "demo-p-001"})
    assert patient["hospital_id"] == "demo-hospital-a"
    assert patient["display_name"] == "Demo Patient 001"
    assert patient["created_at"].tzinfo is not None
    devices = list(database["devices"].find({"patient_id": "demo-p-001"}))
    assert {d["id_kind"] for d in devices} == {"ble", "gateway", "imei", "citizen_id"}
    for device in devices:
        assert device["_id"] == f"{device['id_kind']}:{device['_id'].partition(':')[2]}"
        assert device["source"] == "seed"
        assert device["device_type"] in ("AVA4", "Kati", "Qube")


def test_every_simulated_device_resolves_to_its_patient(settings: Settings, database: Any):
    seed_registry(settings, seed=5, patients=6)
    clock = simulated_clock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC), 0.1)
    messages = list(
        itertools.islice(payload_stream(roster(5, 6), random.Random(5), clock=clock), 1500)
    )
    expected = {m.lookup_key: m.patient_id for m in messages if m.category == "valid"}
    unknown = {m.lookup_key for m in messages if m.category == "unknown_device"}
    found = {
        d["_id"]: d["patient_id"]
        for d in database["devices"].find({"_id": {"$in": list(expected)}})
    }
    assert found == expected
    assert database["devices"].count_documents({"_id": {"$in": list(unknown)}}) == 0


def test_a_registered_device_is_found_by_its_normalised_key(settings: Settings, database: Any):
    key = register_device(database, "imei:861265061482607", "demo-p-009")
    assert key == "imei:861265061482607"
    register_device(database, "ble:ff:23:01:28:31:19", "demo-p-009", kind="body_temperature")
    found = database["devices"].find_one({"_id": "ble:FF2301283119"})
    assert (found["patient_id"], found["device_type"], found["kind"]) == (
        "demo-p-009",
        "AVA4",
        "body_temperature",
    )
