"""Stage 1: a message from the broker becomes an envelope with its `1_mqtt_received` outcome.

The source hands over topic, bytes and arrival time; the message id (a digest of topic and
bytes, the de-duplication key) is given here, by the flow, not by the connector.

The device is named by stage 2 (from the parsed payload, or as far as the raw bytes allow when
parsing fails); events are built at the end of the flow, so every event carries that name.
"""

from __future__ import annotations

from dataclasses import replace

from connectors.mqtt_source import MqttMessage
from flows.devices.parse_payload import UNKNOWN
from flows.model import Delivery, Envelope, Step, StepOutcome, StepStatus, fingerprint
from flows.replay_topic import split_replay_topic

__all__ = ["delivery_of", "receive"]


def delivery_of(message: MqttMessage) -> Delivery:
    """Name a received message: its id is a digest of its topic and exact bytes."""
    return Delivery(
        topic=message.topic,
        payload=message.payload,
        received_at=message.received_at,
        message_id=fingerprint(message.topic, message.payload),
    )


def receive(message: MqttMessage | Delivery, replay_prefix: str | None = None) -> Envelope:
    """Wrap a message (named already, or named here); its device is not known until parsed.

    A copy sent by `vitalflow dlq replay` (a topic under `replay_prefix`) continues as the
    message it replays: its device's topic, and the message id that topic and bytes give.
    """
    delivery = message if isinstance(message, Delivery) else delivery_of(message)
    processed: dict[str, object] = {"bytes": len(delivery.payload)}
    replayed = split_replay_topic(replay_prefix, delivery.topic) if replay_prefix else None
    if replayed is not None:
        delivery = replace(
            delivery,
            topic=replayed.topic,
            message_id=fingerprint(replayed.topic, delivery.payload),
            replay_of=replayed.failed_delivery,
        )
        processed["replay_of_delivery"] = replayed.failed_delivery
    received = StepOutcome(
        step=Step.RECEIVED,
        status=StepStatus.SUCCESS,
        at=delivery.received_at,
        processed_data=processed,
    )
    return Envelope(
        delivery=delivery,
        device_type=UNKNOWN,
        device_id=UNKNOWN,
        payload={},
        outcomes=[received],
    )
