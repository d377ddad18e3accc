"""The broker's own limits, as deploy/mosquitto/mosquitto.conf sets them.

Payloads over `message_size_limit` (1 MiB) are refused by Mosquitto: the QoS flow completes
but nothing reaches a subscriber, so the flow never holds such a message in memory. What the
flow itself would dead-letter as too large (over 256 KiB) still gets through to it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from connectors.mqtt_source import MqttTarget
from flows.devices.parse_payload import MAX_PAYLOAD_BYTES

BROKER_LIMIT = 1024 * 1024


def test_the_broker_refuses_payloads_over_1_mib_and_passes_smaller_oversized_ones(
    services: Any, unique_id: str
) -> None:
    target = MqttTarget.from_url(services.mqtt_url)
    topic = f"vf_test_{unique_id}/limit"
    got: list[int] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(len(message.payload))
        if len(message.payload) == 1:
            done.set()

    subscriber = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    subscriber.on_message = on_message
    subscriber.connect(target.host, target.port)
    subscriber.loop_start()
    subscriber.subscribe(topic, qos=1)
    time.sleep(0.3)
    publisher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect(target.host, target.port)
    publisher.loop_start()
    try:
        for size in (BROKER_LIMIT + 1, 2 * MAX_PAYLOAD_BYTES, 1):
            info = publisher.publish(topic, b"x" * size, qos=1)
            info.wait_for_publish(timeout=10)
            assert info.is_published()  # refused, yet the QoS 1 flow completes
        assert done.wait(timeout=10)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        subscriber.disconnect()
        subscriber.loop_stop()
    assert got == [2 * MAX_PAYLOAD_BYTES, 1]
