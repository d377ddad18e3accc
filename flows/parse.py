"""Stage 2: the payload of an envelope is parsed into readings, or the chain ends here.

A payload that cannot be understood becomes a step-2 error (and later a dead letter); a cloud
command or a status-only message is skipped with its reason. Nothing raised by a hostile
payload may escape: an exception here would stop the whole dataflow.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

from flows.device_clock import ClockRule
from flows.devices.parse_payload import MAX_PAYLOAD_BYTES, NOTHING_TO_STORE, identify, parse_payload
from flows.model import Envelope, ParseError, Step, StepOutcome, StepStatus
from flows.redact import redact
from flows.step_events import isoformat_z

__all__ = ["parse_envelope"]

logger = logging.getLogger(__name__)


def parse_envelope(envelope: Envelope, clock: ClockRule) -> Envelope:
    """Parse the delivery of `envelope` and record the `2_payload_parsed` outcome."""
    delivery = envelope.delivery
    try:
        parsed = parse_payload(delivery.topic, delivery.payload, delivery.received_at, clock)
    except ParseError as exc:
        outcome = StepOutcome(
            step=Step.PARSED,
            status=StepStatus.ERROR,
            at=datetime.now(UTC),
            error_code=exc.code,
            error_message=exc.message,
        )
        return _failed(envelope, outcome)
    except Exception as exc:  # a parser bug must not stop the flow: report it as an error
        logger.exception(
            "parser failed on message %s",
            delivery.message_id,
            extra={"message_id": delivery.message_id, "step": str(Step.PARSED)},
        )
        outcome = StepOutcome(
            step=Step.PARSED,
            status=StepStatus.ERROR,
            at=datetime.now(UTC),
            error_code="parser_failure",
            error_message=f"internal parser error: {type(exc).__name__}",
        )
        return _failed(envelope, outcome)
    summary: dict[str, Any] = {
        "message_kind": parsed.message_kind,
        # Values may hold the device's free text (a Wi-Fi SSID, a meal marker): redacted as
        # the payload is.
        "readings": [
            {
                "kind": str(r.kind),
                "values": redact(r.values),
                "measured_at": isoformat_z(r.measured_at),
            }
            for r in parsed.readings
        ],
    }
    if parsed.status is not None:
        summary["device_status"] = {
            "device_key": parsed.status.device_key,
            "online": parsed.status.online,
            "battery": parsed.status.battery,
            "signal": parsed.status.signal,
        }
    if parsed.rejected:
        # The readings above are stored; these parts are not (the message is dead-lettered).
        summary["rejected"] = [{"code": c, "message": m} for c, m in parsed.rejected]
    reason = parsed.skip_reason or (None if parsed.readings else NOTHING_TO_STORE)
    outcome = StepOutcome(
        step=Step.PARSED,
        status=StepStatus.SKIPPED if reason else StepStatus.SUCCESS,
        at=datetime.now(UTC),
        processed_data=summary,
        reason=reason,
    )
    return envelope.replace(
        device_type=parsed.device_type,
        device_id=parsed.device_id,
        payload=parsed.payload,
        parsed=parsed,
        outcomes=[*envelope.outcomes, outcome],
    )


def _failed(envelope: Envelope, outcome: StepOutcome) -> Envelope:
    """End the chain at step 2, naming the device as far as the raw bytes allow."""
    delivery = envelope.delivery
    device_type, device_id = identify(delivery.topic, delivery.payload)
    return envelope.replace(
        device_type=device_type,
        device_id=device_id,
        payload=_redacted_or_empty(delivery.payload),
        outcomes=[*envelope.outcomes, outcome],
    )


def _redacted_or_empty(payload: bytes) -> dict[str, Any]:
    """Return the payload for the step event when it is a JSON object, without personal data."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return {}
    try:
        # NaN, Infinity and numbers beyond a float are not JSON: events carry null for them,
        # as orjson writes them, so that strict consumers can read every event.
        decoded = json.loads(payload, parse_constant=_none, parse_float=_finite_or_none)
    except (ValueError, RecursionError):
        return {}
    return redact(decoded) if isinstance(decoded, dict) else {}


def _none(_constant: str) -> None:
    return None


def _finite_or_none(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None
