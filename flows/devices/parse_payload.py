"""Stage 2 logic: raw MQTT bytes -> a `ParsedMessage` of normalised readings, or a `ParseError`.

Pure functions, no I/O. The topic names the device family (`FAMILIES`); each family module
(`flows/devices/ava4.py`, `kati.py`, `qube.py`) holds its table and its reader.

- `identify` names the device from topic and bytes for keys and event subjects. It never
  raises: whatever it cannot work out is `"unknown"`.
- `parse_payload` raises only `ParseError` (codes: `invalid_json`, `unsupported_message`,
  `unknown_attribute`, `missing_field`, `invalid_value`, `out_of_range`,
  `invalid_identifier`). Cloud commands and status-only messages are skips, not errors:
  `skip_reason` is `NOT_DEVICE_DATA` or `NOTHING_TO_STORE`, the latter with a `status`.
  `ParsedMessage.payload` is the decoded payload with personal data redacted.

Decoding is strict where JSON is: invalid UTF-8, NaN/Infinity (not JSON, and not storable),
numbers too large for a float, and nesting deeper than `MAX_DEPTH` are `invalid_json`. An
escaped lone surrogate (a `u` escape from D800 to DFFF not in a pair: valid JSON, not
Unicode) is read as U+FFFD.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import orjson

from flows.device_clock import ClockRule
from flows.devices import ava4, kati, qube
from flows.devices.gateway import UNKNOWN
from flows.devices.nesting import too_deep
from flows.devices.outcomes import NOT_DEVICE_DATA, NOTHING_TO_STORE
from flows.model import (
    ParsedMessage,
    ParseError,
    may_hold_lone_surrogates,
    without_lone_surrogates,
)
from flows.redact import redact, safe_label

__all__ = [
    "FAMILIES",
    "MAX_DEPTH",
    "MAX_PAYLOAD_BYTES",
    "NOTHING_TO_STORE",
    "NOT_DEVICE_DATA",
    "UNKNOWN",
    "Family",
    "decode_payload",
    "family_of",
    "identify",
    "parse_payload",
]

# Real payloads nest four levels deep; anything far deeper is hostile or broken.
MAX_DEPTH = 32
# Device messages are a few KiB; anything far larger is hostile or broken, and decoding it
# (and carrying it through events) would cost memory and time for nothing.
MAX_PAYLOAD_BYTES = 256 * 1024
# Every digit as "0", everything else as " ": a run of 19 digits is then a substring search.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_NINETEEN_DIGITS = b"0" * 19


@dataclass(frozen=True)
class Family:
    """A device family: its `device_type` and how to identify and parse its messages."""

    device_type: str
    device_id: Callable[[object], str | None]
    parse: Callable[[str, Mapping[str, Any], datetime, ClockRule], ParsedMessage]


FAMILIES: tuple[Family, ...] = (
    Family(ava4.DEVICE_TYPE, ava4.device_id, ava4.parse),
    Family(kati.DEVICE_TYPE, kati.device_id, kati.parse),
    Family(qube.DEVICE_TYPE, qube.device_id, qube.parse),
)
_BY_TOPIC = {topic: FAMILIES[0] for topic in ava4.TOPICS} | {
    topic: FAMILIES[2] for topic in qube.TOPICS
}


def family_of(topic: str) -> Family | None:
    """Return the device family a topic belongs to, or None for a topic not ours."""
    if not isinstance(topic, str):
        return None
    if topic.startswith(kati.TOPIC_PREFIX):
        return FAMILIES[1]
    return _BY_TOPIC.get(topic)


def _refuse_constant(name: str) -> NoReturn:
    msg = f"payload contains {name}, which is not JSON"
    raise ParseError("invalid_json", msg)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        msg = "payload contains a number too large for a float"
        raise ParseError("invalid_json", msg)
    return number


def decode_payload(payload: bytes) -> dict[str, Any]:
    """Return the payload as a JSON object, or raise `ParseError("invalid_json")`."""
    if isinstance(payload, str):
        # Not what the broker hands over, but a caller with text must not crash the stage.
        payload = payload.encode("utf-8", "surrogatepass")
    elif isinstance(payload, bytearray | memoryview):
        payload = bytes(payload)
    elif not isinstance(payload, bytes):
        msg = "payload is not bytes"
        raise ParseError("invalid_json", msg)
    if len(payload) > MAX_PAYLOAD_BYTES:
        msg = f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit"
        raise ParseError("payload_too_large", msg)
    decoded = _read_plainly(payload)
    strictly = decoded is None
    if strictly:
        decoded = _read_strictly(payload)
    if not isinstance(decoded, dict):
        msg = f"payload is JSON but not an object (it is a {type(decoded).__name__})"
        raise ParseError("invalid_json", msg)
    if too_deep(decoded, MAX_DEPTH):
        msg = f"payload nests deeper than {MAX_DEPTH} levels"
        raise ParseError("invalid_json", msg)
    if strictly and may_hold_lone_surrogates(payload):
        # JSON lets `\ud800` stand alone; Unicode text cannot hold it, so BSON and UTF-8
        # refuse it (an `insert_many` raised UnicodeEncodeError and stopped the flow, on
        # every redelivery). Each becomes U+FFFD, as Go's and WHATWG's decoders do: a glucose
        # reading with a damaged meal marker is still stored. orjson refuses such payloads,
        # so only the strict reader's results can hold one.
        decoded = without_lone_surrogates(decoded)
    return decoded


def _read_plainly(payload: bytes) -> Any:
    """Return what orjson reads in `payload`, or None where `_read_strictly` must judge.

    Why: with orjson first, `decode_payload` reads the simulator's mix in 3.7 us a message;
    with the standard library alone, whose Python `parse_float` runs for every float, in
    11.5-12.1. Wherever the two could differ, orjson refuses and the strict reader decides,
    with its own error: invalid UTF-8, a byte-order mark, NaN and Infinity, numbers beyond a
    float, lone surrogates, nesting past its limit. The one thing orjson reads differently
    is an integer beyond 64 bits (it makes a float of it; below -2**63 that is 19 digits),
    so a payload with a run of 19 digits that is not the start of a string goes to the
    strict reader too. So does a JSON `null` payload (None means "not read" here), which it
    refuses as not an object.
    """
    if _has_long_number(payload):
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _has_long_number(payload: bytes) -> bool:
    """Whether a run of 19 digits in `payload` may be a number (not the start of a string)."""
    digits = payload.translate(_DIGITS_ONLY)
    start = digits.find(_NINETEEN_DIGITS)
    while start != -1:
        # A number follows `:`, `[`, `,`, a space or a minus; a SIM's ICCID is a string.
        if payload[start - 1 : start] != b'"':
            return True
        end = digits.find(b" ", start)
        if end == -1:
            return False
        start = digits.find(_NINETEEN_DIGITS, end)
    return False


def _read_strictly(payload: bytes) -> Any:
    """Decode `payload` with the standard library; raise `ParseError` saying what is wrong."""
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError:
        msg = "payload is not valid UTF-8"
        raise ParseError("invalid_json", msg) from None
    try:
        decoded = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        msg = f"payload nests deeper than {MAX_DEPTH} levels"
        raise ParseError("invalid_json", msg) from None
    except json.JSONDecodeError as exc:
        # The position says where, never what: safe to report.
        msg = f"payload is not valid JSON (line {exc.lineno} column {exc.colno})"
        raise ParseError("invalid_json", msg) from None
    except ValueError:
        # An integer literal with thousands of digits, refused by int().
        msg = "payload contains a number too long to read"
        raise ParseError("invalid_json", msg) from None
    return decoded


def identify(topic: str, payload: bytes) -> tuple[str, str]:
    """Return `(device_type, device_id)` as far as topic and bytes tell; never raises.

    `device_type` is "AVA4", "Kati", "Qube" or "unknown"; `device_id` the normalised gateway
    MAC (AVA4, Qube) or IMEI (Kati), "unknown" when absent or invalid.
    """
    family = family_of(topic) if isinstance(topic, str) else None
    if family is None:
        return UNKNOWN, UNKNOWN
    try:
        decoded = decode_payload(payload)
    except ParseError:
        return family.device_type, UNKNOWN
    return family.device_type, family.device_id(decoded) or UNKNOWN


def parse_payload(
    topic: str, payload: bytes, received_at: datetime, clock: ClockRule
) -> ParsedMessage:
    """Parse one MQTT message into readings; raises only `ParseError`.

    `received_at` (the broker receive time, UTC) is the observation time of every reading
    whose device time `clock` does not trust.
    """
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=UTC)
    family = family_of(topic)
    if family is None:
        msg = f"topic {safe_label(str(topic))} is not a device topic vitalflow understands"
        raise ParseError("unsupported_message", msg)
    decoded = decode_payload(payload)
    parsed = family.parse(topic, decoded, received_at.astimezone(UTC), clock)
    parsed.payload = redact(decoded)
    return parsed
