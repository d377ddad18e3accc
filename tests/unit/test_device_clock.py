"""The clock rule: trust a device's time only inside [received - max_age, received + max_skew]."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from flows.device_clock import (
    ClockRule,
    measured_time,
    parse_device_time,
    parse_epoch_seconds,
    parse_kati_time,
)
from flows.settings import Settings

RECEIVED = datetime(2025, 7, 13, 8, 50, 59, 161255, tzinfo=UTC)
RULE = ClockRule(max_age=timedelta(days=7), max_skew=timedelta(seconds=300))


def test_rule_is_built_from_settings() -> None:
    settings = Settings(clock_max_age_days=2, clock_max_skew_seconds=30)
    assert ClockRule.from_settings(settings) == ClockRule(
        max_age=timedelta(days=2), max_skew=timedelta(seconds=30)
    )


def test_default_settings_give_seven_days_and_five_minutes() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert ClockRule.from_settings(settings) == RULE


def test_rule_refuses_negative_windows() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        ClockRule(max_age=timedelta(days=-1), max_skew=timedelta(0))


def test_rule_is_immutable() -> None:
    with pytest.raises(AttributeError):
        RULE.max_age = timedelta(0)  # type: ignore[misc]


def test_device_time_a_few_seconds_old_is_trusted() -> None:
    device = RECEIVED - timedelta(seconds=3)
    assert measured_time(device, RECEIVED, RULE) == device


def test_device_time_exactly_max_age_old_is_trusted() -> None:
    device = RECEIVED - timedelta(days=7)
    assert measured_time(device, RECEIVED, RULE) == device


def test_device_time_just_older_than_max_age_gives_receive_time() -> None:
    device = RECEIVED - timedelta(days=7, microseconds=1)
    assert measured_time(device, RECEIVED, RULE) == RECEIVED


def test_device_time_slightly_ahead_is_clamped_to_receive_time() -> None:
    device = RECEIVED + timedelta(seconds=299)
    assert measured_time(device, RECEIVED, RULE) == RECEIVED


def test_device_time_exactly_max_skew_ahead_is_clamped_to_receive_time() -> None:
    assert measured_time(RECEIVED + timedelta(seconds=300), RECEIVED, RULE) == RECEIVED


def test_device_time_beyond_max_skew_gives_receive_time() -> None:
    assert measured_time(RECEIVED + timedelta(seconds=301), RECEIVED, RULE) == RECEIVED


def test_gateway_clock_178_days_fast_gives_receive_time() -> None:
    assert measured_time(RECEIVED + timedelta(days=178), RECEIVED, RULE) == RECEIVED


def test_local_time_read_as_utc_seven_hours_ahead_gives_receive_time() -> None:
    assert measured_time(RECEIVED + timedelta(hours=7), RECEIVED, RULE) == RECEIVED


def test_documented_2028_timestamp_gives_receive_time() -> None:
    device = datetime(2028, 3, 17, 21, 52, 51, tzinfo=UTC)
    assert measured_time(device, RECEIVED, RULE) == RECEIVED


def test_missing_device_time_gives_receive_time() -> None:
    assert measured_time(None, RECEIVED, RULE) == RECEIVED


def test_zero_skew_rule_never_trusts_a_time_ahead() -> None:
    strict = ClockRule(max_age=timedelta(days=1), max_skew=timedelta(0))
    assert measured_time(RECEIVED + timedelta(microseconds=1), RECEIVED, strict) == RECEIVED
    assert measured_time(RECEIVED, RECEIVED, strict) == RECEIVED


def test_times_in_other_zones_are_compared_and_returned_in_utc() -> None:
    bangkok = timezone(timedelta(hours=7))
    device = (RECEIVED - timedelta(minutes=5)).astimezone(bangkok)
    result = measured_time(device, RECEIVED.astimezone(bangkok), RULE)
    assert result == RECEIVED - timedelta(minutes=5)
    assert result.utcoffset() == timedelta(0)


def test_naive_times_are_taken_as_utc() -> None:
    naive_device = (RECEIVED - timedelta(minutes=1)).replace(tzinfo=None)
    result = measured_time(naive_device, RECEIVED.replace(tzinfo=None), RULE)
    assert result == RECEIVED - timedelta(minutes=1)
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1752396600, datetime(2025, 7, 13, 8, 50, tzinfo=UTC)),
        ("1752396600", datetime(2025, 7, 13, 8, 50, tzinfo=UTC)),
        (1752396600.5, datetime(2025, 7, 13, 8, 50, 0, 500000, tzinfo=UTC)),
        (1836942771, datetime(2028, 3, 17, 21, 52, 51, tzinfo=UTC)),
    ],
)
def test_epoch_seconds_parse_to_aware_utc(raw: object, expected: datetime) -> None:
    assert parse_epoch_seconds(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "soon", True, 0, -5, 10**20, float("nan"), [1]])
def test_unusable_epoch_is_none(raw: object) -> None:
    assert parse_epoch_seconds(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13/07/2025 08:50:59", datetime(2025, 7, 13, 8, 50, 59, tzinfo=UTC)),
        ("16/06/2025 01:00:00", datetime(2025, 6, 16, 1, 0, tzinfo=UTC)),
        ("1/7/2025 8:05:09", datetime(2025, 7, 1, 8, 5, 9, tzinfo=UTC)),
        ("01/07/2025 08:05", datetime(2025, 7, 1, 8, 5, tzinfo=UTC)),
    ],
)
def test_kati_day_first_time_strings_parse_as_utc(raw: str, expected: datetime) -> None:
    assert parse_kati_time(raw) == expected


@pytest.mark.parametrize(
    "raw", ["31/02/2025 08:00:00", "13/13/2025 08:00:00", "2025-07-13 08:00:00", "", None, 5]
)
def test_impossible_or_foreign_kati_time_is_none(raw: object) -> None:
    assert parse_kati_time(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1752396600000, datetime(2025, 7, 13, 8, 50, tzinfo=UTC)),
        ("1752396600123", datetime(2025, 7, 13, 8, 50, 0, 123000, tzinfo=UTC)),
        ("13/07/2025 08:50:00 +07:00", datetime(2025, 7, 13, 1, 50, tzinfo=UTC)),
        ("13/07/2025 08:50:00 -0500", datetime(2025, 7, 13, 13, 50, tzinfo=UTC)),
        ("13/07/2025 08:50:00Z", datetime(2025, 7, 13, 8, 50, tzinfo=UTC)),
        ("2025-07-13T08:50:00Z", datetime(2025, 7, 13, 8, 50, tzinfo=UTC)),
        ("2025-07-13T15:50:00+07:00", datetime(2025, 7, 13, 8, 50, tzinfo=UTC)),
        ("2025-07-13 08:50:00", datetime(2025, 7, 13, 8, 50, tzinfo=UTC)),
        ("13/07/2025 08:50:00", datetime(2025, 7, 13, 8, 50, tzinfo=UTC)),
        ("1752396600", datetime(2025, 7, 13, 8, 50, tzinfo=UTC)),
    ],
)
def test_device_times_are_read_in_every_form_firmware_sends(
    raw: object, expected: datetime
) -> None:
    # Kept as `device_time` (what was sent) even where `measured_at` will not believe it.
    assert parse_device_time(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [0, -5, "0", "1970-01-01T00:00:00Z", "2300-01-01", "0001-01-01T00:00:00+05:00", "soon", None],
)
def test_resets_and_garbage_are_no_device_time(raw: object) -> None:
    assert parse_device_time(raw) is None


@pytest.mark.parametrize(
    "raw", ["13/07/2025 10:00:00+07:99", "13/07/2025 10:00:00 -99:99", "01/01/0001 00:00:00"]
)
def test_impossible_zones_and_reset_years_in_the_watch_form_are_no_device_time(raw: str) -> None:
    assert parse_device_time(raw) is None
