"""The app's HTTP surface in-process (TestClient over the embedded SQLite log, no sockets)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import AuthConfigError
from api.server import build_server
from flows.settings import Settings
from sinks.sqlite_event_log import SqliteEventLog

SECRET = "app-unit-test-secret-long-enough-for-hs256!"
TOPIC = "vitalflow.steps"


def token(scope: str, expires_in: float = 300, key: str = SECRET) -> str:
    return jwt.encode({"exp": time.time() + expires_in, "scope": scope}, key, algorithm="HS256")


def bearer(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(scope)}"}


def step_event(n: int, patient: str | None, hospital: str | None, **data: object) -> bytes:
    step = ("1_mqtt_received", "5_medical_stored")[n % 2]
    body = {
        "message_id": f"m{n}",
        "step": step,
        "status": "success",
        "device_type": ("AVA4", "Kati")[n % 2],
        "device_id": f"D{n}",
        "patient_id": patient,
        "hospital_id": hospital,
        **data,
    }
    event = {"specversion": "1.0", "id": f"m{n}/{step}", "source": "vitalflow", "type": "t"}
    return json.dumps({**event, "data": body}).encode()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    path = tmp_path / "events.db"
    log = SqliteEventLog(path)
    log.append(TOPIC, b"D0", step_event(0, "P1", "H1"))
    log.append(TOPIC, b"D1", step_event(1, "P2", "H1", alert=True, severity="critical"))
    log.append(TOPIC, b"D2", step_event(2, "P3", "H2"))
    log.append(TOPIC, b"D3", step_event(3, None, None))
    settings = Settings(
        auth="jwt", jwt_secret=SECRET, steps_topic=TOPIC, event_log_url=f"sqlite:///{path}"
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_health_needs_no_token_and_reports_the_feed(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["auth"] == "jwt"
    assert body["dependencies"][0]["state"] == "ok"
    assert "sqlite" in body["dependencies"][0]["name"]


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, ""),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, ""),
        ({"Authorization": f"Bearer {token('events:all', expires_in=-10)}"}, ""),
        ({"Authorization": f"Bearer {token('events:all', key='x' * 40)}"}, ""),
        ({}, f"?access_token={token('events:all', key='y' * 40)}"),
    ],
    ids=["none", "not-bearer", "expired", "bad-signature", "bad-signature-in-query"],
)
def test_streams_and_queries_without_a_valid_token_are_401(
    client: TestClient, headers: dict[str, str], query: str
) -> None:
    for path in ("/events", "/events/recent", "/stats"):
        response = client.get(path + query, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "times",
    [
        {"exp": str(int(time.time()) + 600)},  # PyJWT converts it; RFC 7519 wants a number
        {"exp": time.time() + 600, "nbf": "0"},
        {"exp": time.time() + 600, "iat": True},
    ],
)
def test_a_time_claim_that_is_not_a_number_is_401(
    client: TestClient, times: dict[str, object]
) -> None:
    token = jwt.encode({**times, "scope": "events:all"}, SECRET, algorithm="HS256")
    response = client.get("/events/recent", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text


@pytest.mark.parametrize("scope", [5, {"events:all": 1}, ["events:all", 5], None])
def test_a_scope_claim_of_the_wrong_type_is_401_not_500_nor_a_grant(
    client: TestClient, scope: object
) -> None:
    claims = {"exp": time.time() + 60, "scope": scope}
    headers = {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}
    for path in ("/events", "/events/recent", "/stats"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401, path
        assert "scope claim" in response.json()["detail"]


@pytest.mark.parametrize(
    ("scope", "query"),
    [
        ("patient:P1", "patient_id=P2"),
        ("patient:P1", "hospital_id=H1"),
        ("hospital:H1", "hospital_id=H2"),
        ("", "patient_id=P1"),
    ],
)
def test_filters_outside_the_token_scope_are_403(
    client: TestClient, scope: str, query: str
) -> None:
    for path in ("/events", "/events/recent"):
        assert client.get(f"{path}?{query}", headers=bearer(scope)).status_code == 403


def test_unknown_steps_and_bad_positions_are_refused(client: TestClient) -> None:
    all_events = bearer("events:all")
    assert client.get("/events?step=6_nothing", headers=all_events).status_code == 422
    assert client.get("/events/recent?status=fine", headers=all_events).status_code == 422
    assert client.get("/events?last_event_id=yesterday", headers=all_events).status_code == 400
    bad_header = {**all_events, "Last-Event-ID": "0-x"}
    assert client.get("/events", headers=bad_header).status_code == 400


def test_recent_events_are_limited_to_the_token_scope(client: TestClient) -> None:
    def ids(scope: str, query: str = "") -> list[str]:
        response = client.get(f"/events/recent?{query}", headers=bearer(scope))
        assert response.status_code == 200
        return [e["data"]["message_id"] for e in response.json()["events"]]

    assert ids("events:all") == ["m0", "m1", "m2", "m3"]
    assert ids("hospital:H1") == ["m0", "m1"]
    assert ids("patient:P3 patient:P1") == ["m0", "m2"]
    assert ids("openid") == []
    assert ids("events:all", "device_type=Kati&limit=1") == ["m3"]
    assert ids("hospital:H1", "patient_id=P3") == []


def test_recent_events_come_back_as_written_with_the_position_after_them(
    client: TestClient,
) -> None:
    body = client.get("/events/recent", headers=bearer("events:all")).json()
    assert body["position"] == "0-4"
    assert body["events"][0] == json.loads(step_event(0, "P1", "H1"))


def test_the_token_may_come_in_the_query_for_eventsource(client: TestClient) -> None:
    response = client.get(f"/events/recent?access_token={token('patient:P2')}")
    assert [e["data"]["message_id"] for e in response.json()["events"]] == ["m1"]


def test_stats_count_what_the_token_may_see(client: TestClient) -> None:
    everything = client.get("/stats", headers=bearer("events:all")).json()
    assert everything["events"] == 4
    assert everything["alerts"] == 1
    assert everything["by_device_type"] == {"AVA4": 2, "Kati": 2}
    assert everything["by_step"]["5_medical_stored"] == {"success": 2}
    assert everything["messages"]["stored"] == 2
    assert everything["messages"]["success_rate"] == 1.0
    assert len(everything["throughput"]) == 60
    hospital = client.get("/stats", headers=bearer("hospital:H2")).json()
    assert hospital["events"] == 1
    assert hospital["alerts"] == 0


def test_metrics_are_prometheus_text_without_a_token(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for name in (
        "vitalflow_api_events_consumed_total",
        "vitalflow_api_events_sent_total",
        "vitalflow_api_clients_connected",
        "vitalflow_api_clients_dropped_total",
        "vitalflow_api_consumer_lag",
        "vitalflow_api_step_events_total",
    ):
        assert name in response.text


def test_the_dashboard_is_served_with_its_own_assets(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text
    for asset in ("/static/app.js", "/static/app.css"):
        assert client.get(asset).status_code == 200
    # Offline: nothing is loaded from another origin.
    assert "http://" not in page.text
    assert "https://" not in page.text


def test_every_endpoint_is_documented_with_a_summary(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {
        "/events",
        "/events/recent",
        "/stats",
        "/health",
        "/metrics",
        "/",
        "/patients",
        "/patients/{patient_id}/observations",
        "/patients/{patient_id}/observations/summary",
        "/fhir/Observation",
        "/fhir/Observation/{resource_id}",
        "/alerts",
        "/alerts/{alert_id}/ack",
    }
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation["summary"], (method, path)


def test_auth_on_without_a_key_refuses_to_start() -> None:
    with pytest.raises(AuthConfigError):
        create_app(Settings(auth="jwt", jwt_secret=None, jwt_public_key=None))


def test_an_event_log_url_other_than_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="sqlite"):
        create_app(Settings(auth="off", event_log_url="postgres://db/events"))


def _access_line(target: str) -> str:
    """The access log line uvicorn writes for a GET of `target`, after the app's filters."""
    access_log = logging.getLogger("uvicorn.access")
    record = access_log.makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", target, "1.1", 200),
        None,
    )
    assert all(f.filter(record) for f in access_log.filters)
    return record.getMessage()


def test_tokens_in_the_query_string_never_reach_the_access_log() -> None:
    build_server(Settings(auth="jwt", jwt_secret=SECRET))
    line = _access_line("/events?access_token=eyJ.secret.sig&step=x")
    assert "eyJ.secret.sig" not in line
    assert "access_token=[redacted]&step=x" in line


@pytest.mark.parametrize("name", ["access%5Ftoken", "%61ccess_token", "access%5ftoken"])
def test_tokens_under_an_encoded_parameter_name_never_reach_the_access_log(
    client: TestClient, name: str
) -> None:
    jwt_text = token("patient:P2")
    # The app decodes the name and accepts the token, so the log must not show it either.
    response = client.get(f"/events/recent?{name}={jwt_text}")
    assert [e["data"]["message_id"] for e in response.json()["events"]] == ["m1"]
    build_server(Settings(auth="jwt", jwt_secret=SECRET))
    line = _access_line(f"/events?step=x&{name}={jwt_text}&limit=3")
    assert jwt_text not in line
    assert jwt_text.split(".")[1] not in line
    assert f"?step=x&{name}=[redacted]&limit=3" in line


def test_other_query_parameters_are_logged_as_sent() -> None:
    build_server(Settings(auth="jwt", jwt_secret=SECRET))
    target = "/events?patient_id=P1&my_access_token=abc&step=x"
    assert target in _access_line(target)


def test_odd_records_on_the_topic_neither_fail_the_feed_nor_the_recent_events(
    tmp_path: Path,
) -> None:
    # Records another producer could write (an adversarial probe's): pretty-printed JSON
    # holding an escaped lone surrogate made the feed's reader fail on it, and again after
    # every restart (health 503); a record with a `data` object but a number for its `id`
    # made /events/recent a 500 for everyone who could see it; JSON nested past the
    # recursion limit.
    path = tmp_path / "events.db"
    log = SqliteEventLog(path)
    pretty = json.loads(step_event(0, "P1", "H1"))
    pretty["data"]["payload"] = {"marker": "\ud800"}
    log.append(TOPIC, b"D0", json.dumps(pretty, indent=1).encode())
    odd = json.loads(step_event(1, "P1", "H1"))
    odd["id"] = 7
    log.append(TOPIC, b"D1", json.dumps(odd).encode())
    log.append(TOPIC, b"D2", b"[" * 5000 + b"]" * 5000)
    log.append(TOPIC, b"D3", step_event(3, "P1", "H1"))
    settings = Settings(
        auth="jwt", jwt_secret=SECRET, steps_topic=TOPIC, event_log_url=f"sqlite:///{path}"
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        response = client.get("/events/recent", headers=bearer("events:all"))
        assert response.status_code == 200, response.text
        events = response.json()["events"]
        assert [e["data"]["message_id"] for e in events] == ["m0", "m3"]
        # The JSON answer is UTF-8, which has no lone surrogates: U+FFFD, as the flow reads it.
        assert events[0]["data"]["payload"] == {"marker": "\ufffd"}
