"""The benchmark's lean publisher against the real Mosquitto: every message arrives intact.

The fixed-rate figures of `tests/bench/bench_pipeline.py` rest on it, so it is checked like
the rest: packets of every remaining-length size, QoS 1 acknowledged, nothing lost or changed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from raw_publisher import RawPublisher, publish_packet, remaining_length

from connectors.mqtt_source import MqttTarget


def test_remaining_length_uses_mqtts_variable_length_encoding() -> None:
    assert remaining_length(0) == b"\x00"
    assert remaining_length(127) == b"\x7f"
    assert remaining_length(128) == b"\x80\x01"
    assert remaining_length(16_383) == b"\xff\x7f"
    assert remaining_length(16_384) == b"\x80\x80\x01"
    assert remaining_length(2_097_152) == b"\x80\x80\x80\x01"


def test_publish_packet_layout() -> None:
    packet = publish_packet("a/b", b"xyz", 258)
    # QoS 1 PUBLISH, remaining length 2+3 (topic) + 2 (packet id) + 3 (payload) = 10.
    assert packet == b"\x32\x0a\x00\x03a/b\x01\x02xyz"


def test_every_message_arrives_intact_and_acknowledged(services, unique_id: str) -> None:  # type: ignore[no-untyped-def]
    target = MqttTarget.from_url(services.mqtt_url)
    topic = f"vitalflow-test/raw-publisher/{unique_id}"
    # Sizes around each boundary of the remaining-length encoding, and a large one.
    sizes = [0, 1, 100, 115, 116, 117, 16_360, 16_380, 20_000, 200_000] * 3 + [300] * 270
    messages = [(topic, bytes([i % 251]) * size) for i, size in enumerate(sizes)]
    received: list[bytes] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        received.append(bytes(message.payload))
        if len(received) == len(messages):
            done.set()

    subscribed = threading.Event()
    subscriber = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311
    )
    subscriber.on_message = on_message
    subscriber.on_subscribe = lambda *_args: subscribed.set()
    subscriber.connect(target.host, target.port)
    subscriber.loop_start()
    try:
        subscriber.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        publisher = RawPublisher(target.host, target.port, f"vf-test-raw-{unique_id}")
        sent: dict[int, float] = {}
        try:
            achieved = publisher.publish_at_rate(messages, 2_000, sent.__setitem__)
            assert publisher.wait_for_acks(len(messages))
        finally:
            publisher.close()
        assert publisher.acked == len(messages)
        assert sorted(sent) == list(range(len(messages)))
        assert achieved > 0
        assert done.wait(30), f"{len(received)} of {len(messages)} arrived"
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
    # One connection, QoS 1: the broker keeps the order.
    assert received == [payload for _topic, payload in messages]
