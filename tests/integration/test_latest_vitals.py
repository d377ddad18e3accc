"""`patients.last_vitals`: newest wins, races are caught, nothing hangs.

Against real FerretDB, and against the demo's embedded store, which must behave the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from pymongo import MongoClient
from pymongo.database import Database

import flows.latest_vitals as latest
from flows.latest_vitals import latest_vitals, update_latest_vitals
from sinks.embedded_store import open_embedded_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["ferretdb", "embedded"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, unique_id: str
) -> Iterator[Database[dict[str, Any]]]:
    if request.param == "embedded":
        yield cast(
            "Database[dict[str, Any]]",
            open_embedded_database(f"montydb://{tmp_path}", "vitalflow"),
        )
        return
    services = request.getfixturevalue("services")
    client: MongoClient[dict[str, Any]] = MongoClient(services.mongo_url, tz_aware=True)
    database = client[f"vf_test_vitals_{unique_id}"]
    try:
        yield database
    finally:
        client.drop_database(database.name)
        client.close()


def observation(patient: str, kind: str, at: datetime, value: float = 1.0) -> dict[str, Any]:
    return {
        "_id": f"{patient}-{kind}-{at.timestamp()}",
        "kind": kind,
        "measured_at": at,
        "values": {"value": value},
        "severity": "normal",
        "device_type": "Kati",
    }


def held(db: Database[dict[str, Any]], patient: str) -> dict[str, float]:
    doc = db.patients.find_one({"_id": patient}) or {}
    return {k: v["values"]["value"] for k, v in doc.get("last_vitals", {}).items()}


def test_newer_readings_replace_older_ones_kind_by_kind(db: Database[dict[str, Any]]):
    db.patients.insert_one({"_id": "p1"})
    first = {
        ("p1", "spo2"): observation("p1", "spo2", T0, 97),
        ("p1", "heart_rate"): observation("p1", "heart_rate", T0, 70),
    }
    assert update_latest_vitals(db, first) == {}
    assert held(db, "p1") == {"spo2": 97, "heart_rate": 70}

    later = T0 + timedelta(minutes=1)
    earlier = T0 - timedelta(minutes=1)
    second = {
        ("p1", "spo2"): observation("p1", "spo2", later, 95),
        ("p1", "heart_rate"): observation("p1", "heart_rate", earlier, 99),
        ("p1", "steps"): observation("p1", "steps", earlier, 1200),
    }
    assert update_latest_vitals(db, second) == {}
    assert held(db, "p1") == {"spo2": 95, "heart_rate": 70, "steps": 1200}
    stored = db.patients.find_one({"_id": "p1"})
    assert stored is not None
    assert stored["last_vitals"]["spo2"]["observation_id"] == second["p1", "spo2"]["_id"]


def test_the_same_reading_again_writes_nothing_and_needs_no_fallback(
    db: Database[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
):
    # Microseconds are cut to milliseconds by BSON: the stored copy must still count as equal.
    db.patients.insert_one({"_id": "p1"})
    targets = {("p1", "spo2"): observation("p1", "spo2", T0, 97)}
    update_latest_vitals(db, targets)

    def no_fallback(*_args: Any) -> None:
        raise AssertionError("fell back to one kind at a time")

    monkeypatch.setattr(latest, "_one_kind_at_a_time", no_fallback)
    assert update_latest_vitals(db, targets) == {}
    assert held(db, "p1") == {"spo2": 97}


def test_a_write_in_between_is_caught_and_the_newest_reading_still_wins(
    db: Database[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
):
    db.patients.insert_one({"_id": "p1"})
    read_for_real = latest._held

    def stale_read(database: Database[dict[str, Any]], patients: list[str]) -> Any:
        snapshot = read_for_real(database, patients)
        if not calls:
            # Another worker stores a newer reading right after our read.
            newer = observation("p1", "spo2", T0 + timedelta(hours=1), 88)
            database.patients.update_one(
                {"_id": "p1"}, {"$set": {"last_vitals.spo2": latest_vitals(newer)}}
            )
        calls.append(1)
        return snapshot

    calls: list[int] = []
    monkeypatch.setattr(latest, "_held", stale_read)
    ours = {
        ("p1", "spo2"): observation("p1", "spo2", T0, 97),
        ("p1", "heart_rate"): observation("p1", "heart_rate", T0, 70),
    }
    assert update_latest_vitals(db, ours) == {}
    assert len(calls) >= 2, "the missed guard was not retried"
    assert held(db, "p1") == {"spo2": 88, "heart_rate": 70}


def test_when_every_read_is_stale_the_per_kind_fallback_still_gets_it_right(
    db: Database[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
):
    db.patients.insert_one(
        {"_id": "p1", "last_vitals": {"spo2": {"measured_at": T0, "values": {"value": 90}}}}
    )
    monkeypatch.setattr(latest, "_held", lambda _db, patients: {p: {} for p in patients})
    older = {("p1", "spo2"): observation("p1", "spo2", T0 - timedelta(seconds=5), 80)}
    newer = {("p1", "heart_rate"): observation("p1", "heart_rate", T0, 61)}
    assert update_latest_vitals(db, older | newer) == {}
    assert held(db, "p1") == {"spo2": 90, "heart_rate": 61}


def test_absent_patients_are_left_alone_and_many_patients_do_not_hang(
    db: Database[dict[str, Any]],
):
    # Far more patients than one update chunk: FerretDB deadlocks on ~100 statements at once.
    patients = [f"p{i:03d}" for i in range(150)]
    db.patients.insert_many([{"_id": p} for p in patients])
    targets = {
        (p, kind): observation(p, kind, T0, n)
        for n, p in enumerate([*patients, "nobody"])
        for kind in ("spo2", "heart_rate")
    }
    assert update_latest_vitals(db, targets) == {}
    assert db.patients.find_one({"_id": "nobody"}) is None
    assert all(held(db, p) == {"spo2": n, "heart_rate": n} for n, p in enumerate(patients))
