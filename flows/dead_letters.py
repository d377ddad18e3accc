"""Dead letters: what could not be stored, with the raw payload, so it can be replayed.

The dead-letter topic keeps raw payloads, personal data included: it is sensitive and must be
access-controlled like the database (see README). Step events and logs never carry it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
from datetime import UTC, datetime

from flows.flow_metrics import DEAD_LETTERS
from flows.model import Envelope, Step, StepOutcome, StepStatus
from flows.redact import scrub_citizen_ids
from flows.step_events import isoformat_z

__all__ = ["MAX_DEAD_LETTER_BYTES", "PARTS_REJECTED", "dead_letters"]

logger = logging.getLogger(__name__)

# The limit holds on the encoded record, not the raw payload: JSON escapes a NUL byte as six
# bytes (a 200 KB payload of NULs made a 1.2 MB letter that Kafka refused). Half of Kafka's
# default 1 MiB keeps every payload the flow accepts (256 KiB) whole even in base64; larger
# ones (only hostile input is that large) keep their first bytes, size and digest.
MAX_DEAD_LETTER_BYTES = 512 * 1024
# An error message longer than this is cut: the payload is what a letter is for.
_MAX_MESSAGE_CHARS = 4096


# The reason of a message whose readable parts were stored and whose other parts were not.
PARTS_REJECTED = "parts_rejected"


def dead_letters(envelope: Envelope) -> list[tuple[str, tuple[str, bytes]]]:
    """Return the dead-letter record of an envelope whose chain ended in an error, if any.

    A message stored but for some parts (a bad item among a gateway's readings) is one too:
    its reason is `parts_rejected` at step 2, with each part's error.

    The payload is kept whole whenever the encoded record fits `MAX_DEAD_LETTER_BYTES`: as
    text when it is UTF-8 and that fits, else in base64; otherwise its first bytes are kept,
    with `payload_truncated`, its size and its SHA-256.
    """
    failed = envelope.failed
    if failed is None:
        failed = _parts_rejected(envelope)
        if failed is None:
            return []
    delivery = envelope.delivery
    record: dict[str, object] = {
        "message_id": delivery.message_id,
        "topic": delivery.topic,
        # Which delivery of the message this was: a replay numbers on from it.
        "delivery": envelope.delivery_number,
        "payload_encoding": "utf-8",
        "payload": "",
        "reason": {
            "step": str(failed.step),
            "code": failed.error_code,
            "message": scrub_citizen_ids(failed.error_message or "")[:_MAX_MESSAGE_CHARS] or None,
        },
        "device_type": envelope.device_type,
        "device_id": envelope.device_id,
        "received_at": isoformat_z(delivery.received_at),
        "dead_lettered_at": isoformat_z(datetime.now(UTC)),
    }
    # The code says why; the error message stays out, as it may quote the payload.
    logger.info(
        "dead letter: %s %s at %s (%s)",
        envelope.device_type,
        delivery.message_id,
        failed.step,
        failed.error_code,
        extra={"message_id": delivery.message_id, "step": str(failed.step)},
    )
    key = envelope.device_id
    DEAD_LETTERS.labels(str(failed.error_code)).inc()
    return [(key, (key, _encode_within_limit(record, delivery.payload)))]


def _parts_rejected(envelope: Envelope) -> StepOutcome | None:
    parsed = envelope.parsed
    if parsed is None or not parsed.rejected or len(envelope.outcomes) < len(Step):
        return None
    parts = len(parsed.rejected)
    message = f"{parts} part(s) not read, the rest stored: " + "; ".join(
        f"{code}: {text}" for code, text in parsed.rejected
    )
    return StepOutcome(
        step=Step.PARSED,
        status=StepStatus.ERROR,
        at=envelope.outcomes[1].at,
        error_code=PARTS_REJECTED,
        error_message=message,
    )


def _encode_within_limit(record: dict[str, object], raw: bytes) -> bytes:
    with contextlib.suppress(UnicodeDecodeError):
        encoded = _encode(record, "utf-8", raw.decode("utf-8"))
        if len(encoded) <= MAX_DEAD_LETTER_BYTES:
            return encoded
    encoded = _encode(record, "base64", base64.b64encode(raw).decode("ascii"))
    if len(encoded) <= MAX_DEAD_LETTER_BYTES:
        return encoded
    record["payload_truncated"] = True
    record["payload_bytes"] = len(raw)
    record["payload_sha256"] = hashlib.sha256(raw).hexdigest()
    # Base64 is never escaped: 3 bytes of payload take exactly 4 of the record.
    room = MAX_DEAD_LETTER_BYTES - len(_encode(record, "base64", ""))
    # Text when it stays text: each try shortens the prefix by what escaping added.
    size = room
    for _ in range(3):
        text = _utf8_prefix(raw, size)
        if text is None:
            break
        encoded = _encode(record, "utf-8", text)
        if len(encoded) <= MAX_DEAD_LETTER_BYTES:
            return encoded
        size -= len(encoded) - MAX_DEAD_LETTER_BYTES
    kept = raw[: max(room, 0) // 4 * 3]
    return _encode(record, "base64", base64.b64encode(kept).decode("ascii"))


def _utf8_prefix(raw: bytes, size: int) -> str | None:
    # A cut may split the last character: up to three of its bytes are dropped.
    for cut in range(4):
        with contextlib.suppress(UnicodeDecodeError):
            return raw[: max(size - cut, 0)].decode("utf-8")
    return None


def _encode(record: dict[str, object], encoding: str, payload: str) -> bytes:
    record["payload_encoding"] = encoding
    record["payload"] = payload
    try:
        return json.dumps(record, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate (a topic from another source): escaped
        return json.dumps(record).encode()
