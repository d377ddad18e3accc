"""Dead letters: what could not be stored, with the raw payload, so it can be replayed.

The dead-letter topic keeps raw payloads, personal data included: it is sensitive and must be
access-controlled like the database (see README). Step events and logs never carry it.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from flows.model import Envelope
from flows.step_events import isoformat_z

__all__ = ["dead_letters"]


def dead_letters(envelope: Envelope) -> list[tuple[str, tuple[str, bytes]]]:
    """Return the dead-letter record of an envelope whose chain ended in an error, if any."""
    failed = envelope.failed
    if failed is None:
        return []
    delivery = envelope.delivery
    try:
        payload, encoding = delivery.payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(delivery.payload).decode("ascii"), "base64"
    record = {
        "message_id": delivery.message_id,
        "topic": delivery.topic,
        "payload_encoding": encoding,
        "payload": payload,
        "reason": {
            "step": str(failed.step),
            "code": failed.error_code,
            "message": failed.error_message,
        },
        "device_type": envelope.device_type,
        "device_id": envelope.device_id,
        "received_at": isoformat_z(delivery.received_at),
        "dead_lettered_at": isoformat_z(datetime.now(UTC)),
    }
    key = envelope.device_id
    return [(key, (key, json.dumps(record, ensure_ascii=False).encode()))]
