"""The skip reasons a parser can give, and the messages that carry them.

A skip is not an error: a cloud command is not device data, a heartbeat has nothing to store
as an observation (its `DeviceStatus` still updates `device_status`). DESIGN.md names both
reasons; the step-2 event reports them verbatim.
"""

from __future__ import annotations

from flows.model import DeviceStatus, ParsedMessage

__all__ = ["NOTHING_TO_STORE", "NOT_DEVICE_DATA", "not_device_data", "status_only"]

NOT_DEVICE_DATA = "not device data"
NOTHING_TO_STORE = "status message with nothing to store"


def not_device_data(device_type: str, device_id: str, message_kind: str) -> ParsedMessage:
    """Return the skip of a message that is not device data (a cloud command)."""
    return ParsedMessage(
        device_type=device_type,
        device_id=device_id,
        message_kind=message_kind,
        skip_reason=NOT_DEVICE_DATA,
    )


def status_only(
    device_type: str,
    device_id: str,
    message_kind: str,
    status: DeviceStatus,
    lookup_keys: list[str],
) -> ParsedMessage:
    """Return the skip of a status message, with the status the store should record."""
    return ParsedMessage(
        device_type=device_type,
        device_id=device_id,
        message_kind=message_kind,
        lookup_keys=lookup_keys,
        status=status,
        skip_reason=NOTHING_TO_STORE,
    )
