"""Stage 1: a delivery from the broker becomes an envelope with its `1_mqtt_received` outcome.

The device is named by stage 2 (from the parsed payload, or as far as the raw bytes allow when
parsing fails); events are built at the end of the flow, so every event carries that name.
"""

from __future__ import annotations

from flows.model import Delivery, Envelope, Step, StepOutcome, StepStatus
from flows.parse import UNKNOWN

__all__ = ["receive"]


def receive(delivery: Delivery) -> Envelope:
    """Wrap a delivery; its device is not known until the payload is parsed."""
    received = StepOutcome(
        step=Step.RECEIVED,
        status=StepStatus.SUCCESS,
        at=delivery.received_at,
        processed_data={"bytes": len(delivery.payload)},
    )
    return Envelope(
        delivery=delivery,
        device_type=UNKNOWN,
        device_id=UNKNOWN,
        payload={},
        outcomes=[received],
    )
