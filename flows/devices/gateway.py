"""What AVA4 gateways and Qube-Vital kiosks have in common: identity, commands, heartbeats.

Both speak the same envelope (`from`, `to`, `time`, `mac`, `type`, `data`): the gateway MAC
identifies the box, `type: cmd` / `from: CLOUD` marks a command sent to it, and
`HB_Msg` / `reportMsg` are heartbeats carrying only status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flows.device_clock import parse_device_time
from flows.devices.fields import get_field, get_text, is_absent
from flows.devices.identifiers import IdKind, normalise_mac
from flows.devices.outcomes import not_device_data, status_only
from flows.devices.table import AttributeTable, KindSpec
from flows.model import DeviceStatus, ParsedMessage, ParseError
from flows.redact import is_label, safe_label

__all__ = [
    "GATEWAY_MAC_FIELDS",
    "UNKNOWN",
    "GatewayMeasurement",
    "find_gateway_mac",
    "gateway_status",
    "is_cloud_command",
    "require_gateway_mac",
    "screen_gateway_message",
]

# Where the gateway's own MAC may be, in order of trust.
GATEWAY_MAC_FIELDS = ("mac", "data.mac", "deviceCode")
UNKNOWN = "unknown"
# A message type that might be a person's name (`flows.redact.is_label`), as reported.
NOT_SHOWN = "(not shown)"
_STATUS_TYPES = frozenset({"hb_msg", "reportmsg"})
_MEASUREMENT_TYPES = frozenset({"reportattribute", "cmdresult"})
_COMMAND_RESULT = "cmdresult"
_ONLINE_WORDS = {"online": True, "offline": False}


def is_cloud_command(obj: Mapping[str, Any]) -> bool:
    """Return True for messages the cloud sent to a gateway (`type: cmd` or `from: CLOUD`)."""
    kind = (get_text(obj, "type") or "").casefold()
    sender = (get_text(obj, "from") or "").casefold()
    return kind == "cmd" or sender == "cloud"


def find_gateway_mac(obj: object) -> str | None:
    """Return the first usable gateway MAC among `GATEWAY_MAC_FIELDS`, normalised."""
    for path in GATEWAY_MAC_FIELDS:
        mac = normalise_mac(get_field(obj, path))
        if mac is not None:
            return mac
    return None


def require_gateway_mac(obj: Mapping[str, Any], device_type: str) -> str:
    """Return the gateway MAC, or raise `missing_field` / `invalid_identifier`."""
    mac = find_gateway_mac(obj)
    if mac is not None:
        return mac
    if all(is_absent(get_field(obj, path)) for path in GATEWAY_MAC_FIELDS):
        msg = f"{device_type} message has no gateway MAC ('mac')"
        raise ParseError("missing_field", msg)
    msg = f"{device_type} message has a gateway MAC that is not 12 hex digits ('mac')"
    raise ParseError("invalid_identifier", msg)


def gateway_status(obj: Mapping[str, Any], mac: str) -> DeviceStatus:
    """Return the status a gateway heartbeat (`HB_Msg`, `reportMsg`) reports."""
    text = get_text(obj, "data.msg")
    device_time = parse_device_time(get_field(obj, "time"))
    details = {
        "name": get_text(obj, "name"),
        "imei": get_text(obj, "IMEI"),
        "iccid": get_text(obj, "ICCID"),
        "message": text,
        "device_time": device_time.isoformat() if device_time else None,
    }
    return DeviceStatus(
        device_key=IdKind.GATEWAY.key(mac),
        # A heartbeat arriving means the box is up unless it says otherwise.
        online=_ONLINE_WORDS.get((text or "").casefold(), True),
        details={key: value for key, value in details.items() if value is not None},
    )


@dataclass(frozen=True)
class GatewayMeasurement:
    """A gateway message that carries readings, and the table row describing them."""

    mac: str
    message_kind: str
    attribute: str
    spec: KindSpec


def screen_gateway_message(
    obj: Mapping[str, Any], device_type: str, table: AttributeTable, *, command: bool
) -> ParsedMessage | GatewayMeasurement:
    """Sort a gateway message into a skip (command, status) or a measurement to read.

    `command` is True when the topic itself says the message goes to the gateway.
    Raises `ParseError` when the message is neither and cannot be read.
    """
    sent = get_text(obj, "type") or UNKNOWN
    folded = sent.casefold()
    # What the message calls itself goes into step events: a device's own word only.
    kind = sent if is_label(sent) else NOT_SHOWN
    if command or is_cloud_command(obj):
        return not_device_data(device_type, find_gateway_mac(obj) or UNKNOWN, kind)
    mac = require_gateway_mac(obj, device_type)
    gateway_key = IdKind.GATEWAY.key(mac)
    attribute = get_text(obj, "data.attribute", limit=48)
    # A command result without a measurement only tells us the gateway is alive.
    if folded in _STATUS_TYPES or (attribute is None and folded == _COMMAND_RESULT):
        return status_only(device_type, mac, kind, gateway_status(obj, mac), [gateway_key])
    if attribute is None:
        if folded in _MEASUREMENT_TYPES:
            msg = f"{device_type} {safe_label(sent)} message has no 'data.attribute'"
            raise ParseError("missing_field", msg)
        msg = f"{device_type} message type {safe_label(sent)} is not one vitalflow understands"
        raise ParseError("unsupported_message", msg)
    spec = table.find(attribute)
    if spec is None:
        label = safe_label(attribute)
        msg = f"{device_type} attribute {label} is not in the {device_type} device table"
        raise ParseError("unknown_attribute", msg)
    return GatewayMeasurement(mac=mac, message_kind=kind, attribute=attribute, spec=spec)
