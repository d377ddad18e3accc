"""Identifiers: every spelling of one device normalises to one registry key."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flows.device_clock import ClockRule
from flows.devices.identifiers import (
    IdKind,
    normalise_citizen_id,
    normalise_imei,
    normalise_mac,
)
from flows.devices.parse_payload import identify, parse_payload
from flows.model import ParseError

RECEIVED = datetime(2025, 7, 13, 9, 0, tzinfo=UTC)
RULE = ClockRule(max_age=timedelta(days=7), max_skew=timedelta(seconds=300))


def wire(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    "raw",
    [
        "08:F9:E0:D1:F7:B4",
        "08:f9:e0:d1:f7:b4",
        "08-F9-E0-D1-F7-B4",
        "08-f9-e0-d1-f7-b4",
        "08f9.e0d1.f7b4",
        "08F9E0D1F7B4",
        "08f9e0d1f7b4",
        "  08:F9:E0:D1:F7:B4 ",
    ],
)
def test_mac_spellings_normalise_to_twelve_upper_hex_digits(raw: str) -> None:
    assert normalise_mac(raw) == "08F9E0D1F7B4"


@pytest.mark.parametrize(
    "raw",
    [
        "xx:xx:xx:xx:xx:xx",
        "DAD&MOM-AVA-2B19",
        "08:F9:E0:D1:F7",
        "08:F9:E0:D1:F7:B4:00",
        "00:00:00:00:00:00",
        "FF:FF:FF:FF:FF:FF",
        "",
        None,
        8981234,
        True,
        ["08F9E0D1F7B4"],
        "08F9E0D1F7B4" * 10,
    ],
)
def test_unusable_mac_normalises_to_none(raw: object) -> None:
    assert normalise_mac(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("861265061477987", "861265061477987"),
        (" 861265061477987 ", "861265061477987"),
        (861265061477987, "861265061477987"),
        ("86126506147798", "86126506147798"),
        ("8612650614779870", "8612650614779870"),
    ],
)
def test_imei_of_14_to_16_digits_is_accepted(raw: object, expected: str) -> None:
    assert normalise_imei(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["8612650614779", "86126506147798701", "86126506147798A", "000000000000000", "", None, 1.5],
)
def test_imei_that_is_not_14_to_16_digits_is_refused(raw: object) -> None:
    assert normalise_imei(raw) is None


@pytest.mark.parametrize(
    "raw", ["3570300400000", "3-5703-00400-00-0", "3 5703 00400 00 0", "0000000000124"]
)
def test_citizen_id_of_13_digits_is_accepted_even_with_a_failing_check_digit(raw: str) -> None:
    assert normalise_citizen_id(raw) in {"3570300400000", "0000000000124"}


@pytest.mark.parametrize("raw", ["357030040000", "35703004000001", "0000000000000", "ABC", None])
def test_citizen_id_that_is_not_13_digits_is_refused(raw: object) -> None:
    assert normalise_citizen_id(raw) is None


def test_registry_keys_prefix_the_id_kind() -> None:
    assert IdKind.BLE.key("D616F9641622") == "ble:D616F9641622"
    assert IdKind.GATEWAY.key("08F9E0D1F7B4") == "gateway:08F9E0D1F7B4"
    assert IdKind.IMEI.key("861265061482607") == "imei:861265061482607"
    assert IdKind.CITIZEN_ID.key("3570300400000") == "citizen_id:3570300400000"


def ava4_bp(gateway: str, ble: str) -> dict[str, Any]:
    return {
        "mac": gateway,
        "type": "reportAttribute",
        "data": {
            "attribute": "BP_BIOLIGTH",
            "value": {"device_list": [{"ble_addr": ble, "bp_high": 120, "bp_low": 80}]},
        },
    }


@pytest.mark.parametrize(
    ("gateway", "ble"),
    [
        ("08:F9:E0:D1:F7:B4", "d616f9641622"),
        ("08:f9:e0:d1:f7:b4", "D616F9641622"),
        ("08-F9-E0-D1-F7-B4", "D6:16:F9:64:16:22"),
        ("08f9e0d1f7b4", "d6-16-f9-64-16-22"),
    ],
)
def test_ava4_keys_are_the_same_whatever_the_mac_spelling(gateway: str, ble: str) -> None:
    parsed = parse_payload("dusun_pub", wire(ava4_bp(gateway, ble)), RECEIVED, RULE)
    assert parsed.device_id == "08F9E0D1F7B4"
    assert parsed.lookup_keys == ["ble:D616F9641622", "gateway:08F9E0D1F7B4"]
    assert parsed.readings[0].sub_device == "ble:D616F9641622"


def test_ava4_message_with_several_sub_devices_looks_each_up_before_the_gateway() -> None:
    payload = ava4_bp("08:F9:E0:D1:F7:B4", "d616f9641622")
    items = payload["data"]["value"]["device_list"]
    items.append({"ble_addr": "C12488906DE0", "bp_high": 130, "bp_low": 85})
    items.append({"ble_addr": "D6:16:F9:64:16:22", "bp_high": 125, "bp_low": 82})
    parsed = parse_payload("dusun_pub", wire(payload), RECEIVED, RULE)
    assert parsed.lookup_keys == [
        "ble:D616F9641622",
        "ble:C12488906DE0",
        "gateway:08F9E0D1F7B4",
    ]
    assert [r.values["systolic"] for r in parsed.readings] == [120, 130, 125]


def test_ava4_gateway_mac_falls_back_to_data_mac_then_device_code() -> None:
    payload = ava4_bp("", "d616f9641622")
    payload["deviceCode"] = "08:F9:E0:D1:F7:B4"
    assert identify("dusun_pub", wire(payload)) == ("AVA4", "08F9E0D1F7B4")
    payload["data"]["mac"] = "DC:DA:0C:5A:80:64"
    assert identify("dusun_pub", wire(payload)) == ("AVA4", "DCDA0C5A8064")


def qube_bp(citizen: object, ble: str = "FF:22:09:08:31:31") -> dict[str, Any]:
    return {
        "mac": "e4:5f:01:ed:82:59",
        "type": "reportAttribute",
        "citiz": citizen,
        "data": {
            "attribute": "WBP_JUMPER",
            "ble_mac": ble,
            "value": {"bp_high": 120, "bp_low": 78},
        },
    }


def test_qube_citizen_id_with_dashes_is_looked_up_as_13_digits() -> None:
    parsed = parse_payload("CM4_BLE_GW_TX", wire(qube_bp("3-5703-00400-00-0")), RECEIVED, RULE)
    assert parsed.lookup_keys[0] == "citizen_id:3570300400000"


@pytest.mark.parametrize("citizen", ["12345", "", None, "ABCDEFGHIJKLM"])
def test_qube_citizen_id_that_is_not_13_digits_is_left_out_of_the_lookup(citizen: object) -> None:
    parsed = parse_payload("CM4_BLE_GW_TX", wire(qube_bp(citizen)), RECEIVED, RULE)
    assert parsed.lookup_keys == ["ble:FF2209083131", "gateway:E45F01ED8259"]


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        ("iMEDE_watch/hb", {"IMEI": "861265061482607"}, ("Kati", "861265061482607")),
        ("iMEDE_watch/anything", {"IMEI": 861265061482607}, ("Kati", "861265061482607")),
        ("iMEDE_watch/hb", {"IMEI": "12"}, ("Kati", "unknown")),
        ("iMEDE_watch/hb", {}, ("Kati", "unknown")),
        ("CM4_BLE_GW_TX", {"mac": "dc:a6:32:fe:a3:eb"}, ("Qube", "DCA632FEA3EB")),
        ("ESP32_BLE_GW_TX", {"mac": "DC:DA:0C:5A:80:64"}, ("AVA4", "DCDA0C5A8064")),
        ("dusun_sub", {"mac": "xx:xx:xx:xx:xx:xx"}, ("AVA4", "unknown")),
        ("some/other/topic", {"mac": "DC:DA:0C:5A:80:64"}, ("unknown", "unknown")),
        ("iMEDE_watch", {"IMEI": "861265061482607"}, ("unknown", "unknown")),
    ],
)
def test_identify_names_family_from_topic_and_id_from_payload(
    topic: str, payload: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert identify(topic, wire(payload)) == expected


@pytest.mark.parametrize(
    "raw", [b"", b"\xff\xfe\x00", b"not json", b"[1, 2]", b'"text"', b"[" * 5000, b"{" * 5000]
)
def test_identify_of_garbage_names_the_family_and_an_unknown_device(raw: bytes) -> None:
    assert identify("dusun_pub", raw) == ("AVA4", "unknown")


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [
        ("iMEDE_watch/hb", {"step": 5}, "missing_field"),
        ("iMEDE_watch/hb", {"IMEI": "12AB", "step": 5}, "invalid_identifier"),
        ("dusun_pub", {"type": "reportAttribute", "data": {}}, "missing_field"),
        ("dusun_pub", ava4_bp("xx:xx:xx:xx:xx:xx", "d616f9641622"), "invalid_identifier"),
        ("dusun_pub", ava4_bp("08:F9:E0:D1:F7:B4", "not-a-mac"), "invalid_identifier"),
        ("CM4_BLE_GW_TX", qube_bp("3570300400000", ble="FF:22"), "invalid_identifier"),
        ("CM4_BLE_GW_TX", {"type": "HB_Msg", "mac": "12:34"}, "invalid_identifier"),
    ],
)
def test_missing_or_malformed_device_identity_is_a_parse_error(
    topic: str, payload: dict[str, Any], code: str
) -> None:
    with pytest.raises(ParseError) as caught:
        parse_payload(topic, wire(payload), RECEIVED, RULE)
    assert caught.value.code == code
