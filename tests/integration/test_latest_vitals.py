"""`patients.last_vitals`: newest wins, concurrent writers cannot move it back, nothing hangs.

Against the real MongoDB-wire server of deploy/local, and against the demo's embedded store,
which must behave the same.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from pymongo import MongoClient
from pymongo.database import Database

import flows.latest_vitals as latest
from flows.latest_vitals import HeldVitals, latest_vitals, update_latest_vitals
from sinks.embedded_store import open_embedded_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["server", "embedded"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, unique_id: str
) -> Iterator[Database[dict[str, Any]]]:
    if request.param == "embedded":
        yield cast(
            "Database[dict[str, Any]]",
            open_embedded_database(f"montydb://{tmp_path}", "vitalflow"),
        )
        return
    with server_database(request.getfixturevalue("services"), f"vf_test_vitals_{unique_id}") as db:
        yield db


@contextmanager
def server_database(services: Any, name: str) -> Iterator[Database[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(services.mongo_url, tz_aware=True)
    try:
        yield client[name]
    finally:
        client.drop_database(name)
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


def test_the_same_reading_again_changes_nothing(db: Database[dict[str, Any]]):
    # Microseconds are cut to milliseconds by BSON: the stored copy must still count as equal.
    db.patients.insert_one({"_id": "p1"})
    targets = {("p1", "spo2"): observation("p1", "spo2", T0, 97)}
    assert update_latest_vitals(db, targets) == {}
    before = db.patients.find_one({"_id": "p1"})
    assert update_latest_vitals(db, targets) == {}
    assert db.patients.find_one({"_id": "p1"}) == before


def test_a_write_in_between_is_caught_and_the_newest_reading_still_wins(
    db: Database[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
):
    db.patients.insert_many([{"_id": "p1"}, {"_id": "p2"}])
    read_for_real = latest._held

    def stale_read(database: Database[dict[str, Any]], patients: list[str]) -> Any:
        snapshot = read_for_real(database, patients)
        # Another worker stores a newer SpO2 for p1 right after our read: our guard misses.
        newer = observation("p1", "spo2", T0 + timedelta(hours=1), 88)
        database.patients.update_one(
            {"_id": "p1"}, {"$set": {"last_vitals.spo2": latest_vitals(newer)}}
        )
        return snapshot

    monkeypatch.setattr(latest, "_held", stale_read)
    ours = {
        ("p1", "spo2"): observation("p1", "spo2", T0, 97),
        ("p1", "heart_rate"): observation("p1", "heart_rate", T0, 70),
        ("p2", "spo2"): observation("p2", "spo2", T0, 95),
    }
    assert update_latest_vitals(db, ours) == {}
    assert held(db, "p1") == {"spo2": 88, "heart_rate": 70}
    assert held(db, "p2") == {"spo2": 95}


def test_an_older_reading_never_replaces_a_newer_one(db: Database[dict[str, Any]]):
    db.patients.insert_one(
        {"_id": "p1", "last_vitals": {"spo2": {"measured_at": T0, "values": {"value": 90}}}}
    )
    older = {("p1", "spo2"): observation("p1", "spo2", T0 - timedelta(seconds=5), 80)}
    newer = {("p1", "heart_rate"): observation("p1", "heart_rate", T0, 61)}
    assert update_latest_vitals(db, older | newer) == {}
    assert held(db, "p1") == {"spo2": 90, "heart_rate": 61}


@pytest.fixture
def server_db(services: Any, unique_id: str) -> Iterator[Database[dict[str, Any]]]:
    with server_database(services, f"vf_test_vitals_race_{unique_id}") as db:
        yield db


def test_concurrent_writers_of_the_same_patients_end_on_the_newest_of_each_kind(
    server_db: Database[dict[str, Any]],
):
    # Only against the server: the embedded store serves one demo process.
    db = server_db
    # Four workers, each with readings of every kind for the same 50 patients at times of its
    # own: a server that applied conditional updates of one document without isolation
    # (FerretDB 1.24 did, measured) would leave some kinds on an older reading.
    patients = [f"p{i:02d}" for i in range(50)]
    db.patients.insert_many([{"_id": p} for p in patients])
    kinds = ("spo2", "heart_rate", "steps", "location")
    writers = 4
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for round_ in range(5):
                minute = round_ * writers + worker
                targets = {
                    (p, k): observation(p, k, T0 + timedelta(minutes=minute), minute)
                    for p in patients
                    for k in kinds
                }
                assert update_latest_vitals(db, targets) == {}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    newest = 4 * writers + writers - 1
    assert all(held(db, p) == dict.fromkeys(kinds, newest) for p in patients)


def test_absent_patients_are_left_alone_and_a_thousand_patients_take_one_call(
    db: Database[dict[str, Any]], request: pytest.FixtureRequest
):
    # One bulk of 2,000 statements: FerretDB hung on ~100 at once; this must simply complete.
    # The embedded store (montydb, ~30 ms a statement) gets fewer: it only serves the demo.
    many = 1000 if request.node.callspec.params["db"] == "server" else 100
    patients = [f"p{i:04d}" for i in range(many)]
    db.patients.insert_many([{"_id": p} for p in patients])
    targets = {
        (p, kind): observation(p, kind, T0, n)
        for n, p in enumerate([*patients, "nobody"])
        for kind in ("spo2", "heart_rate")
    }
    assert update_latest_vitals(db, targets) == {}
    assert db.patients.find_one({"_id": "nobody"}) is None
    assert all(held(db, p) == {"spo2": n, "heart_rate": n} for n, p in enumerate(patients))


def test_what_a_worker_wrote_saves_the_next_read_and_a_stale_memory_is_caught(
    db: Database[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
):
    db.patients.insert_many([{"_id": "p1"}, {"_id": "p2"}])
    reads: list[list[str]] = []
    read_for_real = latest._held

    def counted(database: Database[dict[str, Any]], patients: list[str]) -> Any:
        reads.append(sorted(patients))
        return read_for_real(database, patients)

    monkeypatch.setattr(latest, "_held", counted)
    known = HeldVitals()
    first = {(p, "spo2"): observation(p, "spo2", T0, 90) for p in ("p1", "p2")}
    assert update_latest_vitals(db, first, known) == {}
    later = {
        (p, "spo2"): observation(p, "spo2", T0 + timedelta(seconds=1), 91) for p in ("p1", "p2")
    }
    assert update_latest_vitals(db, later, known) == {}
    assert reads == [["p1", "p2"]]
    assert held(db, "p1") == held(db, "p2") == {"spo2": 91}

    # Another writer moves p1 on; this worker's memory of p1 is now stale.
    newer = observation("p1", "spo2", T0 + timedelta(hours=1), 88)
    db.patients.update_one({"_id": "p1"}, {"$set": {"last_vitals.spo2": latest_vitals(newer)}})
    stale = {
        (p, "spo2"): observation(p, "spo2", T0 + timedelta(seconds=2), 92) for p in ("p1", "p2")
    }
    assert update_latest_vitals(db, stale, known) == {}
    assert held(db, "p1") == {"spo2": 88} and held(db, "p2") == {"spo2": 92}
    assert update_latest_vitals(db, stale, known) == {}
    assert reads == [["p1", "p2"], ["p1", "p2"]], "a missed guard must make the batch read again"
