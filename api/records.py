"""Step events as the API holds them: the fields it filters on, and the SSE frame ready to send.

A record is parsed once when it is read from the feed; its frame bytes are built once too and
shared by every client whose stream position agrees with the hub's (nearly all of them), so
fanning out to many clients copies no event text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from api.position import Position
from flows.model import may_hold_lone_surrogates, without_lone_surrogates

__all__ = ["StepRecord", "format_frame", "parse_record"]

_EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_ALERT_SEVERITIES = frozenset({"high", "critical"})


@dataclass(slots=True)
class StepRecord:
    """One record of the steps topic with the fields the API filters, scopes and counts on.

    `frame` is the complete SSE frame when `body_start` > 0 (its `id:` line is the hub's
    position after this record), else just the `event:` and `data:` lines. `valid` is False
    for a record that is not a readable step event: it still moves positions on, but is
    never sent.
    """

    partition: int
    offset: int
    timestamp_ms: int
    valid: bool
    frame: bytes
    body_start: int
    step: str | None = None
    status: str | None = None
    device_type: str | None = None
    device_id: str | None = None
    patient_id: str | None = None
    hospital_id: str | None = None
    message_id: str | None = None
    alert: bool = False
    severity: str | None = None
    position_after: Position | None = None

    @property
    def body(self) -> bytes:
        """The frame without its `id:` line."""
        return self.frame[self.body_start :]

    def frame_with_id(self, position: Position) -> bytes:
        """Return this record's frame carrying a client's own position."""
        return b"id: " + position.encode().encode() + b"\n" + self.body

    def event_json(self) -> dict[str, Any]:
        """Return the CloudEvent as a JSON object."""
        body = self.body
        start = body.index(b"\ndata: ") + len(b"\ndata: ")
        text = body[start:].rstrip(b"\n")
        parsed: dict[str, Any] = json.loads(text)
        if may_hold_lone_surrogates(text):
            # Kept escaped in frames, but a JSON answer is encoded as UTF-8, which has none.
            parsed = without_lone_surrogates(parsed)
        return parsed


def format_frame(event: str, data: str, position: Position | None = None) -> bytes:
    """Build an SSE frame; `data` must be one line (compact JSON is)."""
    head = f"id: {position.encode()}\n" if position is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _is_alert(data: dict[str, Any]) -> bool:
    if data.get("alert") is True or data.get("severity") in _ALERT_SEVERITIES:
        return True
    processed = data.get("processed_data")
    observations = processed.get("observations") if isinstance(processed, dict) else None
    if isinstance(observations, list):
        return any(
            isinstance(obs, dict)
            and (obs.get("kind") == "emergency" or obs.get("severity") in _ALERT_SEVERITIES)
            for obs in observations
        )
    return False


def parse_record(
    partition: int,
    offset: int,
    timestamp_ms: int,
    value: bytes | None,
    position_after: Position | None = None,
) -> StepRecord:
    """Read a raw record of the steps topic; malformed ones come back with `valid=False`."""
    event: Any = None
    text = ""
    if value is not None:
        try:
            text = value.decode("utf-8")
            event = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            event = None
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict):
        return StepRecord(
            partition,
            offset,
            timestamp_ms,
            valid=False,
            frame=b"",
            body_start=0,
            position_after=position_after,
        )
    if "\n" in text or "\r" in text:
        # An SSE data line ends at a newline, so pretty-printed JSON is compacted once here;
        # with its escapes kept if it holds a lone surrogate (`"\\ud800"`), which UTF-8
        # cannot carry (the reader failed on it, and again after every restart).
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = json.dumps(event, separators=(",", ":"))
    step = _text(data.get("step"))
    event_name = step if step is not None and _EVENT_NAME.fullmatch(step) else "step"
    frame = format_frame(event_name, text, position_after)
    body_start = frame.index(b"event: ")
    severity = _text(data.get("severity"))
    return StepRecord(
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        valid=True,
        frame=frame,
        body_start=body_start,
        step=step,
        status=_text(data.get("status")),
        device_type=_text(data.get("device_type")),
        device_id=_text(data.get("device_id")),
        patient_id=_text(data.get("patient_id")),
        hospital_id=_text(data.get("hospital_id")),
        message_id=_text(data.get("message_id")),
        alert=_is_alert(data),
        severity=severity,
        position_after=position_after,
    )
