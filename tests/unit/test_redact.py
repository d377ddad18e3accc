"""Redaction: personal data is replaced at any depth, everything else is kept, input untouched."""

from __future__ import annotations

import copy
import json

import pytest

from flows.redact import REDACTED, redact, safe_label

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
