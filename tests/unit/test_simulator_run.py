"""`run_simulation` with a stand-in publisher: limits, pacing, reports, interruptions, privacy."""

from __future__ import annotations

import json
import logging
import math
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

import flows.simulator.simulator as simulator
from flows.settings import Settings
from flows.simulator.device_roster import roster
from flows.simulator.payload_factory import SimulatedMessage, simulated_clock

SETTINGS = Settings(mqtt_url="mqtt://127.0.0.1:1")


class FakePublisher:
    """Records what would have gone to the broker; acks all or only some of it."""

    instances: list[FakePublisher] = []
    ack_every: int = 1

    def __init__(self, url: str, *, client_id: str, ca_file: str | None = None) -> None:
        self.url = url
        self.client_id = client_id
        self.published: list[tuple[str, bytes]] = []
        self.connected = False
        self.closed = False
        FakePublisher.instances.append(self)

    @property
    def endpoint(self) -> str:
        return "fake:1883"

    @property
    def sent(self) -> int:
        return len(self.published)

    @property
    def acked(self) -> int:
        return len(self.published) // self.ack_every

    def connect(self) -> None:
        self.connected = True

    def publish(self, topic: str, payload: bytes) -> None:
        assert self.connected and not self.closed
        self.published.append((topic, payload))

    def wait_for_acks(self, timeout_s: float) -> bool:
        return self.acked >= self.sent

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def fake_publisher(monkeypatch: pytest.MonkeyPatch) -> type[FakePublisher]:
    FakePublisher.instances = []
    FakePublisher.ack_every = 1
    monkeypatch.setattr(simulator, "MqttPublisher", FakePublisher)
    return FakePublisher


def test_count_ends_the_run_and_the_report_adds_up():
    seen: list[SimulatedMessage] = []
    report = simulator.run_simulation(SETTINGS, rate=math.inf, count=300, on_sent=seen.append)
    publisher = FakePublisher.instances[0]
    assert report.sent == report.acked == 300 and report.complete
    assert sum(report.by_category.values()) == sum(report.by_family.values()) == 300
    assert report.expected_readings == sum(m.expected_readings for m in seen)
    assert [(m.topic, m.payload) for m in seen] == publisher.published
    assert publisher.closed


def test_duration_ends_a_paced_run():
    report = simulator.run_simulation(SETTINGS, rate=100, duration=0.3)
    assert 25 <= report.sent <= 31
    assert 0.25 <= report.elapsed_s < 1.5


def test_rate_is_held():
    report = simulator.run_simulation(SETTINGS, rate=200, count=41)
    assert report.elapsed_s >= 0.19
    assert report.rate_achieved <= 220


def test_stop_event_ends_the_run():
    stop = threading.Event()

    def stop_after_ten(message: SimulatedMessage) -> None:
        if message.sequence == 9:
            stop.set()

    report = simulator.run_simulation(SETTINGS, rate=1000, stop=stop, on_sent=stop_after_ten)
    assert report.sent == 10


def test_ctrl_c_ends_the_run_and_still_reports():
    def interrupt(message: SimulatedMessage) -> None:
        if message.sequence == 4:
            raise KeyboardInterrupt

    report = simulator.run_simulation(SETTINGS, rate=math.inf, on_sent=interrupt)
    assert report.interrupted and report.sent == 5
    assert FakePublisher.instances[0].closed
    assert "(interrupted)" in str(report)


def test_unacknowledged_messages_are_reported(fake_publisher: type[FakePublisher]):
    fake_publisher.ack_every = 2
    report = simulator.run_simulation(SETTINGS, rate=math.inf, count=10, ack_timeout_s=0.01)
    assert (report.sent, report.acked, report.complete) == (10, 5, False)
    assert "5 messages not acknowledged" in str(report)


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan])
def test_a_rate_that_is_not_positive_is_refused_before_connecting(rate: float):
    with pytest.raises(ValueError, match="rate"):
        simulator.run_simulation(SETTINGS, rate=rate, count=1)
    assert not FakePublisher.instances


def test_the_same_seed_and_clock_send_the_same_messages():
    # A fixed clock, not the wall clock: with wall time a message that repeats bytes sent in
    # the same second is rebuilt from fresh draws, so two runs may differ (see run_simulation).
    start = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)

    def sent() -> list[tuple[str, str, bytes]]:
        seen: list[SimulatedMessage] = []
        simulator.run_simulation(
            SETTINGS,
            rate=math.inf,
            count=300,
            seed=3,
            on_sent=seen.append,
            clock=simulated_clock(start, 0.001),
        )
        return [(m.category, m.message_kind, m.payload) for m in seen]

    first = sent()
    assert first == sent()
    assert len({kind for _, kind, _ in first}) > 5


def test_the_client_id_never_takes_over_the_flows_session():
    simulator.run_simulation(SETTINGS, rate=math.inf, count=1)
    simulator.run_simulation(SETTINGS, rate=math.inf, count=1)
    first, second = (p.client_id for p in FakePublisher.instances)
    assert first.startswith("vitalflow-simulator-") and first != second
    assert SETTINGS.mqtt_client_id not in (first, second)


def test_logs_carry_no_personal_data(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    seen: list[SimulatedMessage] = []
    simulator.run_simulation(SETTINGS, rate=math.inf, count=400, on_sent=seen.append)
    qube = [json.loads(m.payload) for m in seen if m.family == "Qube" and m.category == "valid"]
    assert qube
    personal: set[Any] = {q["citiz"] for q in qube} | {q["nameEN"] for q in qube}
    personal |= {p.card.name_th for p in roster().patients if p.card is not None}
    assert not any(value in caplog.text for value in personal)
    assert "simulation done" in caplog.text
