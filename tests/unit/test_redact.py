"""Redaction: personal data is replaced at any depth, everything else is kept, input untouched."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest

from flows.device_clock import ClockRule
from flows.devices.parse_payload import parse_payload
from flows.redact import REDACTED, redact, safe_label, scrub_citizen_ids

RULE = ClockRule(max_age=timedelta(days=7), max_skew=timedelta(seconds=300))
QUBE = {
    "mac": "e4:5f:01:ed:82:59",
    "citiz": "3570300400000",
    "nameTH": "นาย#เดพ##เอชวีศูนย์หนึ่ง",
    "nameEN": "Mr.#DEV##HV01",
    "brith": "25220713",
    "gender": "1",
    "data": {"attribute": "WBP_JUMPER", "value": {"bp_high": 120, "bp_low": 78, "pr": 71}},
}


def test_qube_personal_fields_are_redacted_and_the_rest_kept() -> None:
    assert redact(QUBE) == {
        "mac": "e4:5f:01:ed:82:59",
        "citiz": REDACTED,
        "nameTH": REDACTED,
        "nameEN": REDACTED,
        "brith": REDACTED,
        "gender": REDACTED,
        "data": {"attribute": "WBP_JUMPER", "value": {"bp_high": 120, "bp_low": 78, "pr": 71}},
    }


def test_redaction_does_not_change_its_input() -> None:
    original = copy.deepcopy(QUBE)
    redacted = redact(QUBE)
    assert original == QUBE
    redacted["data"]["value"]["bp_high"] = 0
    assert QUBE["data"]["value"]["bp_high"] == 120  # type: ignore[index]


@pytest.mark.parametrize(
    "key",
    [
        "citiz",
        "CITIZ",
        "nameTH",
        "nameen",
        "brith",
        "birth",
        "birthDate",
        "birth_date",
        "gender",
        "id_card",
        "ID_CARD",
        "citizen_id",
        "date_of_birth",
    ],
)
def test_personal_keys_are_redacted_in_any_case_at_any_depth(key: str) -> None:
    payload = {"a": [{"b": {key: "secret"}}, {key: {"nested": "secret"}}]}
    assert "secret" not in json.dumps(redact(payload))


def test_similar_but_harmless_keys_are_kept() -> None:
    payload = {"name": "AVA4-No.1", "CID": "79474300", "mac": "x", "IMEI": "1"}
    assert redact(payload) == payload


def test_scalars_and_lists_pass_through() -> None:
    assert redact([1, "a", None, 2.5, True]) == [1, "a", None, 2.5, True]
    assert redact("citiz") == "citiz"
    assert redact(None) is None


def test_tuples_come_back_as_lists() -> None:
    assert redact({"v": (1, {"gender": "2"})}) == {"v": [1, {"gender": REDACTED}]}


def test_deeply_nested_payload_is_redacted_without_recursion_error() -> None:
    payload: dict[str, object] = {"citiz": "3570300400000"}
    for _ in range(5000):
        payload = {"level": [payload]}
    node = redact(payload)
    for _ in range(5000):
        node = node["level"][0]
    assert node == {"citiz": REDACTED}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("BP_BIOLIGTH", "'BP_BIOLIGTH'"),
        ("Oximeter JUMPER", "'Oximeter JUMPER'"),
        ("3570300400000", "(name not shown)"),
        ("Mr.#DEV##HV01", "(name not shown)"),
        ("นาย#เดพ", "(name not shown)"),
        ("DEV 25220713", "(name not shown)"),
        ("x" * 80, "(name not shown)"),
    ],
)
def test_only_name_shaped_text_is_echoed_in_error_messages(text: str, shown: str) -> None:
    assert safe_label(text) == shown


@pytest.mark.parametrize(
    "key",
    [
        "citiz ",
        "Citiz_ID",
        "citizen-id",
        "CitizenNo",
        "ci\u200btiz",  # a zero-width space inside
        "\uff43\uff49\uff54\uff49\uff5a",  # fullwidth "citiz"
        "nameEN ",
        "name_th",
        "brithday",
        "Birth Date",
        "gender_code",
    ],
)
def test_personal_keys_are_known_by_their_letters_whatever_the_firmware_adds(key: str) -> None:
    assert redact({"data": {key: "Somchai"}}) == {"data": {key: REDACTED}}


@pytest.mark.parametrize(
    "text",
    ["3570300400000", "1-2345-67890-12-3", "card 3570300400000 read", "\u0e53" * 13],
)
def test_a_citizen_id_is_redacted_under_any_key(text: str) -> None:
    assert redact({"mac": text, "list": [text]}) == {"mac": REDACTED, "list": [REDACTED]}


@pytest.mark.parametrize(
    "text",
    ["861265061482607", "89660012345678901234", "1752396600", "AA:BB:CC:DD:EE:FF", "120"],
)
def test_other_numbers_are_kept(text: str) -> None:
    # An IMEI (15 digits), an ICCID (20), epoch seconds, a MAC, a value.
    assert redact({"mac": text}) == {"mac": text}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Somchai", False),
        ("Somchai Jaidee", False),
        ("somchai jaidee", False),
        ("Mr Somchai Jaidee", False),
        ("sleepdata", True),
        ("reportAttribute", True),
        ("HB_Msg", True),
        ("WBP BIOLIGHT", True),
        ("Contour_Elite", True),
    ],
)
def test_romanised_names_are_not_taken_for_labels(text: str, shown: bool) -> None:
    assert (safe_label(text) == repr(text)) is shown


def test_a_message_type_that_may_be_a_name_is_not_reported() -> None:
    payload = {
        "time": 1739360702,
        "mac": "e4:5f:01:ed:82:59",
        "type": "Somchai Jaidee",
        "citiz": "3570300400000",
        "data": {"attribute": "WBP_JUMPER", "value": {"bp_high": 120, "bp_low": 78, "pr": 71}},
    }
    received = datetime(2025, 2, 12, 12, 0, tzinfo=UTC)
    parsed = parse_payload("CM4_BLE_GW_TX", json.dumps(payload).encode(), received, RULE)
    assert parsed.message_kind == "(not shown)"
    assert len(parsed.readings) == 2  # the reading itself is read as before


def _with_check_digit(first12: str) -> int:
    total = sum(int(d) * (13 - i) for i, d in enumerate(first12))
    return int(first12 + str((11 - total % 11) % 10))


def test_a_citizen_id_sent_as_a_number_is_redacted_and_epoch_milliseconds_kept() -> None:
    citizen = _with_check_digit("110170020345")
    assert redact({"id": citizen, "list": [citizen]}) == {"id": REDACTED, "list": [REDACTED]}
    # Epoch milliseconds are 13-digit numbers too: most fail the check digit (this one does).
    assert redact({"time": 1752396600000}) == {"time": 1752396600000}
    assert redact({"n": citizen + 1}) == {"n": citizen + 1}


def test_log_text_loses_both_forms_of_a_citizen_id() -> None:
    assert scrub_citizen_ids("citizen 1-2345-67890-12-3 and 3570300400000 failed") == (
        "citizen [redacted] and [redacted] failed"
    )
