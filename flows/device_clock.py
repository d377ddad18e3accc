"""Device clocks: reading the times devices send, and deciding when to believe them.

Device clocks are wrong in practice:

- AVA4 gateways in the real capture of 2025-07-13 stamp heartbeats with 2026-01-07, about
  178 days fast; the vendor's documented examples carry `scan_time`s in 2028.
- The Kati AP55 batch sends epoch seconds that look like local time (UTC+7) read as UTC,
  i.e. seven hours in the future.
- Kati `timeStamps` / `time` strings ("DD/MM/YYYY HH:MM:SS", no zone) are UTC in the capture.
- Firmware variants send epoch milliseconds, ISO 8601, or a zone after the Kati form: all
  are read (`parse_device_time`), so `device_time` keeps what was sent.

The rule (`measured_time`): a reading's time is the device's time when it lies in the window
`[received_at - max_age, received_at + max_skew]`, otherwise the broker's receive time. Within
the window a device time later than `received_at` is clamped to `received_at`, so an
observation is never in the future. `max_age` (default 7 days, `clock_max_age_days`) lets a
device upload readings it buffered while offline; `max_skew` (default 300 s,
`clock_max_skew_seconds`) absorbs ordinary clock drift but not the 7-hour zone error nor the
178-day drift. The time as sent is always kept next to it (`Reading.device_time`).

All datetimes here are timezone-aware UTC; a naive datetime handed in is taken to be UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from flows.devices.fields import to_number
from flows.flow_metrics import CLOCK_CLAMPS

if TYPE_CHECKING:
    from flows.settings import Settings

__all__ = [
    "ClockRule",
    "measured_time",
    "parse_device_time",
    "parse_epoch_seconds",
    "parse_iso_time",
    "parse_kati_time",
]

# The counters' children, taken once: `labels()` takes a lock and builds its key at each
# call (~2 us, and a watch's clock runs ahead in many messages).
_CLAMPED_AHEAD = CLOCK_CLAMPS.labels("ahead")
_CLAMPED_IMPLAUSIBLE = CLOCK_CLAMPS.labels("implausible")

# Anything before 2000 or from year 2200 on is not a clock reading but a reset or garbage.
_EARLIEST_EPOCH = 946_684_800
_LATEST_EPOCH = 7_258_118_400
_EARLIEST_YEAR, _LATEST_YEAR = 2000, 2200
# Epoch milliseconds of the same span begin where any plausible count of seconds has ended.
_EARLIEST_EPOCH_MS = _EARLIEST_EPOCH * 1000
_KATI_TIME = re.compile(
    r"\s*([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})[ T]+([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?"
    r"\s*(Z|[+-][0-9]{2}:?[0-9]{2})?\s*"
)
# The widest offsets in use are UTC-12 and UTC+14.
_MAX_ZONE_HOURS, _MAX_ZONE_MINUTES = 14, 59
_ISO_START = re.compile(r"\s*[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class ClockRule:
    """How far a device time may lie before (`max_age`) or after (`max_skew`) its receipt."""

    max_age: timedelta
    max_skew: timedelta

    def __post_init__(self) -> None:
        if self.max_age < timedelta(0) or self.max_skew < timedelta(0):
            msg = "ClockRule needs a non-negative max_age and max_skew"
            raise ValueError(msg)

    @classmethod
    def from_settings(cls, settings: Settings) -> ClockRule:
        """Build the rule from `clock_max_age_days` and `clock_max_skew_seconds`."""
        return cls(
            max_age=timedelta(days=settings.clock_max_age_days),
            max_skew=timedelta(seconds=settings.clock_max_skew_seconds),
        )


def _as_utc(moment: datetime) -> datetime:
    """Return `moment` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def measured_time(device_time: datetime | None, received_at: datetime, rule: ClockRule) -> datetime:
    """Return when a reading happened: the device time if plausible, else `received_at`."""
    received = _as_utc(received_at)
    if device_time is None:
        return received
    device = _as_utc(device_time)
    if received - rule.max_age <= device <= received + rule.max_skew:
        if device > received:
            _CLAMPED_AHEAD.inc()
        return min(device, received)
    _CLAMPED_IMPLAUSIBLE.inc()
    return received


def parse_device_time(value: object) -> datetime | None:
    """Return a device's time, in whichever form it came, as a UTC datetime; None if unusable.

    The Kati form, ISO 8601, or epoch seconds or milliseconds (a number or numeric text).
    """
    if isinstance(value, str):
        return parse_kati_time(value) or parse_iso_time(value) or parse_epoch_seconds(value)
    return parse_epoch_seconds(value)


def parse_epoch_seconds(value: object) -> datetime | None:
    """Return epoch seconds or milliseconds (number or numeric string) as UTC, None if unusable.

    Milliseconds are told apart by size: from 2000 on they exceed any plausible seconds.
    """
    seconds = to_number(value)
    if not isinstance(seconds, int | float):
        return None
    if seconds >= _EARLIEST_EPOCH_MS:
        seconds /= 1000
    if not _EARLIEST_EPOCH <= seconds < _LATEST_EPOCH:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def parse_kati_time(value: object) -> datetime | None:
    """Return a Kati "DD/MM/YYYY HH:MM:SS" string as a UTC datetime, else None.

    Without a zone (as watches send it) the time is UTC; a zone after it (`Z`, `+07:00`) is
    applied. A year before 2000 or from 2200 on is a reset clock (None), as for epoch values.
    """
    if not isinstance(value, str) or len(value) > 40:
        return None
    match = _KATI_TIME.fullmatch(value)
    if match is None:
        return None
    day, month, year, hour, minute, second = (int(part or 0) for part in match.groups()[:6])
    if not _EARLIEST_YEAR <= year < _LATEST_YEAR:
        return None  # as for epoch values: a reset clock, not a reading
    zone = match.group(7)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:  # no such date
        return None
    if zone and zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        if hours > _MAX_ZONE_HOURS or minutes > _MAX_ZONE_MINUTES:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        moment -= offset if zone[0] == "+" else -offset
    return moment


def parse_iso_time(value: object) -> datetime | None:
    """Return an ISO 8601 date or date-time text (UTC if it has no offset) as UTC, else None.

    Like epoch values, a time before 2000 or from 2200 on is a reset clock, not a reading.
    """
    if not isinstance(value, str) or len(value) > 40 or not _ISO_START.match(value):
        return None
    try:
        moment = _as_utc(datetime.fromisoformat(value.strip()))
    except (ValueError, OverflowError):
        return None
    return moment if _EARLIEST_YEAR <= moment.year < _LATEST_YEAR else None
