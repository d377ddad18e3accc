"""A message of several parts: one unreadable part does not lose the others' readings.

The readable parts are stored, step 2 succeeds listing what it rejected, and the message is
dead-lettered (`parts_rejected`) so the rest can be looked at and replayed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.mqtt_source import MqttMessage
from flows.dead_letters import PARTS_REJECTED, dead_letters
from flows.device_clock import ClockRule
from flows.devices.outcomes import MAX_PARTS
from flows.devices.parse_payload import parse_payload
from flows.model import Delivery, Envelope, ParseError, Step, StepOutcome, StepStatus
from flows.pipeline import build_flow
from flows.settings import Settings
from sinks.mongo_database import open_database

RECEIVED = datetime(2025, 7, 13, 8, 45, tzinfo=UTC)
RULE = ClockRule(max_age=timedelta(days=7), max_skew=timedelta(seconds=300))
GATEWAY = "08:F9:E0:D1:F7:B4"
IMEI = "861265061482607"


def _ava4(items: list[object]) -> bytes:
    payload = {
        "mac": GATEWAY,
        "type": "reportAttribute",
        "data": {"attribute": "BP_BIOLIGTH", "value": {"device_list": items}},
    }
    return json.dumps(payload).encode()


def _watch(kind: str, **fields: Any) -> bytes:
    return json.dumps({"IMEI": IMEI, "timeStamps": "13/07/2025 08:44:00", **fields}).encode()


GOOD = {"ble_addr": "d616f9641622", "bp_high": 120, "bp_low": 80, "PR": 70}


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ({"ble_addr": "c12488906de0", "bp_high": "err", "bp_low": 80}, "invalid_value"),
        ({"ble_addr": "c12488906de0", "bp_low": 80}, "missing_field"),
        ({"ble_addr": "zz", "bp_high": 120, "bp_low": 80}, "invalid_identifier"),
        ("120/80", "invalid_value"),
    ],
)
def test_a_bad_gateway_item_leaves_the_good_ones(bad: object, code: str) -> None:
    parsed = parse_payload("dusun_pub", _ava4([GOOD, bad]), RECEIVED, RULE)
    assert [(r.kind, r.sub_device) for r in parsed.readings] == [
        ("blood_pressure", "ble:D616F9641622"),
        ("heart_rate", "ble:D616F9641622"),
    ]
    assert [c for c, _ in parsed.rejected] == [code]
    assert "device_list[1]" in parsed.rejected[0][1]


def test_a_gateway_message_with_no_good_item_fails_with_the_first_error() -> None:
    bad = {"bp_high": "err", "bp_low": 80}
    with pytest.raises(ParseError) as caught:
        parse_payload("dusun_pub", _ava4([bad, {"bp_low": 80}]), RECEIVED, RULE)
    assert caught.value.code == "invalid_value"
    assert "device_list[0]" in caught.value.message


@pytest.mark.parametrize(
    ("pressure", "code"),
    [
        ({"bp_sys": 122, "bp_dia": 0}, "missing_field"),  # 0: not measured
        ({"bp_sys": 122}, "missing_field"),
        ("122/74", "invalid_value"),  # present, and not an object: not silently absent
        ([122, 74], "invalid_value"),
        ({"bp_sys": 70, "bp_dia": 110}, "out_of_range"),
    ],
)
def test_an_unreadable_vital_leaves_the_watchs_other_vitals(pressure: object, code: str) -> None:
    payload = _watch(
        "VitalSign", heartRate=72, bloodPressure=pressure, bodyTemperature=36.6, spO2=88
    )
    parsed = parse_payload("iMEDE_watch/VitalSign", payload, RECEIVED, RULE)
    assert [r.kind for r in parsed.readings] == ["heart_rate", "body_temperature", "spo2"]
    assert [c for c, _ in parsed.rejected] == [code]


def test_a_bad_item_of_a_watch_batch_leaves_the_others() -> None:
    items = [
        {"timestamp": 1752396000, "heartRate": 70},
        "broken",
        {"timestamp": 1752396060, "heartRate": "fast"},
        {"timestamp": 1752396120, "heartRate": 74},
    ]
    parsed = parse_payload("iMEDE_watch/AP55", _watch("AP55", data=items), RECEIVED, RULE)
    assert [r.values["heart_rate"] for r in parsed.readings] == [70, 74]
    assert [c for c, _ in parsed.rejected] == ["invalid_value", "invalid_value"]


@pytest.fixture
def database(tmp_path: Path) -> Any:
    db = open_database(f"montydb://{tmp_path / 'store'}", "vf")
    yield db
    db.client.close()


def test_the_readable_parts_are_stored_and_the_message_dead_lettered(database: Any) -> None:
    database.patients.insert_one({"_id": "p1", "hospital_id": "h1"})
    database.devices.insert_one({"_id": "gateway:08F9E0D1F7B4", "patient_id": "p1"})
    payload = _ava4([GOOD, {"ble_addr": "c12488906de0", "bp_high": "err", "bp_low": 80}])
    steps: list[tuple[str, tuple[str, bytes]]] = []
    letters: list[tuple[str, tuple[str, bytes]]] = []
    flow = build_flow(
        Settings(),
        source=TestingSource([MqttMessage("dusun_pub", payload, datetime.now(UTC))]),
        steps_sink=TestingSink(steps),
        dlq_sink=TestingSink(letters),
        alerts_sink=TestingSink([]),
        database=lambda: database,
    )
    run_main(flow)

    events = [json.loads(value)["data"] for _key, (_k, value) in steps]
    assert [(e["step"], e["status"]) for e in events] == [
        ("1_mqtt_received", "success"),
        ("2_payload_parsed", "success"),
        ("3_patient_lookup", "success"),
        ("4_patient_updated", "success"),
        ("5_medical_stored", "success"),
    ]
    [rejected] = events[1]["processed_data"]["rejected"]
    assert rejected["code"] == "invalid_value"
    assert sorted(d["kind"] for d in database.observations.find({})) == [
        "blood_pressure",
        "heart_rate",
    ]
    [(_key, (_k, value))] = letters
    letter = json.loads(value)
    assert letter["reason"]["code"] == PARTS_REJECTED
    assert letter["reason"]["step"] == "2_payload_parsed"
    assert "device_list[1]" in letter["reason"]["message"]
    assert letter["payload"] == payload.decode()


def test_a_dead_letter_for_a_topic_with_a_lone_surrogate_is_still_written() -> None:
    # paho and Mosquitto refuse such topics; another source might not.
    delivery = Delivery("dusun_pub\udcff", b"{}", RECEIVED, "m1")
    failed = StepOutcome(Step.PARSED, StepStatus.ERROR, RECEIVED, error_code="invalid_json")
    envelope = Envelope(delivery, "AVA4", "unknown", {}, outcomes=[failed])
    [(_key, (_k, value))] = dead_letters(envelope)
    assert json.loads(value)["topic"] == "dusun_pub\udcff"


@pytest.mark.parametrize("count", [MAX_PARTS, MAX_PARTS + 1])
def test_more_parts_than_any_device_sends_are_refused_whole(count: int) -> None:
    items = [GOOD] * count
    if count <= MAX_PARTS:
        assert len(parse_payload("dusun_pub", _ava4(items), RECEIVED, RULE).readings) == 2 * count
        return
    with pytest.raises(ParseError) as caught:
        parse_payload("dusun_pub", _ava4(items), RECEIVED, RULE)
    assert caught.value.code == "out_of_range"
    batch = [{"timestamp": 1752396000, "heartRate": 70}] * count
    with pytest.raises(ParseError):
        parse_payload("iMEDE_watch/AP55", _watch("AP55", data=batch), RECEIVED, RULE)
