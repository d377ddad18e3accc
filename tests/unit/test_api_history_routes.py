"""The patients, history, FHIR and alerts routes in-process over the demo's embedded store.

What they must refuse (crafted times, cursors and widths are a 422 naming the parameter, or
for FHIR a 400 `OperationOutcome`, never a 500) and what they must never show (citizen IDs,
the bearer token of the query string). TestClient over an empty SQLite event log and a
`montydb://` store; the store is only read, so one seeding serves the module.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from flows.codes_and_flags import enrich_reading
from flows.model import ObservationKind, Reading
from flows.settings import Settings
from flows.thresholds import Thresholds
from sinks.mongo_database import open_database
from sinks.observation_history import HistoryCursor, InvalidCursorError
from sinks.sqlite_event_log import SqliteEventLog

SECRET = "history-routes-unit-secret-long-enough-for-hs256!"
CITIZEN_ID = "1234567890123"
NOW = datetime.now(UTC).replace(microsecond=0)
# A cursor this API never hands out: a time no date can hold (`[10**22, "x"]`).
HUGE_CURSOR = base64.urlsafe_b64encode(json.dumps([10**22, "x"]).encode()).decode().rstrip("=")


def _cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Cursors an adversarial probe made (500s before): an `_id` holding a lone surrogate, which
# BSON cannot encode, and JSON nested deeper than the reader's recursion limit.
SURROGATE_CURSOR = _cursor_of(b'[1772323200000,"\\ud800"]')
DEEP_CURSOR = _cursor_of(b"[" * 5000 + b"]" * 5000)


def token(scope: str) -> str:
    return jwt.encode({"exp": time.time() + 300, "scope": scope}, SECRET, algorithm="HS256")


def bearer(scope: str = "events:all") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(scope)}"}


def heart_rate(n: int, bpm: int) -> dict[str, Any]:
    """A heart-rate observation document in the shape the flow stores, `n` minutes old."""
    measured = NOW - timedelta(minutes=n)
    reading = Reading(ObservationKind.HEART_RATE, {"heart_rate": bpm}, measured, measured)
    enriched = enrich_reading(reading, Thresholds())
    return {
        "_id": f"{n:032x}:0",
        "patient_id": "P0",
        "hospital_id": "H0",
        "kind": "heart_rate",
        "device_type": "Kati",
        "device_id": "861265061482607",
        "measured_at": measured,
        "device_time": measured,
        "received_at": measured,
        "values": {"heart_rate": bpm},
        "attributes": {},
        **enriched,
        "alert": enriched.get("severity") in ("high", "critical"),
    }


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root: Path = tmp_path_factory.mktemp("history_routes")
    SqliteEventLog(root / "events.db")
    store = f"montydb://{root / 'store'}"
    db = open_database(store, "vitalflow")
    db.patients.insert_one({"_id": "P0", "hospital_id": "H0", "last_vitals": {}})
    db.patients.insert_one({"_id": "P1", "hospital_id": "H1", "last_vitals": {}})
    db.devices.insert_one(
        {"_id": f"citizen_id:{CITIZEN_ID}", "patient_id": "P0", "device_type": "Qube-Vital",
         "id_kind": "citizen_id"}
    )  # fmt: skip
    db.devices.insert_one(
        {"_id": "imei:861265061482607", "patient_id": "P0", "device_type": "Kati",
         "id_kind": "imei"}
    )  # fmt: skip
    # Four ordinary readings and one severe tachycardia (an alert), newest first.
    for n, bpm in enumerate((190, 70, 71, 72, 73)):
        db.observations.insert_one(heart_rate(n, bpm))
    db.client.close()
    settings = Settings(
        auth="jwt",
        jwt_secret=SECRET,
        event_log_url=f"sqlite:///{root / 'events.db'}",
        mongo_url=store,
        mongo_db="vitalflow",
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def refused_parameter(response: Any) -> str:
    """The parameter a 422 names (the history routes' and FastAPI's own shape)."""
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return str(error["loc"][-1])


def outcome(response: Any, status_code: int) -> dict[str, Any]:
    """The one issue of an `OperationOutcome` answered with `status_code`."""
    assert response.status_code == status_code, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    (issue,) = body["issue"]
    return dict(issue)


# Citizen IDs


def test_patients_never_show_a_citizen_id_registered_as_a_device_key(client: TestClient) -> None:
    response = client.get("/patients", headers=bearer("patient:P0"))
    assert response.status_code == 200, response.text
    assert CITIZEN_ID not in response.text
    (patient,) = response.json()["items"]
    assert [d["key"] for d in patient["devices"]] == [
        "citizen_id:[redacted]",
        "imei:861265061482607",
    ]


# Times, cursors and widths no date can hold: 422 naming the parameter, never a 500


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("from=9999-12-31T23:59:59-05:00", "from"),
        ("from=0001-01-01T00:00:00%2B05:00", "from"),
        ("to=9999-12-31T23:59:59-05:00", "to"),
        (f"cursor={HUGE_CURSOR}", "cursor"),
        (f"cursor={SURROGATE_CURSOR}", "cursor"),
        (f"cursor={DEEP_CURSOR}", "cursor"),
    ],
)
def test_observation_pages_refuse_input_no_date_can_hold(
    client: TestClient, query: str, parameter: str
) -> None:
    response = client.get(f"/patients/P0/observations?{query}", headers=bearer())
    assert refused_parameter(response) == parameter


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("to=0001-01-01T00:00:00Z", "to"),
        ("bucket=99999999999999999999d", "bucket"),
        ("from=9999-12-31T23:59:59-05:00", "from"),
        ("bucket=" + "9" * 5000 + "s", "bucket"),  # past the digits `int` reads: a 500 before
        ("bucket=%C2%B2s", "bucket"),  # "²s": no width
    ],
)
def test_summaries_refuse_input_no_date_can_hold(
    client: TestClient, query: str, parameter: str
) -> None:
    url = f"/patients/P0/observations/summary?kind=heart_rate&{query}"
    assert refused_parameter(client.get(url, headers=bearer())) == parameter


def test_a_summary_from_after_the_default_to_is_refused(client: TestClient) -> None:
    url = "/patients/P0/observations/summary?kind=heart_rate&from=2100-01-01T00:00:00Z"
    assert refused_parameter(client.get(url, headers=bearer())) == "from"


def test_a_summary_still_defaults_to_the_last_24_hours(client: TestClient) -> None:
    response = client.get("/patients/P0/observations/summary?kind=heart_rate", headers=bearer())
    assert response.status_code == 200, response.text
    body = response.json()
    start, end = (datetime.fromisoformat(body[k]) for k in ("from", "to"))
    assert end - start == timedelta(hours=24)
    assert sum(b["count"] for b in body["buckets"]) == 5


def test_a_cursor_outside_the_dates_python_holds_is_invalid() -> None:
    earliest = HistoryCursor.after({"measured_at": datetime.min.replace(tzinfo=UTC), "_id": "a"})
    latest = HistoryCursor.after({"measured_at": datetime.max.replace(tzinfo=UTC), "_id": "a"})
    for cursor in (earliest, latest):
        assert HistoryCursor.decode(cursor.encode()) == cursor
    beyond = (earliest.measured_at_ms - 1, latest.measured_at_ms + 1, 10**22, -(10**22))
    for millis in beyond:
        with pytest.raises(InvalidCursorError):
            HistoryCursor.decode(HistoryCursor(millis, "a").encode())


# Alerts read times as the history does


def test_alerts_since_without_an_offset_is_utc(client: TestClient) -> None:
    naive = (NOW - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    response = client.get(f"/alerts?since={naive}&state=all", headers=bearer())
    assert response.status_code == 200, response.text
    body = response.json()
    assert datetime.fromisoformat(body["since"]) == NOW - timedelta(hours=1)
    assert [a["values"] for a in body["items"]] == [{"heart_rate": 190}]
    explicit = client.get(f"/alerts?since={naive}Z&state=all", headers=bearer()).json()
    assert explicit["items"] == body["items"]


def test_alerts_since_no_utc_date_can_hold_is_a_422(client: TestClient) -> None:
    response = client.get("/alerts?since=9999-12-31T23:59:59-05:00", headers=bearer())
    assert refused_parameter(response) == "since"


# FHIR: bad parameters are a 400 OperationOutcome, the scope a 403 one


@pytest.mark.parametrize(
    "query",
    [
        "patient=P0&date=9999-12-31T23:59:59.999999Z",
        "patient=P0&date=9999-12-31",
        "patient=P0&date=9999",
        f"patient=P0&_cursor={HUGE_CURSOR}",
        f"patient=P0&_cursor={SURROGATE_CURSOR}",
        f"patient=P0&_cursor={DEEP_CURSOR}",
        # Offsets that put the date past what UTC (and BSON) hold: a 500 before.
        "patient=P0&date=ge9999-12-31T23:59:59-01:00",
        "patient=P0&date=le0001-01-01T00:00:00%2B05:00",
        "",
        "patient=",
        "patient=P0&_count=0",
        "patient=P0&_count=abc",
    ],
)
def test_bad_fhir_search_parameters_are_a_400_operation_outcome(
    client: TestClient, query: str
) -> None:
    issue = outcome(client.get(f"/fhir/Observation?{query}", headers=bearer()), 400)
    assert issue["code"] == "invalid"
    assert issue["diagnostics"]


def test_a_fhir_search_outside_the_scope_is_a_403_operation_outcome(client: TestClient) -> None:
    response = client.get("/fhir/Observation?patient=P0", headers=bearer("patient:P1"))
    assert outcome(response, 403)["code"] == "forbidden"


def test_fhir_errors_of_auth_and_missing_patients_are_operation_outcomes(
    client: TestClient,
) -> None:
    missing_token = client.get("/fhir/Observation?patient=P0")
    assert outcome(missing_token, 401)["code"] == "login"
    assert missing_token.headers["www-authenticate"].startswith("Bearer")
    assert outcome(client.get("/fhir/Observation?patient=P9", headers=bearer()), 404)
    assert outcome(client.get("/fhir/Observation/nope", headers=bearer()), 404)


def test_the_fhir_openapi_lists_no_fastapi_validation_error(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/fhir/Observation", "/fhir/Observation/{resource_id}"):
        assert "422" not in paths[path]["get"]["responses"]


@pytest.mark.parametrize("name", ["access_token", "access%5Ftoken"])
def test_fhir_bundle_links_never_carry_the_query_token(client: TestClient, name: str) -> None:
    secret = token("patient:P0")
    response = client.get(f"/fhir/Observation?patient=P0&_count=2&{name}={secret}")
    assert response.status_code == 200, response.text
    assert secret not in response.text
    links = {link["relation"]: link["url"] for link in response.json()["link"]}
    assert set(links) == {"self", "next"}
    assert "access" not in links["self"] + links["next"]
    assert "patient=P0" in links["next"]
    assert "_count=2" in links["next"]
    following = client.get(links["next"], headers=bearer("patient:P0"))
    assert following.status_code == 200, following.text
    assert len(following.json()["entry"]) == 2


def test_a_request_body_holding_a_lone_surrogate_is_a_422_that_echoes_nothing(
    client: TestClient,
) -> None:
    # FastAPI's own handler echoed the refused value and could not encode it: a 500.
    headers = {**bearer("hospital:H0"), "Content-Type": "application/json"}
    body = b'{"note": "\\ud800 1234567890123"}'
    response = client.post(f"/alerts/{0:032x}:0/ack", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] and all("input" not in e for e in response.json()["detail"])
    assert CITIZEN_ID not in response.text
