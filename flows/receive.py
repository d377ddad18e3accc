"""Stage 1: a delivery from the broker becomes an envelope with its `1_mqtt_received` outcome."""

from __future__ import annotations

from flows.model import Delivery, Envelope, Step, StepOutcome, StepStatus
from flows.parse import identify

__all__ = ["receive"]


def receive(delivery: Delivery) -> Envelope:
    """Wrap a delivery, naming its device as far as the raw bytes allow."""
    device_type, device_id = identify(delivery.topic, delivery.payload)
    received = StepOutcome(
        step=Step.RECEIVED,
        status=StepStatus.SUCCESS,
        at=delivery.received_at,
        processed_data={"bytes": len(delivery.payload)},
    )
    return Envelope(
        delivery=delivery,
        device_type=device_type,
        device_id=device_id,
        payload={},
        outcomes=[received],
    )
