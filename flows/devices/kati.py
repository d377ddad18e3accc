"""Kati watch family: a 4G wrist-worn monitor (SPEC.md, "Kati watch").

Topics `iMEDE_watch/<kind>`; the kind decides the message's shape (`MESSAGE_KINDS`, matched
case-insensitively since the firmware sends both `SOS` and `sos`, `fallDown` and
`FALLDOWN`). Identity is the top-level `IMEI`; the patient look-up key is `imei:<IMEI>`.

Every watch message also reports a `DeviceStatus` (the watch is evidently online; battery,
GSM signal, satellites and working mode when sent). What each kind yields:

- `hb`: a `steps` reading (the daily total in `step`); a skip when `step` is absent.
- `VitalSign`: blood pressure, heart rate, body temperature and SpO2 readings for each field
  present, plus a `location` reading when the GPS fix is usable.
- `AP55`: the same vital-sign readings for each `data[]` item (each with its own epoch
  `timestamp`), plus a `location` reading.
- `location`: a `location` reading (see `location.py`); a skip when nothing usable is in it.
- `sleepdata`: a `sleep` reading; in heartbeat shape (no `sleep` object) a status skip.
- `SOS`/`fallDown`: an `emergency` reading, `attributes.event` "sos" or "fall", with the
  location values.
- `onlineTrigger`: a status skip, `online` from `status`.

Sleep values: `duration_minutes` (5 minutes per digit of `sleep.data`) and
`level_0_minutes` ... `level_3_minutes` (minutes spent at each digit; the vendor documents
the digits only as 0-3). Attributes: `window` ("2200@0700" as sent), `start` and `end` (ISO
8601 UTC: the last `window` start at or before the record's `timeStamps`, and the window's
end after it), `stages` (the digit string as sent).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from flows.device_clock import ClockRule, measured_time, parse_device_time
from flows.devices.fields import get_field, get_mapping, get_text, is_absent, to_number
from flows.devices.identifiers import IdKind, normalise_imei
from flows.devices.location import location_values
from flows.devices.measures import MEASURES
from flows.devices.outcomes import Parts, check_part_count, status_only
from flows.devices.table import KindSpec, ValueSpec, readings_from
from flows.model import DeviceStatus, ObservationKind, ParsedMessage, ParseError, Reading
from flows.redact import safe_label

__all__ = [
    "DEVICE_TYPE",
    "EMERGENCY_EVENTS",
    "MESSAGE_KINDS",
    "STEPS",
    "TOPIC_PREFIX",
    "VITAL_SIGNS",
    "device_id",
    "parse",
]

DEVICE_TYPE = "Kati"
TOPIC_PREFIX = "iMEDE_watch/"

# The Kati vital-sign table: which fields of a VitalSign message (or of an AP55 item) hold
# which reading, in the order the readings are reported.
VITAL_SIGNS: tuple[KindSpec, ...] = (
    KindSpec(
        ObservationKind.BLOOD_PRESSURE,
        (
            ValueSpec("systolic", ("bloodPressure.bp_sys",), zero_is_absent=True),
            ValueSpec("diastolic", ("bloodPressure.bp_dia",), zero_is_absent=True),
        ),
    ),
    KindSpec(
        ObservationKind.HEART_RATE, (ValueSpec("heart_rate", ("heartRate",), zero_is_absent=True),)
    ),
    KindSpec(
        ObservationKind.BODY_TEMPERATURE,
        (ValueSpec("temperature", ("bodyTemperature",), zero_is_absent=True),),
    ),
    KindSpec(ObservationKind.SPO2, (ValueSpec("spo2", ("spO2",), zero_is_absent=True),)),
)
STEPS = KindSpec(ObservationKind.STEPS, (ValueSpec("steps", ("step",)),))
EMERGENCY_EVENTS = {"sos": "sos", "falldown": "fall"}

_SLEEP_SLOT = timedelta(minutes=5)
_SLEEP_DIGITS = "0123"
_SLEEP_WINDOW = re.compile(r"\s*([0-9]{2})([0-9]{2})@([0-9]{2})([0-9]{2})\s*")
_MAX_SLEEP_TEXT = 4096
_ONLINE_WORDS = {"online": True, "offline": False}


@dataclass(frozen=True)
class _WatchMessage:
    """One decoded watch message and what every handler needs to read it."""

    obj: Mapping[str, Any]
    imei: str
    message_kind: str
    suffix: str
    received_at: datetime
    clock: ClockRule

    @property
    def key(self) -> str:
        return IdKind.IMEI.key(self.imei)

    def measured(self, device_time: datetime | None) -> datetime:
        return measured_time(device_time, self.received_at, self.clock)

    def status(self, online: bool | None = True) -> DeviceStatus:
        return _watch_status(self.obj, self.key, online)

    def result(
        self, readings: list[Reading], rejected: list[tuple[str, str]] | None = None
    ) -> ParsedMessage:
        if not readings:
            return status_only(DEVICE_TYPE, self.imei, self.message_kind, self.status(), [self.key])
        return ParsedMessage(
            device_type=DEVICE_TYPE,
            device_id=self.imei,
            message_kind=self.message_kind,
            readings=readings,
            lookup_keys=[self.key],
            status=self.status(),
            rejected=rejected or [],
        )


def _watch_time(obj: object) -> datetime | None:
    """Return the time the watch stamped a message with (`timeStamps` or `time`), or None."""
    for field in ("timeStamps", "time"):
        raw = get_field(obj, field)
        moment = parse_device_time(raw)
        if moment is not None:
            return moment
    return None


def _percent(raw: object) -> float | int | None:
    """Return a 0-100 reading such as battery level, or None when it is not one."""
    number = to_number(raw)
    return number if isinstance(number, int | float) and 0 <= number <= 100 else None


def _watch_status(obj: Mapping[str, Any], key: str, online: bool | None) -> DeviceStatus:
    """Return what a watch message says about the watch itself."""
    details = {
        "satellites": to_number(get_field(obj, "satellites")),
        "working_mode": to_number(get_field(obj, "workingMode")),
    }
    return DeviceStatus(
        device_key=key,
        online=online,
        battery=_percent(get_field(obj, "battery")),
        signal=_percent(get_field(obj, "signalGSM")),
        details={k: v for k, v in details.items() if isinstance(v, int | float)},
    )


def _vital_readings(
    parts: Parts,
    item: Mapping[str, Any],
    context: str,
    device_time: datetime | None,
    message: _WatchMessage,
) -> None:
    """Read every vital sign present in `item`, each a part of its own."""
    measured_at = message.measured(device_time)
    for spec in VITAL_SIGNS:
        parts.read(
            partial(
                readings_from,
                item,
                spec,
                context,
                required=False,
                measured_at=measured_at,
                device_time=device_time,
            )
        )


def _location_reading(
    message: _WatchMessage, device_time: datetime | None, *, needs_fix: bool
) -> list[Reading]:
    """Return the location reading of the message (only with a usable fix if `needs_fix`)."""
    values, attributes = location_values(get_field(message.obj, "location"))
    if not values or (needs_fix and "latitude" not in values):
        return []
    return [
        Reading(
            kind=ObservationKind.LOCATION,
            values=values,
            measured_at=message.measured(device_time),
            device_time=device_time,
            attributes=attributes,
        )
    ]


def _heartbeat(message: _WatchMessage) -> ParsedMessage:
    device_time = _watch_time(message.obj)
    readings = readings_from(
        message.obj,
        STEPS,
        "Kati hb",
        required=False,
        measured_at=message.measured(device_time),
        device_time=device_time,
    )
    return message.result(readings)


def _vital_sign(message: _WatchMessage) -> ParsedMessage:
    device_time = _watch_time(message.obj)
    parts = Parts()
    _vital_readings(parts, message.obj, "Kati VitalSign", device_time, message)
    parts.readings.extend(_location_reading(message, device_time, needs_fix=True))
    return message.result(parts.checked(), parts.rejected)


def _ap55(message: _WatchMessage) -> ParsedMessage:
    items = get_field(message.obj, "data")
    if not isinstance(items, list):
        msg = "Kati AP55 message has no 'data' array"
        raise ParseError("missing_field", msg)
    check_part_count(items, "Kati AP55 data")
    parts = Parts()
    for index, item in enumerate(items):
        context = f"Kati AP55 data[{index}]"
        if not isinstance(item, Mapping):
            parts.rejected.append(("invalid_value", f"{context} is not an object"))
            continue
        device_time = parse_device_time(get_field(item, "timestamp"))
        _vital_readings(parts, item, context, device_time, message)
    parts.readings.extend(_location_reading(message, _watch_time(message.obj), needs_fix=True))
    return message.result(parts.checked(), parts.rejected)


def _location(message: _WatchMessage) -> ParsedMessage:
    if get_mapping(message.obj, "location") is None:
        msg = "Kati location message has no 'location' object"
        raise ParseError("missing_field", msg)
    return message.result(_location_reading(message, _watch_time(message.obj), needs_fix=False))


def _sleep_window(window: str | None, stamp: datetime | None) -> dict[str, str]:
    """Return `start` and `end` of the sleep window as ISO strings, when they can be placed."""
    match = _SLEEP_WINDOW.fullmatch(window or "")
    if match is None or stamp is None:
        return {}
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if max(start_h, end_h) > 23 or max(start_m, end_m) > 59:
        return {}
    start = stamp.replace(hour=start_h, minute=start_m, second=0, microsecond=0)
    length = timedelta(hours=end_h, minutes=end_m) - timedelta(hours=start_h, minutes=start_m)
    try:
        if start > stamp:
            start -= timedelta(days=1)
        end = start + length % timedelta(days=1)
    except OverflowError:  # a watch clock at year 1 or 9999: a window that cannot be placed
        return {}
    return {"start": start.isoformat(), "end": end.isoformat()}


def _sleep(message: _WatchMessage) -> ParsedMessage:
    sleep = get_mapping(message.obj, "sleep")
    if sleep is None:
        # Real watches also send `sleepdata` in heartbeat shape, with nothing about sleep.
        return message.result([])
    stages = get_field(sleep, "data")
    if is_absent(stages):
        msg = "Kati sleepdata: required field 'sleep.data' is missing"
        raise ParseError("missing_field", msg)
    if (
        not isinstance(stages, str)
        or len(stages) > _MAX_SLEEP_TEXT
        or not all(char in _SLEEP_DIGITS for char in stages.strip())
    ):
        msg = "Kati sleepdata: field 'sleep.data' is not a string of digits 0-3"
        raise ParseError("invalid_value", msg)
    stages = stages.strip()
    slot_minutes = int(_SLEEP_SLOT.total_seconds() // 60)
    duration = len(stages) * slot_minutes
    limit = MEASURES["duration_minutes"]
    if duration > limit.high:
        msg = f"Kati sleepdata: 'sleep.data' covers more than {limit.high:g} minutes"
        raise ParseError("out_of_range", msg)
    values: dict[str, Any] = {"duration_minutes": duration}
    for digit in _SLEEP_DIGITS:
        values[f"level_{digit}_minutes"] = stages.count(digit) * slot_minutes
    device_time = _watch_time(sleep) or _watch_time(message.obj)
    window = get_text(sleep, "time", limit=16)
    attributes: dict[str, Any] = {"stages": stages}
    if window:
        attributes["window"] = window
    attributes.update(_sleep_window(window, device_time))
    reading = Reading(
        kind=ObservationKind.SLEEP,
        values=values,
        measured_at=message.measured(device_time),
        device_time=device_time,
        attributes=attributes,
    )
    return message.result([reading])


def _emergency(message: _WatchMessage) -> ParsedMessage:
    values, attributes = location_values(get_field(message.obj, "location"))
    device_time = _watch_time(message.obj)
    reading = Reading(
        kind=ObservationKind.EMERGENCY,
        values=values,
        measured_at=message.measured(device_time),
        device_time=device_time,
        attributes={"event": EMERGENCY_EVENTS[message.suffix], **attributes},
    )
    return message.result([reading])


def _online_trigger(message: _WatchMessage) -> ParsedMessage:
    said = (get_text(message.obj, "status") or "").casefold()
    status = message.status(online=_ONLINE_WORDS.get(said))
    return status_only(DEVICE_TYPE, message.imei, message.message_kind, status, [message.key])


# The Kati message table: topic suffix (case-folded) -> canonical kind name and its reader.
MESSAGE_KINDS: dict[str, tuple[str, Callable[[_WatchMessage], ParsedMessage]]] = {
    "hb": ("hb", _heartbeat),
    "vitalsign": ("VitalSign", _vital_sign),
    "ap55": ("AP55", _ap55),
    "location": ("location", _location),
    "sleepdata": ("sleepdata", _sleep),
    "sos": ("SOS", _emergency),
    "falldown": ("fallDown", _emergency),
    "onlinetrigger": ("onlineTrigger", _online_trigger),
}


def device_id(obj: object) -> str | None:
    """Return the IMEI of a watch message, normalised, or None."""
    return normalise_imei(get_field(obj, "IMEI"))


def parse(
    topic: str, obj: Mapping[str, Any], received_at: datetime, clock: ClockRule
) -> ParsedMessage:
    """Parse one decoded watch message; raises `ParseError` when it cannot be understood."""
    suffix = topic.removeprefix(TOPIC_PREFIX).casefold()
    entry = MESSAGE_KINDS.get(suffix)
    if entry is None:
        sent = safe_label(topic.removeprefix(TOPIC_PREFIX))
        msg = f"Kati message kind {sent} is not one vitalflow understands"
        raise ParseError("unsupported_message", msg)
    message_kind, read = entry
    raw_imei = get_field(obj, "IMEI")
    imei = normalise_imei(raw_imei)
    if imei is None:
        if is_absent(raw_imei):
            msg = f"Kati {message_kind} message has no 'IMEI'"
            raise ParseError("missing_field", msg)
        msg = f"Kati {message_kind} message has an 'IMEI' that is not 14-16 digits"
        raise ParseError("invalid_identifier", msg)
    message = _WatchMessage(obj, imei, message_kind, suffix, received_at, clock)
    return read(message)
