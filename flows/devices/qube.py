"""Qube-Vital kiosk family: a Raspberry Pi kiosk with a card reader (SPEC.md, "Qube").

Topic `CM4_BLE_GW_TX`. A measurement message carries one reading in `data.value` (a flat
object), the sub-device's MAC in `data.ble_mac`, and the patient read from their ID card:
`citiz` (13-digit citizen ID), names, birth date, gender. The names, birth date and gender
are never used here; `redact` removes them (and the ID) from everything reported.

Patient look-up keys, most specific first: the citizen ID (`citizen_id:<13 digits>`, only
when it is 13 digits; the check digit is not enforced), the sub-device (`ble:<MAC>`), the
kiosk (`gateway:<MAC>`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flows.device_clock import ClockRule, measured_time, parse_device_time
from flows.devices.fields import get_field, get_mapping, is_absent
from flows.devices.gateway import find_gateway_mac, screen_gateway_message
from flows.devices.identifiers import IdKind, normalise_citizen_id, normalise_mac
from flows.devices.table import AttributeSpec, AttributeTable, KindSpec, ValueSpec, readings_from
from flows.model import ObservationKind, ParsedMessage, ParseError

__all__ = ["ATTRIBUTES", "DEVICE_TYPE", "TOPICS", "device_id", "parse"]

DEVICE_TYPE = "Qube"
TOPICS = frozenset({"CM4_BLE_GW_TX"})

# The Qube device table: `data.attribute` -> what `data.value` holds. Same devices as behind
# AVA4, other spellings (`pr`, `Temp`, `Resistance`, `Oximeter_JUMPER`).
ATTRIBUTES = AttributeTable(
    {
        "WBP_JUMPER": KindSpec(
            ObservationKind.BLOOD_PRESSURE,
            (
                ValueSpec("systolic", ("bp_high",)),
                ValueSpec("diastolic", ("bp_low",)),
                ValueSpec("pulse", ("pr",), required=False),
            ),
            heart_rate_from="pulse",
        ),
        "CONTOUR": KindSpec(
            ObservationKind.BLOOD_GLUCOSE,
            (ValueSpec("glucose", ("blood_glucose",)),),
            (AttributeSpec("marker", ("marker",)),),
        ),
        "BodyScale_JUMPER": KindSpec(
            ObservationKind.BODY_WEIGHT,
            (
                ValueSpec("weight", ("weight",)),
                ValueSpec("resistance", ("Resistance",), required=False),
            ),
        ),
        "TEMO_Jumper": KindSpec(
            ObservationKind.BODY_TEMPERATURE,
            (ValueSpec("temperature", ("Temp",)),),
            (AttributeSpec("mode", ("mode",)),),
        ),
        "Oximeter_JUMPER": KindSpec(
            ObservationKind.SPO2,
            (
                ValueSpec("spo2", ("spo2",)),
                ValueSpec("pulse", ("pulse",), required=False),
                ValueSpec("perfusion_index", ("pi",), required=False, scale=0.1),
            ),
            heart_rate_from="pulse",
        ),
    }
)


def device_id(obj: object) -> str | None:
    """Return the kiosk MAC of a Qube message, normalised, or None."""
    return find_gateway_mac(obj)


def parse(
    topic: str, obj: Mapping[str, Any], received_at: datetime, clock: ClockRule
) -> ParsedMessage:
    """Parse one decoded Qube message; raises `ParseError` when it cannot be understood."""
    screened = screen_gateway_message(obj, DEVICE_TYPE, ATTRIBUTES, command=False)
    if isinstance(screened, ParsedMessage):
        return screened
    context = f"Qube {screened.attribute} data.value"
    value = get_mapping(obj, "data.value")
    if value is None:
        msg = f"{context} is missing or not an object"
        raise ParseError("missing_field", msg)
    raw_ble = get_field(obj, "data.ble_mac")
    ble = normalise_mac(raw_ble)
    if ble is None and not is_absent(raw_ble):
        msg = f"Qube {screened.attribute}: 'data.ble_mac' is not 12 hex digits"
        raise ParseError("invalid_identifier", msg)
    ble_key = IdKind.BLE.key(ble) if ble else None
    device_time = parse_device_time(get_field(obj, "time"))
    readings = readings_from(
        value,
        screened.spec,
        context,
        required=True,
        measured_at=measured_time(device_time, received_at, clock),
        device_time=device_time,
        sub_device=ble_key,
    )
    citizen_id = normalise_citizen_id(get_field(obj, "citiz"))
    lookup_keys = [
        key
        for key in (
            IdKind.CITIZEN_ID.key(citizen_id) if citizen_id else None,
            ble_key,
            IdKind.GATEWAY.key(screened.mac),
        )
        if key is not None
    ]
    return ParsedMessage(
        device_type=DEVICE_TYPE,
        device_id=screened.mac,
        message_kind=screened.message_kind,
        readings=readings,
        lookup_keys=lookup_keys,
    )
