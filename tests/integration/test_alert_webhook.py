"""`vitalflow alerts webhook` against an HTTP server run by the test: signed, retried, resumed.

The alerts are written to the topic as the flow writes them (real Kafka, and the demo's
SQLite log); the receiver answers 500 to the first attempt, then 200. Every request's HMAC
signature is checked the way a receiver would; a second run of the consumer group delivers
only what is new.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flows.commands.alert_webhook import WebhookReport, deliver_alerts
from flows.settings import Settings
from sinks.kafka_writer import CLOUDEVENTS_JSON, KafkaWriter, ensure_topics
from sinks.sqlite_event_log import SqliteEventLog

SECRET = "webhook-test-secret"


@dataclass
class Receiver:
    """What the test's webhook receiver got, and how it answers."""

    url: str = ""
    failures_left: int = 1
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["status"] == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                status = 500 if state.failures_left > 0 else 200
                state.failures_left -= 1
                state.requests.append(
                    {"headers": dict(self.headers), "body": body, "status": status}
                )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


def alert(alert_id: str, kind: str = "sos") -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": alert_id,
            "source": "vitalflow",
            "type": f"vitalflow.alert.{kind}",
            "data": {"alert_id": alert_id, "kind": kind, "patient_id": "P1"},
        }
    ).encode()


def verify(request: dict[str, Any]) -> None:
    """Check a request the way a receiver does: the HMAC of `<timestamp>.<body>`."""
    headers = request["headers"]
    timestamp = headers["X-Vitalflow-Timestamp"]
    assert abs(time.time() - int(timestamp)) < 300
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request["body"], "sha256")
    assert hmac.compare_digest(headers["X-Vitalflow-Signature"], f"sha256={expected.hexdigest()}")
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert headers["X-Vitalflow-Alert-Id"] == json.loads(request["body"])["id"]


def run_until(settings: Settings, receiver: Receiver, delivered: int) -> WebhookReport:
    """Run the delivery in a thread until the receiver took `delivered` alerts in all."""
    stop = threading.Event()
    reports: list[WebhookReport] = []
    thread = threading.Thread(target=lambda: reports.append(deliver_alerts(settings, stop)))
    thread.start()
    deadline = time.monotonic() + 60
    while len(receiver.delivered()) < delivered and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # anything more would arrive now
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    assert len(receiver.delivered()) == delivered, receiver.requests
    return reports[0]


def check_deliveries(settings: Settings, receiver: Receiver, write: Any) -> None:
    write([("P1", alert("m1:0")), ("P1", alert("m1:0")), ("P2", alert("m2:0", "fall"))])

    report = run_until(settings, receiver, 2)

    # The 500 was retried; the redelivered alert (same id) was not sent twice.
    assert [r["status"] for r in receiver.requests] == [500, 200, 200]
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]
    assert receiver.requests[1]["headers"]["X-Vitalflow-Delivery-Attempt"] == "2"
    for request in receiver.requests:
        verify(request)
    assert [json.loads(r["body"])["id"] for r in receiver.delivered()] == ["m1:0", "m2:0"]
    assert (report.delivered, report.repeats) == (2, 1)

    # A restart of the group resumes after what it delivered.
    write([("P3", alert("m3:0", "bp_hypertensive_crisis"))])
    run_until(settings, receiver, 3)
    assert json.loads(receiver.delivered()[-1]["body"])["id"] == "m3:0"


def test_alerts_on_kafka_reach_the_webhook_signed_retried_and_once(
    services: Any, unique_id: str, receiver: Receiver
) -> None:
    topic = f"vitalflow.alerts.test-{unique_id}"
    ensure_topics(services.kafka_bootstrap, {topic: 1})
    writer = KafkaWriter(services.kafka_bootstrap, {topic: CLOUDEVENTS_JSON})
    settings = Settings(
        kafka_bootstrap=services.kafka_bootstrap,
        alerts_topic=topic,
        alert_webhook_url=receiver.url,
        alert_webhook_secret=SECRET,
        alert_webhook_group=f"vf-test-webhook-{unique_id}",
    )
    try:
        check_deliveries(settings, receiver, lambda records: writer.write(topic, records))
    finally:
        writer.close()


def test_alerts_in_the_demo_event_log_reach_the_webhook(tmp_path: Path, receiver: Receiver) -> None:
    path = tmp_path / "events.db"
    log = SqliteEventLog(path)
    settings = Settings(
        event_log_url=f"sqlite:///{path}",
        alert_webhook_url=receiver.url,
        alert_webhook_secret=SECRET,
    )
    check_deliveries(settings, receiver, lambda records: log.write(settings.alerts_topic, records))
    assert log.committed(settings.alert_webhook_group, settings.alerts_topic) == 4


def test_a_refused_alert_is_not_retried(tmp_path: Path) -> None:
    from sinks.webhook import Outcome, WebhookSender

    calls: list[int] = []

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            calls.append(1)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sender = WebhookSender(f"http://127.0.0.1:{server.server_address[1]}/", SECRET)
        outcome = sender.deliver(alert("m9:0"), "m9:0", threading.Event())
    finally:
        server.shutdown()
        server.server_close()
    assert outcome is Outcome.REFUSED
    assert calls == [1]
