"""Malformed payloads: each gives a `ParseError` with the right code and a clean message."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flows.device_clock import ClockRule
from flows.devices.parse_payload import parse_payload
from flows.model import ParseError

RECEIVED = datetime(2025, 7, 13, 9, 0, tzinfo=UTC)
RULE = ClockRule(max_age=timedelta(days=7), max_skew=timedelta(seconds=300))
GATEWAY = "08:F9:E0:D1:F7:B4"
IMEI = "861265061482607"

CITIZEN_ID = "3570300400000"
NAME_TH = "นาย#เดพ##เอชวีศูนย์หนึ่ง"
NAME_EN = "Mr.#DEV##HV01"
BIRTH = "25220713"
QUBE_BP: dict[str, Any] = {
    "from": "PI",
    "to": "CLOUD",
    "time": 1739360702,
    "mac": "e4:5f:01:ed:82:59",
    "type": "reportAttribute",
    "citiz": CITIZEN_ID,
    "nameTH": NAME_TH,
    "nameEN": NAME_EN,
    "brith": BIRTH,
    "gender": "1",
    "data": {
        "attribute": "WBP_JUMPER",
        "ble_mac": "FF:22:09:08:31:31",
        "value": {"bp_high": 120, "bp_low": 78, "pr": 71},
    },
}


def ava4_item(attribute: str, item: object) -> bytes:
    payload = {
        "mac": GATEWAY,
        "type": "reportAttribute",
        "data": {"attribute": attribute, "value": {"device_list": [item]}},
    }
    return json.dumps(payload).encode()


def error_of(topic: str, payload: bytes) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse_payload(topic, payload, RECEIVED, RULE)
    return caught.value


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b"{'mac': 1}", "invalid_json"),
        (b'{"mac": ', "invalid_json"),
        (b"[1, 2, 3]", "invalid_json"),
        (b'"a string"', "invalid_json"),
        (b"null", "invalid_json"),
        (b'{"bp_high": NaN}', "invalid_json"),
        (b'{"bp_high": Infinity}', "invalid_json"),
        (b'{"bp_high": -Infinity}', "invalid_json"),
        (b'{"bp_high": 1e999}', "invalid_json"),
        (b'{"n": ' + b"9" * 5000 + b"}", "invalid_json"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "invalid_json"),
        (b"[" * 100_000, "invalid_json"),
    ],
)
def test_undecodable_payload_is_invalid_json(payload: bytes, code: str) -> None:
    assert error_of("dusun_pub", payload).code == code


def test_utf8_byte_order_mark_is_tolerated() -> None:
    payload = b"\xef\xbb\xbf" + json.dumps({"IMEI": IMEI, "step": 5}).encode()
    assert parse_payload("iMEDE_watch/hb", payload, RECEIVED, RULE).readings


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [
        ("not/ours", {"mac": GATEWAY}, "unsupported_message"),
        ("iMEDE_watch/selfie", {"IMEI": IMEI}, "unsupported_message"),
        ("dusun_pub", {"mac": GATEWAY, "type": "firmwareUpdate"}, "unsupported_message"),
        ("dusun_pub", {"mac": GATEWAY, "type": "reportAttribute"}, "missing_field"),
        (
            "dusun_pub",
            {"mac": GATEWAY, "type": "reportAttribute", "data": {"attribute": "TOASTER"}},
            "unknown_attribute",
        ),
        (
            "dusun_pub",
            {"mac": GATEWAY, "type": "reportAttribute", "data": {"attribute": "BLE_BPG"}},
            "missing_field",
        ),
        (
            "CM4_BLE_GW_TX",
            {"mac": GATEWAY, "type": "reportAttribute", "data": {"attribute": "CONTOUR"}},
            "missing_field",
        ),
        ("iMEDE_watch/AP55", {"IMEI": IMEI, "data": "none"}, "missing_field"),
        ("iMEDE_watch/AP55", {"IMEI": IMEI, "data": [1]}, "invalid_value"),
        ("iMEDE_watch/location", {"IMEI": IMEI}, "missing_field"),
        ("iMEDE_watch/sleepdata", {"IMEI": IMEI, "sleep": {"data": ""}}, "missing_field"),
        ("iMEDE_watch/sleepdata", {"IMEI": IMEI, "sleep": {"data": "0149"}}, "invalid_value"),
        ("iMEDE_watch/sleepdata", {"IMEI": IMEI, "sleep": {"data": "1" * 600}}, "out_of_range"),
        ("iMEDE_watch/hb", {"IMEI": IMEI, "step": "many"}, "invalid_value"),
        ("iMEDE_watch/hb", {"IMEI": IMEI, "step": -1}, "out_of_range"),
        ("iMEDE_watch/VitalSign", {"IMEI": IMEI, "spO2": 5}, "out_of_range"),
        (
            "iMEDE_watch/VitalSign",
            {"IMEI": IMEI, "bloodPressure": {"bp_sys": 70, "bp_dia": 110}},
            "out_of_range",
        ),
        (
            "iMEDE_watch/VitalSign",
            {"IMEI": IMEI, "bloodPressure": {"bp_sys": 120}},
            "missing_field",
        ),
    ],
)
def test_message_that_cannot_be_understood_gives_its_error_code(
    topic: str, payload: dict[str, Any], code: str
) -> None:
    assert error_of(topic, json.dumps(payload).encode()).code == code


@pytest.mark.parametrize(
    ("item", "code"),
    [
        ({"bp_low": 80}, "missing_field"),
        ({"bp_high": "", "bp_low": 80}, "missing_field"),
        ({"bp_high": "high", "bp_low": 80}, "invalid_value"),
        ({"bp_high": True, "bp_low": 80}, "invalid_value"),
        ({"bp_high": [120], "bp_low": 80}, "invalid_value"),
        ({"bp_high": "nan", "bp_low": 80}, "invalid_value"),
        ({"bp_high": "inf", "bp_low": 80}, "invalid_value"),
        ({"bp_high": "1_20", "bp_low": 80}, "invalid_value"),
        ({"bp_high": 2**80, "bp_low": 80}, "invalid_value"),
        ({"bp_high": 120, "bp_low": 80, "PR": "fast"}, "invalid_value"),
        ({"bp_high": 400, "bp_low": 80}, "out_of_range"),
        ({"bp_high": 120, "bp_low": 5}, "out_of_range"),
        ({"bp_high": 120, "bp_low": 80, "PR": 0}, "out_of_range"),
        # Each plausible alone, impossible together (swapped, or a failed measurement).
        ({"bp_high": 80, "bp_low": 120}, "out_of_range"),
        ({"bp_high": 90, "bp_low": 90}, "out_of_range"),
        ("120/80", "invalid_value"),
        ({"bp_high": 120, "bp_low": 80, "ble_addr": "zz"}, "invalid_identifier"),
    ],
)
def test_bad_blood_pressure_item_gives_its_error_code(item: object, code: str) -> None:
    assert error_of("dusun_pub", ava4_item("BP_BIOLIGTH", item)).code == code


@pytest.mark.parametrize(
    ("attribute", "item"),
    [
        ("Oximeter JUMPER", {"spo2": 101}),
        ("Oximeter JUMPER", {"spo2": 97, "pi": 400}),
        ("Contour_Elite", {"blood_glucose": "5.6"}),
        ("IR_TEMO_JUMPER", {"temp": 96.8}),
        ("BodyScale_JUMPER", {"weight": 0}),
        ("MGSS_REF_UA", {"uric_acid": "0"}),
        ("MGSS_REF_CHOL", {"cholesterol": "99"}),
    ],
)
def test_implausible_value_is_out_of_range(attribute: str, item: dict[str, Any]) -> None:
    assert error_of("dusun_pub", ava4_item(attribute, item)).code == "out_of_range"


def test_plausible_range_bounds_are_inclusive() -> None:
    parsed = parse_payload(
        "dusun_pub", ava4_item("BP_BIOLIGTH", {"bp_high": 300, "bp_low": 20}), RECEIVED, RULE
    )
    assert parsed.readings[0].values == {"systolic": 300, "diastolic": 20}


def test_error_message_names_the_device_and_field() -> None:
    error = error_of("dusun_pub", ava4_item("BP_BIOLIGTH", {"bp_high": 999, "bp_low": 80}))
    assert error.message == (
        "AVA4 BP_BIOLIGTH device_list[0]: field 'bp_high' is outside the plausible range "
        "40-300 mm[Hg]"
    )


def qube_variants() -> list[tuple[str, dict[str, Any]]]:
    """Qube samples broken in ways that make errors, personal data left in place."""

    def broken(change: Any) -> dict[str, Any]:
        payload = copy.deepcopy(QUBE_BP)
        change(payload)
        return payload

    return [
        ("unknown attribute", broken(lambda p: p["data"].update(attribute=CITIZEN_ID))),
        ("text value", broken(lambda p: p["data"]["value"].update(bp_high=NAME_EN))),
        ("id as value", broken(lambda p: p["data"]["value"].update(bp_high=CITIZEN_ID))),
        ("birth as value", broken(lambda p: p["data"]["value"].update(bp_low=BIRTH))),
        ("missing value", broken(lambda p: p["data"]["value"].pop("bp_high"))),
        ("bad ble", broken(lambda p: p["data"].update(ble_mac=NAME_TH))),
        ("bad kiosk mac", broken(lambda p: p.update(mac=CITIZEN_ID))),
        ("no value", broken(lambda p: p["data"].pop("value"))),
        ("unknown type", broken(lambda p: (p.update(type=NAME_EN), p["data"].pop("attribute")))),
    ]


@pytest.mark.parametrize(
    ("case", "payload"), qube_variants(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_error_messages_never_contain_personal_data(case: str, payload: dict[str, Any]) -> None:
    error = error_of("CM4_BLE_GW_TX", json.dumps(payload, ensure_ascii=False).encode())
    for personal in (CITIZEN_ID, NAME_TH, NAME_EN, BIRTH, "DEV", "HV01"):
        assert personal not in error.message, case
        assert personal not in str(error), case
