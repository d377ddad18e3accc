"""The history API and FHIR search against the real MongoDB-wire server, and on the demo's store.

Each test seeds a database of its own (`vf_test_<id>`) with pymongo, in the shapes the flow
stores (`flows.enrich`, `flows.latest_vitals`, `flows.store`,
`flows.commands.seed`), and reads it back through the app in-process (TestClient; the event
feed is an empty SQLite log).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from pymongo import MongoClient
from pymongo.database import Database
from stored_observation import stored

from api.app import create_app
from flows.cli import main
from flows.latest_vitals import latest_vitals
from flows.model import ObservationKind
from flows.settings import Settings
from sinks.mongo_database import open_database
from sinks.observation_history import HISTORY_INDEXES
from sinks.sqlite_event_log import SqliteEventLog

SECRET = "history-test-secret-long-enough-for-hs256!"
START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def bearer(scope: str) -> dict[str, str]:
    token = jwt.encode({"exp": time.time() + 600, "scope": scope}, SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


ALL = bearer("events:all")


def seed_registry(db: Database[dict[str, Any]]) -> None:
    db.patients.insert_many(
        [
            {"_id": "P1", "hospital_id": "H1", "display_name": "P1"},
            {"_id": "P2", "hospital_id": "H1", "display_name": "P2"},
            {"_id": "P3", "hospital_id": "H2", "display_name": "P3"},
        ]
    )
    db.devices.insert_many(
        [
            {"_id": "gateway:08F9E0D1F7B4", "patient_id": "P1", "device_type": "AVA4",
             "id_kind": "gateway"},
            {"_id": "ble:D616F9641622", "patient_id": "P1", "device_type": "AVA4",
             "id_kind": "ble", "kind": "blood_pressure"},
            {"_id": "imei:861265061482607", "patient_id": "P3", "device_type": "Kati",
             "id_kind": "imei"},
        ]
    )  # fmt: skip
    db.device_status.insert_one(
        {"_id": "gateway:08F9E0D1F7B4", "device_type": "AVA4", "device_id": "08F9E0D1F7B4",
         "last_seen": START, "online": True, "battery": 88.0, "signal": -61.0}
    )  # fmt: skip


def seed_readings(db: Database[dict[str, Any]]) -> list[dict[str, Any]]:
    """P1: 30 heart rates 7 minutes apart, 6 BP readings and an SpO2; P3: one heart rate."""
    heart = ObservationKind.HEART_RATE
    docs = [
        stored(i, "P1", heart, {"heart_rate": 60 + i}, START + i * timedelta(minutes=7))
        for i in range(30)
    ]
    docs += [
        stored(100 + i, "P1", ObservationKind.BLOOD_PRESSURE,
               {"systolic": 120 + 10 * i, "diastolic": 80, "pulse": 70}, START + timedelta(hours=i))
        for i in range(6)
    ]  # fmt: skip
    docs.append(stored(200, "P1", ObservationKind.SPO2, {"spo2": 89, "pulse": 90}, START))
    docs.append(
        stored(300, "P3", ObservationKind.HEART_RATE, {"heart_rate": 70}, START, hospital="H2")
    )
    db.observations.insert_many(docs)
    newest = {}
    for doc in docs:
        key = (doc["patient_id"], doc["kind"])
        if key not in newest or doc["measured_at"] > newest[key]["measured_at"]:
            newest[key] = doc
    for (patient, kind), doc in newest.items():
        db.patients.update_one(
            {"_id": patient}, {"$set": {f"last_vitals.{kind}": latest_vitals(doc)}}
        )
    return docs


@pytest.fixture
def database(services: Any, unique_id: str) -> Iterator[tuple[str, Database[dict[str, Any]]]]:
    name = f"vf_test_{unique_id}"
    client: MongoClient[dict[str, Any]] = MongoClient(services.mongo_url, tz_aware=True)
    db = client[name]
    seed_registry(db)
    seed_readings(db)
    yield services.mongo_url, db
    client.drop_database(name)
    client.close()


def app_client(tmp_path: Path, mongo_url: str, mongo_db: str) -> TestClient:
    path = tmp_path / "events.db"
    SqliteEventLog(path)
    settings = Settings(
        auth="jwt",
        jwt_secret=SECRET,
        event_log_url=f"sqlite:///{path}",
        mongo_url=mongo_url,
        mongo_db=mongo_db,
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(tmp_path: Path, database: tuple[str, Database[dict[str, Any]]]) -> Iterator[TestClient]:
    url, db = database
    with app_client(tmp_path, url, db.name) as test_client:
        yield test_client


def test_start_up_creates_exactly_the_history_indexes(
    client: TestClient, database: tuple[str, Database[dict[str, Any]]]
) -> None:
    store = client.app.state.history_store  # type: ignore[attr-defined]
    assert store.wait_for_indexes(30)
    db = database[1]
    for spec in HISTORY_INDEXES:
        held = db[spec.collection].index_information()
        assert spec.name in held, (spec.name, sorted(held))


def test_patients_are_listed_within_the_token_scope(client: TestClient) -> None:
    def ids(headers: dict[str, str], query: str = "") -> list[str]:
        response = client.get(f"/patients{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["items"]]

    assert ids(ALL) == ["P1", "P2", "P3"]
    assert ids(bearer("hospital:H1")) == ["P1", "P2"]
    assert ids(bearer("patient:P3")) == ["P3"]
    assert ids(bearer("hospital:H2 patient:P2")) == ["P2", "P3"]
    assert ids(bearer("")) == []
    assert ids(ALL, "?hospital_id=H2") == ["P3"]
    assert ids(ALL, "?limit=2&after=P1") == ["P2", "P3"]
    assert client.get("/patients?hospital_id=H2", headers=bearer("hospital:H1")).status_code == 403
    assert client.get("/patients").status_code == 401


def test_a_patient_shows_latest_vitals_with_severity_and_device_status(client: TestClient) -> None:
    body = client.get("/patients", headers=bearer("patient:P1")).json()
    (p1,) = body["items"]
    assert p1["hospital_id"] == "H1"
    assert set(p1["last_vitals"]) == {"heart_rate", "blood_pressure", "spo2"}
    assert p1["last_vitals"]["blood_pressure"]["values"]["systolic"] == 170
    assert p1["last_vitals"]["blood_pressure"]["severity"] == "high"
    assert p1["last_vitals"]["spo2"]["severity"] == "high"  # 89 %: NEWS2 score 3
    assert p1["severity"] == "high"
    assert p1["last_seen"].startswith("2026-03-01T05:00:00")
    devices = {d["key"]: d for d in p1["devices"]}
    assert devices["gateway:08F9E0D1F7B4"]["online"] is True
    assert devices["gateway:08F9E0D1F7B4"]["battery"] == 88.0
    assert devices["ble:D616F9641622"]["online"] is None


def test_pages_go_newest_first_and_never_skip_or_repeat_while_readings_arrive(
    client: TestClient, database: tuple[str, Database[dict[str, Any]]]
) -> None:
    db = database[1]
    late_old = stored(
        500, "P1", ObservationKind.HEART_RATE, {"heart_rate": 99}, START + timedelta(minutes=3)
    )
    # Same measured_at as one already stored: the _id breaks the tie.
    same_time = stored(
        501, "P1", ObservationKind.HEART_RATE, {"heart_rate": 98}, START + timedelta(minutes=70)
    )
    brand_new = stored(
        502, "P1", ObservationKind.HEART_RATE, {"heart_rate": 97}, START + timedelta(days=1)
    )
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        query = "kind=heart_rate&limit=7" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(f"/patients/P1/observations?{query}", headers=ALL)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(page["items"])
        pages += 1
        if pages == 2:
            db.observations.insert_many([late_old, same_time, brand_new])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [item["id"] for item in seen]
    assert len(ids) == len(set(ids)), "a reading was repeated"
    keys = [(item["measured_at"], item["id"]) for item in seen]
    assert keys == sorted(keys, reverse=True)
    originals = {f"{i:032x}:0" for i in range(30)}
    assert originals <= set(ids), "a reading was skipped"
    assert late_old["_id"] in ids  # behind the cursor when it arrived: reached in order
    assert brand_new["_id"] not in ids  # ahead of the cursor: the next first page has it
    first = client.get("/patients/P1/observations?limit=1", headers=ALL).json()
    assert first["items"][0]["id"] == brand_new["_id"]


def test_observations_filter_by_kind_and_window(client: TestClient) -> None:
    query = "from=2026-03-01T01:00:00Z&to=2026-03-01T03:00:00Z&kind=blood_pressure"
    body = client.get(f"/patients/P1/observations?{query}", headers=ALL).json()
    assert [item["values"]["systolic"] for item in body["items"]] == [140, 130]
    assert body["items"][0]["code"]["code"] == "85354-9"
    assert body["items"][0]["components"]["systolic"]["unit"] == "mm[Hg]"
    assert body["next_cursor"] is None
    everything = client.get("/patients/P1/observations?limit=1000", headers=ALL).json()
    assert len(everything["items"]) == 37


@pytest.mark.parametrize(
    ("query", "parameter", "words"),
    [
        ("kind=blood_sugar", "kind", "blood_pressure"),
        ("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "from", "after"),
        ("cursor=not-a-cursor", "cursor", "malformed cursor"),
        ("cursor=WzEsMl0", "cursor", "malformed cursor"),
        ("limit=100000", "limit", "1000"),
        ("limit=0", "limit", "1"),
        ("from=yesterday", "from", "datetime"),
    ],
)
def test_bad_input_is_a_422_naming_the_parameter(
    client: TestClient, query: str, parameter: str, words: str
) -> None:
    response = client.get(f"/patients/P1/observations?{query}", headers=ALL)
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"][-1] == parameter
    assert words in problem["msg"]


def test_patient_scope_gives_403_outside_and_404_for_a_missing_patient(client: TestClient) -> None:
    assert client.get("/patients/P1/observations", headers=bearer("patient:P3")).status_code == 403
    assert client.get("/patients/P3/observations", headers=bearer("hospital:H1")).status_code == 403
    assert client.get("/patients/P2/observations", headers=bearer("hospital:H1")).status_code == 200
    # Outside the scope a missing patient looks like any other: nothing to probe with.
    assert (
        client.get("/patients/NOPE/observations", headers=bearer("hospital:H1")).status_code == 403
    )
    assert client.get("/patients/NOPE/observations", headers=ALL).status_code == 404
    assert client.get("/patients/P1/observations/summary?kind=spo2").status_code == 401


def test_summary_is_computed_by_the_database_in_hourly_buckets(client: TestClient) -> None:
    query = "kind=heart_rate&from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&bucket=1h"
    response = client.get(f"/patients/P1/observations/summary?{query}", headers=ALL)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["computed_in"] == "database"
    assert_hourly_heart_rate_buckets(body)


def assert_hourly_heart_rate_buckets(body: dict[str, Any]) -> None:
    # Readings every 7 minutes from 00:00 (60, 61, ...): minutes 0..56 fall in the first hour.
    expected: dict[int, list[int]] = {}
    for i in range(30):
        expected.setdefault(i * 7 // 60, []).append(60 + i)
    assert [b["start"][:19] for b in body["buckets"]] == [
        f"2026-03-01T{hour:02d}:00:00" for hour in sorted(expected)
    ]
    for bucket, hour in zip(body["buckets"], sorted(expected), strict=True):
        numbers = expected[hour]
        assert bucket["count"] == len(numbers)
        stats = bucket["values"]["heart_rate"]
        assert stats == {
            "min": min(numbers),
            "mean": pytest.approx(sum(numbers) / len(numbers)),
            "max": max(numbers),
        }


def test_summary_of_a_panel_has_each_value_and_rejects_bad_buckets(client: TestClient) -> None:
    query = "kind=blood_pressure&from=2026-03-01T00:00:00Z&to=2026-03-01T12:00:00Z&bucket=1d"
    body = client.get(f"/patients/P1/observations/summary?{query}", headers=ALL).json()
    (day,) = body["buckets"]
    assert day["count"] == 6
    assert day["values"]["systolic"] == {"min": 120, "mean": 145, "max": 170}
    assert day["values"]["diastolic"]["mean"] == 80
    for bad in ("bucket=1w", "bucket=0h", "bucket=1s&from=2026-01-01T00:00:00Z", "kind=nope"):
        url = f"/patients/P1/observations/summary?kind=heart_rate&{bad}"
        response = client.get(url, headers=ALL)
        assert response.status_code == 422, (bad, response.text)


def test_fhir_search_returns_a_valid_searchset_of_vital_signs(client: TestClient) -> None:
    response = client.get("/fhir/Observation?patient=Patient/P1&_count=5", headers=ALL)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(response.json())
    assert bundle.type == "searchset"
    assert len(bundle.entry) == 5
    for entry in bundle.entry:
        observation = Observation.model_validate(entry.resource.model_dump())
        assert observation.subject.reference == "Patient/P1"
    next_link = [link.url for link in bundle.link if link.relation == "next"]
    assert next_link and "_cursor=" in next_link[0]
    total = 0
    url: str | None = "/fhir/Observation?patient=P1&_count=10"
    ids: list[str] = []
    while url:
        page = client.get(url, headers=ALL).json()
        ids += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((ln["url"] for ln in page["link"] if ln["relation"] == "next"), None)
        total += 1
    assert len(ids) == len(set(ids)) == 37


def test_fhir_search_by_code_and_date_and_read_by_id(client: TestClient) -> None:
    body = client.get("/fhir/Observation?patient=P1&code=2708-6", headers=ALL).json()
    (entry,) = body["entry"]
    spo2 = entry["resource"]
    assert [c["code"] for c in spo2["code"]["coding"]] == ["59408-5", "2708-6"]
    assert spo2["interpretation"][0]["coding"][0]["code"] == "L"
    dated = client.get(
        "/fhir/Observation?patient=P1&code=85354-9&date=ge2026-03-01T02:00:00Z&date=lt2026-03-01T04:00:00Z",
        headers=ALL,
    ).json()
    assert [e["resource"]["component"][0]["valueQuantity"]["value"] for e in dated["entry"]] == [
        150,
        140,
    ]
    read = client.get(f"/fhir/Observation/{spo2['id']}", headers=bearer("hospital:H1"))
    assert read.status_code == 200
    assert read.json() == spo2
    hidden = client.get(f"/fhir/Observation/{spo2['id']}", headers=bearer("hospital:H2"))
    assert hidden.status_code == 404
    assert hidden.json()["resourceType"] == "OperationOutcome"
    bad = client.get("/fhir/Observation?patient=P1&date=after-lunch", headers=ALL)
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["diagnostics"].startswith("date")
    outside = client.get("/fhir/Observation?patient=P3", headers=bearer("hospital:H1"))
    assert outside.status_code == 403


def test_fhir_export_writes_valid_ndjson_for_a_hospital(
    services: Any, database: tuple[str, Database[dict[str, Any]]], tmp_path: Path
) -> None:
    url, db = database
    out = tmp_path / "h1.ndjson"
    argv = ["fhir", "export", "--since", "2026-03-01T03:00:00+00:00", "--hospital", "H1"]
    code = main([*argv, "--out", str(out), "--mongo-url", url, "--mongo-db", db.name])
    assert code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    resources = [Observation.model_validate(json.loads(line)) for line in lines]
    # Stored (received) from 03:00:00: heart rates from 02:59:01 on and BP from 03:00:01.
    expected = [
        d for d in db.observations.find({"patient_id": {"$in": ["P1", "P2"]}})
        if d["received_at"] >= datetime(2026, 3, 1, 3, tzinfo=UTC)
    ]  # fmt: skip
    assert len(resources) == len(expected) > 0
    assert {r.subject.reference for r in resources} == {"Patient/P1"}
    one = tmp_path / "p3.ndjson"
    argv = ["fhir", "export", "--since", "2026-01-01T00:00:00Z", "--patient", "P3"]
    assert main([*argv, "--out", str(one), "--mongo-url", url, "--mongo-db", db.name]) == 0
    assert len(one.read_text(encoding="utf-8").splitlines()) == 1


def test_the_demo_store_serves_history_and_says_where_the_summary_was_computed(
    tmp_path: Path,
) -> None:
    url = f"montydb://{tmp_path / 'store'}"
    db = open_database(url, "vitalflow")
    seed_registry(db)
    seed_readings(db)
    with app_client(tmp_path, url, "vitalflow") as client:
        assert [p["id"] for p in client.get("/patients", headers=ALL).json()["items"]] == [
            "P1",
            "P2",
            "P3",
        ]
        first = client.get("/patients/P1/observations?kind=heart_rate&limit=20", headers=ALL)
        page = first.json()
        second = client.get(
            f"/patients/P1/observations?kind=heart_rate&limit=20&cursor={page['next_cursor']}",
            headers=ALL,
        ).json()
        ids = [i["id"] for i in page["items"] + second["items"]]
        assert len(ids) == len(set(ids)) == 30
        assert second["next_cursor"] is None
        query = "kind=heart_rate&from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&bucket=1h"
        body = client.get(f"/patients/P1/observations/summary?{query}", headers=ALL).json()
        assert body["computed_in"] == "api"
        assert_hourly_heart_rate_buckets(body)
        fhir = client.get("/fhir/Observation?patient=P1&code=8867-4&_count=3", headers=ALL)
        assert len(fhir.json()["entry"]) == 3
