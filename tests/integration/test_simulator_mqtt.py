"""The simulator against the real Mosquitto: what it publishes arrives byte-identical, in order.

The broker is shared with other tests, so each run uses a roster seed of its own and keeps
only the messages whose bytes it sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connectors.mqtt_publisher import MqttPublisher, MqttPublishError
from flows.settings import Settings
from flows.simulator.payload_factory import SimulatedMessage
from flows.simulator.simulator import run_simulation

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0
ALL_SIMULATED_TOPICS = [
    "ESP32_BLE_GW_TX",
    "dusun_pub",
    "dusun_sub",
    "iMEDE_watch/#",
    "CM4_BLE_GW_TX",
]


class Capture:
    """A QoS 1 subscriber that keeps every message it receives."""

    def __init__(self, url: str, client_id: str, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        self._client.on_connect = lambda c, u, f, r, p: c.subscribe([(t, 1) for t in topics])
        self._client.on_subscribe = lambda c, u, m, r, p: self._subscribed.set()
        self._client.on_message = self._on_message
        parts = urlsplit(url)
        self._client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self._client.loop_start()
        assert self._subscribed.wait(TIMEOUT_S), "no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def wait_for(self, wanted: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """Return the received messages that are among `wanted`, once all came (or timeout)."""
        wanted_set = set(wanted)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            with self._lock:
                mine = [m for m in self.messages if m in wanted_set]
            if len(mine) >= len(wanted):
                break
            time.sleep(0.05)
        return mine

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def capture(services: Any, unique_id: str) -> Iterator[Capture]:
    subscriber = Capture(services.mqtt_url, f"vf-test-sim-{unique_id}", ALL_SIMULATED_TOPICS)
    yield subscriber
    subscriber.close()


def test_published_messages_arrive_byte_identical_and_in_order(
    services: Any, unique_id: str, capture: Capture
):
    sent: list[SimulatedMessage] = []
    settings = Settings(mqtt_url=services.mqtt_url)
    report = run_simulation(
        settings, rate=400, count=600, seed=int(unique_id, 16) % 100_000, on_sent=sent.append
    )
    assert report.sent == report.acked == 600
    expected = [(m.topic, m.payload) for m in sent]
    assert capture.wait_for(expected) == expected
    assert {m.category for m in sent} >= {"valid", "status", "duplicate", "malformed"}


def test_a_duration_bound_run_reports_what_the_broker_acknowledged(
    services: Any, unique_id: str, capture: Capture
):
    sent: list[SimulatedMessage] = []
    settings = Settings(mqtt_url=services.mqtt_url)
    report = run_simulation(
        settings, rate=50, duration=1.0, seed=int(unique_id, 16) % 100_000 + 1, on_sent=sent.append
    )
    assert 45 <= report.sent <= 51 and report.complete
    assert len(capture.wait_for([(m.topic, m.payload) for m in sent])) == report.sent


def test_an_unreachable_broker_is_reported_quickly():
    publisher = MqttPublisher("mqtt://127.0.0.1:1", client_id="vf-test-unreachable")
    started = time.monotonic()
    with pytest.raises(MqttPublishError, match=r"127\.0\.0\.1:1"):
        publisher.connect(timeout_s=1.0)
    assert time.monotonic() - started < 5
