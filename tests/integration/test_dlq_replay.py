"""Dead-letter replay against real Kafka and Mosquitto.

Each test writes dead letters (built by the flow's own writer) to a Kafka topic of its own,
with a replay prefix of its own, and listens under that prefix: replay must put the exact
original bytes on `<replay prefix>/<delivery>/<original topic>` (the flow subscribes there),
and commit so that a replay does not repeat.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from paho.mqtt.enums import CallbackAPIVersion

from flows.commands.dlq_replay import replay_dead_letters
from flows.dead_letters import dead_letters
from flows.model import Delivery, Envelope, Step, StepOutcome, StepStatus, fingerprint
from flows.settings import Settings

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def dead_letter(topic: str, payload: bytes, code: str) -> tuple[bytes, bytes]:
    delivery = Delivery(topic, payload, T0, fingerprint(topic, payload))
    failed = StepOutcome(Step.LOOKUP, StepStatus.ERROR, T0, error_code=code, error_message="m")
    [(key, (_, value))] = dead_letters(Envelope(delivery, "Kati", "861265061482607", {}, [failed]))
    return key.encode(), value


class Listener:
    """A QoS 1 subscriber on `<prefix>/#` that keeps what it receives."""

    def __init__(self, url: str, client_id: str, prefix: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        self._client.on_connect = lambda c, u, f, r, p: c.subscribe(f"{prefix}/#", qos=1)
        self._client.on_subscribe = lambda c, u, m, r, p: subscribed.set()
        self._client.on_message = self._on_message
        parts = urlsplit(url)
        self._client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self._client.loop_start()
        assert subscribed.wait(TIMEOUT_S), "no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def wait_for(
        self, count: int, settle_s: float = 0.5, timeout_s: float = TIMEOUT_S
    ) -> list[tuple[str, bytes]]:
        """Return what came once `count` messages did (or at timeout), after `settle_s` more."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.messages) < count:
            time.sleep(0.05)
        time.sleep(settle_s)  # anything beyond `count` would show up now
        with self._lock:
            return list(self.messages)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class DlqFixture:
    settings: Settings
    prefix: str
    listener: Listener
    producer: KafkaProducer

    def write(self, letters: list[tuple[str, bytes, str]]) -> None:
        for topic, payload, code in letters:
            key, value = dead_letter(topic, payload, code)
            self.producer.send(self.settings.dlq_topic, key=key, value=value)
        self.producer.flush(TIMEOUT_S)

    def write_raw(self, value: bytes) -> None:
        self.producer.send(self.settings.dlq_topic, key=b"x", value=value)
        self.producer.flush(TIMEOUT_S)


@pytest.fixture
def dlq(services: Any, unique_id: str) -> Iterator[DlqFixture]:
    topic = f"vitalflow.test.dlq-{unique_id}"
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap, client_id="vf-test")
    admin.create_topics([NewTopic(name=topic, num_partitions=2, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    prefix = f"vf_test_{unique_id}"
    listener = Listener(services.mqtt_url, f"vf-test-dlq-{unique_id}", prefix)
    settings = Settings(
        mqtt_url=services.mqtt_url,
        kafka_bootstrap=services.kafka_bootstrap,
        dlq_topic=topic,
        mqtt_replay_prefix=f"{prefix}/replay",
    )
    try:
        yield DlqFixture(settings, prefix, listener, producer)
    finally:
        listener.close()
        producer.close()
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()


LETTERS = [
    (
        "iMEDE_watch/VitalSign",
        b'{"IMEI": "861265061482607", "heartRate": 72}',
        "unknown_device",
    ),
    (
        "CM4_BLE_GW_TX",
        '{"citiz": "3570300400004", "nameTH": "นาย#สาธิต"}'.encode(),
        "unknown_device",
    ),
    ("dusun_pub", b"\x9f\x00\xff not utf-8 at all", "invalid_json"),
    ("dusun_pub", b'{"truncated": ', "invalid_json"),
]


def test_replay_puts_the_original_bytes_back_on_the_original_topics(dlq: DlqFixture):
    dlq.write(LETTERS)
    dlq.write_raw(b"this is not a dead letter")
    report = replay_dead_letters(dlq.settings, group_id=f"{dlq.prefix}-replay")
    expected = sorted((f"{dlq.prefix}/replay/1/{t}", p) for t, p, _ in LETTERS)
    assert sorted(dlq.listener.wait_for(len(expected))) == expected
    assert (report.consumed, report.replayed, report.undecodable) == (5, 4, 1)
    assert report.fingerprint_mismatches == 0
    assert sum(report.committed.values()) == 5


def test_a_group_replays_each_letter_once_unless_rewound(dlq: DlqFixture):
    group = f"{dlq.prefix}-replay"
    dlq.write(LETTERS[:2])
    assert replay_dead_letters(dlq.settings, group_id=group).replayed == 2
    assert len(dlq.listener.wait_for(2)) == 2

    dlq.listener.clear()
    assert replay_dead_letters(dlq.settings, group_id=group).replayed == 0
    dlq.write(LETTERS[2:3])
    assert replay_dead_letters(dlq.settings, group_id=group).replayed == 1
    assert dlq.listener.wait_for(1) == [(f"{dlq.prefix}/replay/1/dusun_pub", LETTERS[2][1])]

    dlq.listener.clear()
    assert replay_dead_letters(dlq.settings, group_id=group, from_beginning=True).replayed == 3
    assert len(dlq.listener.wait_for(3)) == 3


def test_a_dry_run_sends_nothing_and_a_real_run_then_sends_all(dlq: DlqFixture):
    group = f"{dlq.prefix}-replay"
    dlq.write(LETTERS)
    dry = replay_dead_letters(dlq.settings, group_id=group, dry_run=True)
    assert dry.replayed == 4 and dry.committed == {}
    assert dlq.listener.wait_for(1, settle_s=0, timeout_s=1.0) == []
    only_unknown = replay_dead_letters(dlq.settings, group_id=group, codes={"unknown_device"})
    assert (only_unknown.replayed, only_unknown.filtered) == (2, 2)
    assert len(dlq.listener.wait_for(2)) == 2


def test_an_absent_dlq_topic_replays_nothing(services: Any, unique_id: str):
    settings = Settings(
        mqtt_url=services.mqtt_url,
        kafka_bootstrap=services.kafka_bootstrap,
        dlq_topic=f"vitalflow.test.absent-{unique_id}",
    )
    report = replay_dead_letters(settings, group_id=f"vf-test-{unique_id}")
    assert (report.consumed, report.replayed) == (0, 0)
