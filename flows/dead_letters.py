"""Dead letters: what could not be stored, with the raw payload, so it can be replayed.

The dead-letter topic keeps raw payloads, personal data included: it is sensitive and must be
access-controlled like the database (see README). Step events and logs never carry it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from flows.model import Envelope
from flows.step_events import isoformat_z

__all__ = ["MAX_DEAD_LETTER_PAYLOAD", "dead_letters"]

# Whole payloads up to this size fit a Kafka record (1 MiB by default) even in base64; larger
# ones (only hostile input is that large) keep their first bytes, size and digest.
MAX_DEAD_LETTER_PAYLOAD = 512 * 1024


def dead_letters(envelope: Envelope) -> list[tuple[str, tuple[str, bytes]]]:
    """Return the dead-letter record of an envelope whose chain ended in an error, if any."""
    failed = envelope.failed
    if failed is None:
        return []
    delivery = envelope.delivery
    raw = delivery.payload[:MAX_DEAD_LETTER_PAYLOAD]
    try:
        payload, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    record: dict[str, object] = {
        "message_id": delivery.message_id,
        "topic": delivery.topic,
        # Which delivery of the message this was: a replay numbers on from it.
        "delivery": envelope.delivery_number,
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
    if len(delivery.payload) > MAX_DEAD_LETTER_PAYLOAD:
        record["payload_truncated"] = True
        record["payload_bytes"] = len(delivery.payload)
        record["payload_sha256"] = hashlib.sha256(delivery.payload).hexdigest()
    key = envelope.device_id
    return [(key, (key, json.dumps(record, ensure_ascii=False).encode()))]
