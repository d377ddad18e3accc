"""AVA4 gateway family: BLE medical devices behind an ESP32 gateway (SPEC.md, "AVA4").

Topics: `ESP32_BLE_GW_TX` (heartbeats), `dusun_pub` (measurements), `dusun_sub` (commands
from the cloud, not device data). A measurement message names its device in
`data.attribute` and carries one or more readings in `data.value.device_list[]`, each with
the sub-device's BLE address (`ble_addr`) and its own `scan_time`.

Patient look-up keys, most specific first: every sub-device (`ble:<MAC>`) in the message,
then the gateway (`gateway:<MAC>`), which deployments assign to one patient's home. Each
reading also names its own: its sub-device, then the gateway. A gateway can serve a
household, so readings of one message can belong to different patients
(`flows.lookup_patient`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any

from flows.device_clock import ClockRule, measured_time, parse_device_time
from flows.devices.fields import get_field, is_absent
from flows.devices.gateway import (
    GatewayMeasurement,
    find_gateway_mac,
    gateway_status,
    screen_gateway_message,
)
from flows.devices.identifiers import IdKind, normalise_mac
from flows.devices.outcomes import Parts, check_part_count, status_only
from flows.devices.table import AttributeSpec, AttributeTable, KindSpec, ValueSpec, readings_from
from flows.model import ObservationKind, ParsedMessage, ParseError, Reading

__all__ = ["ATTRIBUTES", "COMMAND_TOPIC", "DEVICE_TYPE", "TOPICS", "device_id", "parse"]

DEVICE_TYPE = "AVA4"
COMMAND_TOPIC = "dusun_sub"
TOPICS = frozenset({"ESP32_BLE_GW_TX", "dusun_pub", COMMAND_TOPIC})

_BLOOD_PRESSURE = KindSpec(
    ObservationKind.BLOOD_PRESSURE,
    (
        ValueSpec("systolic", ("bp_high",)),
        ValueSpec("diastolic", ("bp_low",)),
        ValueSpec("pulse", ("PR",), required=False),
    ),
    heart_rate_from="pulse",
)
_BLOOD_GLUCOSE = KindSpec(
    ObservationKind.BLOOD_GLUCOSE,
    (ValueSpec("glucose", ("blood_glucose",)),),
    (AttributeSpec("marker", ("marker",)),),
)

# The AVA4 device table: `data.attribute` -> what the `device_list` items hold.
ATTRIBUTES = AttributeTable(
    {
        "BP_BIOLIGTH": _BLOOD_PRESSURE,
        "BLE_BPG": _BLOOD_PRESSURE,
        "WBP BIOLIGHT": _BLOOD_PRESSURE,
        "Oximeter JUMPER": KindSpec(
            ObservationKind.SPO2,
            (
                ValueSpec("spo2", ("spo2",)),
                ValueSpec("pulse", ("pulse",), required=False),
                ValueSpec("perfusion_index", ("pi",), required=False, scale=0.1),
            ),
            heart_rate_from="pulse",
        ),
        "Contour_Elite": _BLOOD_GLUCOSE,
        "AccuChek_Instant": _BLOOD_GLUCOSE,
        "IR_TEMO_JUMPER": KindSpec(
            ObservationKind.BODY_TEMPERATURE,
            (ValueSpec("temperature", ("temp",)),),
            (AttributeSpec("mode", ("mode",)),),
        ),
        "BodyScale_JUMPER": KindSpec(
            ObservationKind.BODY_WEIGHT,
            (
                ValueSpec("weight", ("weight",)),
                ValueSpec("resistance", ("resistance",), required=False),
            ),
        ),
        "MGSS_REF_UA": KindSpec(
            ObservationKind.URIC_ACID, (ValueSpec("uric_acid", ("uric_acid",)),)
        ),
        "MGSS_REF_CHOL": KindSpec(
            ObservationKind.CHOLESTEROL, (ValueSpec("cholesterol", ("cholesterol",)),)
        ),
    }
)


def device_id(obj: object) -> str | None:
    """Return the gateway MAC of an AVA4 message, normalised, or None."""
    return find_gateway_mac(obj)


def parse(
    topic: str, obj: Mapping[str, Any], received_at: datetime, clock: ClockRule
) -> ParsedMessage:
    """Parse one decoded AVA4 message; raises `ParseError` when it cannot be understood."""
    screened = screen_gateway_message(obj, DEVICE_TYPE, ATTRIBUTES, command=topic == COMMAND_TOPIC)
    if isinstance(screened, ParsedMessage):
        return screened
    items = get_field(obj, "data.value.device_list")
    if not isinstance(items, list):
        msg = f"AVA4 {screened.attribute} message has no 'data.value.device_list' array"
        raise ParseError("missing_field", msg)
    check_part_count(items, f"AVA4 {screened.attribute} device_list")
    message_time = parse_device_time(get_field(obj, "time"))
    gateway_key = IdKind.GATEWAY.key(screened.mac)
    parts = Parts()
    for index, item in enumerate(items):
        parts.read(
            partial(
                _item_readings, screened, index, item, message_time, received_at, clock, gateway_key
            )
        )
    readings = parts.checked()
    ble_keys = list(dict.fromkeys(r.sub_device for r in readings if r.sub_device is not None))
    if not readings:
        # An empty scan result: the gateway is alive but measured nothing.
        status = gateway_status(obj, screened.mac)
        return status_only(DEVICE_TYPE, screened.mac, screened.message_kind, status, [gateway_key])
    return ParsedMessage(
        device_type=DEVICE_TYPE,
        device_id=screened.mac,
        message_kind=screened.message_kind,
        readings=readings,
        lookup_keys=[*ble_keys, gateway_key],
        rejected=parts.rejected,
    )


def _item_readings(
    screened: GatewayMeasurement,
    index: int,
    item: object,
    message_time: datetime | None,
    received_at: datetime,
    clock: ClockRule,
    gateway_key: str,
) -> list[Reading]:
    """Return the readings of one `device_list` item."""
    context = f"AVA4 {screened.attribute} device_list[{index}]"
    if not isinstance(item, Mapping):
        msg = f"{context} is not an object"
        raise ParseError("invalid_value", msg)
    raw_ble = get_field(item, "ble_addr")
    ble = normalise_mac(raw_ble)
    if ble is None and not is_absent(raw_ble):
        msg = f"{context}: 'ble_addr' is not 12 hex digits"
        raise ParseError("invalid_identifier", msg)
    ble_key = IdKind.BLE.key(ble) if ble else None
    # Each reading's own scan time is closer to the measurement than the message's time.
    device_time = parse_device_time(get_field(item, "scan_time")) or message_time
    return readings_from(
        item,
        screened.spec,
        context,
        required=True,
        measured_at=measured_time(device_time, received_at, clock),
        device_time=device_time,
        sub_device=ble_key,
        patient_keys=(ble_key, gateway_key) if ble_key else (gateway_key,),
    )
