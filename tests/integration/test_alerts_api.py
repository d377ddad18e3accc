"""GET /alerts and POST /alerts/{id}/ack on the MongoDB-wire server and on the demo's store.

Acknowledgements are stored server-side (`alert_acks`, `_id` = alert id): another viewer, with
another token, sees who acknowledged and when; scopes are those of `/events`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from pymongo import MongoClient
from pymongo.database import Database

from api.app import create_app
from flows.codes_and_flags import enrich_reading
from flows.model import ObservationKind, Reading
from flows.settings import Settings
from flows.thresholds import Thresholds
from sinks.mongo_database import open_database
from sinks.sqlite_event_log import SqliteEventLog

SECRET = "alerts-test-secret-long-enough-for-hs256!"
NOW = datetime.now(UTC).replace(microsecond=0)


def bearer(scope: str, sub: str | None = "nurse-a") -> dict[str, str]:
    claims: dict[str, Any] = {"exp": time.time() + 600, "scope": scope}
    if sub:
        claims["sub"] = sub
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def observation(
    n: int, patient: str, hospital: str, kind: ObservationKind, values: dict[str, Any], **attrs: Any
) -> dict[str, Any]:
    measured_at = NOW - timedelta(minutes=n)
    reading = Reading(kind, values, measured_at, measured_at, attributes=attrs)
    return {
        "_id": f"{n:032x}:0",
        "patient_id": patient,
        "hospital_id": hospital,
        "kind": str(kind),
        "device_type": "Kati",
        "device_id": "861265061482607",
        "message_id": f"{n:032x}",
        "measured_at": measured_at,
        "received_at": measured_at,
        "values": values,
        "attributes": attrs,
        **enrich_reading(reading, Thresholds()),
    }


def seed(db: Database[dict[str, Any]]) -> None:
    db.patients.insert_many(
        [{"_id": "P1", "hospital_id": "H1"}, {"_id": "P3", "hospital_id": "H2"}]
    )
    bp = ObservationKind.BLOOD_PRESSURE
    db.observations.insert_many(
        [
            observation(1, "P1", "H1", ObservationKind.EMERGENCY, {}, event="sos"),
            observation(2, "P1", "H1", bp, {"systolic": 190, "diastolic": 100, "pulse": 80}),
            observation(3, "P1", "H1", bp, {"systolic": 118, "diastolic": 75, "pulse": 70}),
            observation(4, "P3", "H2", ObservationKind.SPO2, {"spo2": 88, "pulse": 90}),
            observation(60 * 30, "P1", "H1", ObservationKind.EMERGENCY, {}, event="fall"),
        ]
    )


@pytest.fixture(params=["mongo-wire", "embedded"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    if request.param == "mongo-wire":
        services = request.getfixturevalue("services")
        name = f"vf_test_{request.getfixturevalue('unique_id')}"
        url = services.mongo_url
        mongo: MongoClient[dict[str, Any]] | None = MongoClient(url, tz_aware=True)
        db = mongo[name]
    else:
        name, url, mongo = "vf", f"montydb://{tmp_path / 'store'}", None
        db = open_database(url, name)
    seed(db)
    path = tmp_path / "events.db"
    SqliteEventLog(path)
    settings = Settings(
        auth="jwt", jwt_secret=SECRET, event_log_url=f"sqlite:///{path}", mongo_url=url,
        mongo_db=name,
    )  # fmt: skip
    with TestClient(create_app(settings)) as test_client:
        test_client.db = db  # type: ignore[attr-defined]
        yield test_client
    if mongo is not None:
        mongo.drop_database(name)
        mongo.close()
    else:
        db.client.close()


SOS, CRISIS, NORMAL, SPO2 = (f"{n:032x}:0" for n in (1, 2, 3, 4))


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_open_alerts_of_the_last_day_within_the_scope_newest_first(client: TestClient) -> None:
    assert ids(client.get("/alerts", headers=bearer("events:all"))) == [SOS, CRISIS, SPO2]
    body = client.get("/alerts", headers=bearer("hospital:H1")).json()
    assert [(i["id"], i["kind"], i["emergency"]) for i in body["items"]] == [
        (SOS, "sos", True),
        (CRISIS, "bp_hypertensive_crisis", False),
    ]
    assert ids(client.get("/alerts?patient_id=P3", headers=bearer("patient:P3"))) == [SPO2]
    assert client.get("/alerts?patient_id=P1", headers=bearer("patient:P3")).status_code == 403
    assert client.get("/alerts", headers=bearer("nothing")).json()["items"] == []
    assert client.get("/alerts").status_code == 401
    since = (NOW - timedelta(days=2)).isoformat()
    assert len(ids(client.get("/alerts", params={"since": since}, headers=bearer("events:all"))))
    assert client.get("/alerts?state=closed", headers=bearer("events:all")).status_code == 422


def test_an_acknowledgement_is_stored_and_seen_by_another_viewer(client: TestClient) -> None:
    first = client.post(
        f"/alerts/{SOS}/ack", json={"note": "on my way"}, headers=bearer("hospital:H1")
    )
    assert first.status_code == 200, first.text
    ack = first.json()
    assert (ack["alert_id"], ack["by"], ack["note"]) == (SOS, "nurse-a", "on my way")
    assert abs(datetime.fromisoformat(ack["at"]) - datetime.now(UTC)) < timedelta(seconds=30)

    stored = client.db.alert_acks.find_one({"_id": SOS})  # type: ignore[attr-defined]
    assert stored["by"] == "nurse-a" and stored["patient_id"] == "P1"

    # Another viewer, with a token of their own.
    other = bearer("patient:P1", sub="nurse-b")
    assert ids(client.get("/alerts", headers=other)) == [CRISIS]
    [acked] = client.get("/alerts?state=acknowledged", headers=other).json()["items"]
    assert acked["id"] == SOS
    assert acked["acknowledged"] == ack
    # The first acknowledgement stands.
    again = client.post(f"/alerts/{SOS}/ack", headers=other)
    assert again.status_code == 200 and again.json() == ack


def test_acknowledging_outside_the_scope_or_without_a_subject_is_refused(
    client: TestClient,
) -> None:
    assert client.post(f"/alerts/{SPO2}/ack", headers=bearer("hospital:H1")).status_code == 403
    assert client.post(f"/alerts/{SOS}/ack", headers=bearer("patient:P3")).status_code == 403
    assert client.post(f"/alerts/{NORMAL}/ack", headers=bearer("events:all")).status_code == 404
    assert client.post("/alerts/nope:0/ack", headers=bearer("events:all")).status_code == 404
    assert client.post(f"/alerts/{SOS}/ack").status_code == 401
    anonymous = bearer("events:all", sub=None)
    assert client.post(f"/alerts/{SOS}/ack", headers=anonymous).status_code == 403
    assert client.db.alert_acks.count_documents({}) == 0  # type: ignore[attr-defined]
