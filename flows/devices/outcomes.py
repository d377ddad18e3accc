"""The skip reasons a parser can give, and the messages that carry them.

A skip is not an error: a cloud command is not device data, a heartbeat has nothing to store
as an observation (its `DeviceStatus` still updates `device_status`). DESIGN.md names both
reasons; the step-2 event reports them verbatim.
"""

from __future__ import annotations

from collections.abc import Callable

from flows.model import DeviceStatus, ParsedMessage, ParseError, Reading

__all__ = [
    "MAX_PARTS",
    "NOTHING_TO_STORE",
    "NOT_DEVICE_DATA",
    "Parts",
    "check_part_count",
    "not_device_data",
    "status_only",
]

NOT_DEVICE_DATA = "not device data"
NOTHING_TO_STORE = "status message with nothing to store"
# Gateways send a handful of readings a message and watches batch a few dozen; a list of
# thousands is hostile (a 256 KiB message can hold 7,000 items: 14,000 observations, seconds
# of the worker's time and hundreds of MB in one batch).
MAX_PARTS = 1000


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


class Parts:
    """The readings of a message read part by part, and why the parts that failed did.

    A gateway's `device_list`, a watch's batch of vital signs or the vitals of one watch
    message are parts: one unreadable part must not lose the others' readings (they are
    stored; the message is dead-lettered for the rest). A message none of whose parts could be
    read fails with the first part's error, as a message of one part does.
    """

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.rejected: list[tuple[str, str]] = []

    def read(self, part: Callable[[], list[Reading]]) -> None:
        """Add the readings `part` returns, or the error it raises."""
        try:
            self.readings.extend(part())
        except ParseError as error:
            self.rejected.append((error.code, error.message))

    def checked(self) -> list[Reading]:
        """Return the readings; raise the first part's error if every part failed."""
        if self.rejected and not self.readings:
            raise ParseError(*self.rejected[0])
        return self.readings


def check_part_count(items: list[object], context: str) -> None:
    """Raise `out_of_range` for a list of more parts than any device sends (`MAX_PARTS`)."""
    if len(items) > MAX_PARTS:
        msg = f"{context} has {len(items)} items; at most {MAX_PARTS} are read"
        raise ParseError("out_of_range", msg)
