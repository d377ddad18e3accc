"""Values as devices really send them: strings, float32 noise, key spellings, pseudo-JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flows.device_clock import ClockRule
from flows.devices.parse_payload import NOT_DEVICE_DATA, NOTHING_TO_STORE, parse_payload
from flows.devices.pseudo_json import PseudoJsonError, parse_pseudo_json
from flows.model import DeviceStatus, ObservationKind, ParsedMessage

RECEIVED = datetime(2025, 7, 13, 9, 0, tzinfo=UTC)
RULE = ClockRule(max_age=timedelta(days=7), max_skew=timedelta(seconds=300))
IMEI = "861265061482607"


def parse(topic: str, payload: dict[str, Any]) -> ParsedMessage:
    return parse_payload(topic, json.dumps(payload).encode(), RECEIVED, RULE)


def ava4(attribute: str, item: dict[str, Any], **top: Any) -> ParsedMessage:
    payload = {
        "mac": "08:F9:E0:D1:F7:B4",
        "type": "reportAttribute",
        "data": {"attribute": attribute, "value": {"device_list": [item]}},
        **top,
    }
    return parse("dusun_pub", payload)


def qube(attribute: str, value: dict[str, Any]) -> ParsedMessage:
    payload = {
        "mac": "e4:5f:01:ed:82:59",
        "type": "reportAttribute",
        "citiz": "3570300400000",
        "data": {"attribute": attribute, "ble_mac": "FF:22:09:08:31:31", "value": value},
    }
    return parse("CM4_BLE_GW_TX", payload)


def watch(kind: str, **payload: Any) -> ParsedMessage:
    return parse(f"iMEDE_watch/{kind}", {"IMEI": IMEI, **payload})


# Strings as numbers, ints as floats, float32 noise -------------------------------------


@pytest.mark.parametrize("glucose", ["108", " 108 ", 108, 108.0, "108.0", 107.99999237])
def test_glucose_sent_as_string_or_float_is_the_integer_108(glucose: object) -> None:
    values = ava4("Contour_Elite", {"blood_glucose": glucose}).readings[0].values
    assert values == {"glucose": 108}
    assert type(values["glucose"]) is int


def test_float32_noise_is_rounded_to_the_table_precision() -> None:
    temperature = ava4("IR_TEMO_JUMPER", {"temp": 36.43000031}).readings[0]
    assert temperature.values == {"temperature": 36.43}
    weight = ava4("BodyScale_JUMPER", {"weight": 79.30000305, "resistance": 605.9000244})
    assert weight.readings[0].values == {"weight": 79.3, "resistance": 605.9}


def test_uric_acid_and_cholesterol_strings_become_numbers() -> None:
    assert ava4("MGSS_REF_UA", {"uric_acid": "517.5"}).readings[0].values == {"uric_acid": 517.5}
    assert ava4("MGSS_REF_CHOL", {"cholesterol": "4.3"}).readings[0].values == {"cholesterol": 4.3}


def test_blood_pressure_sent_as_floats_and_strings_is_whole_mmhg() -> None:
    values = (
        ava4("BP_BIOLIGTH", {"bp_high": 137.0, "bp_low": "95", "PR": "74.0"}).readings[0].values
    )
    assert values == {"systolic": 137, "diastolic": 95, "pulse": 74}
    assert all(type(v) is int for v in values.values())


def test_perfusion_index_is_sent_times_ten_and_stored_in_percent() -> None:
    values = ava4("Oximeter JUMPER", {"spo2": 96, "pulse": 72, "pi": 43}).readings[0].values
    assert values["perfusion_index"] == 4.3


# Key spellings --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["PR", "pr", "Pr"])
def test_ava4_pulse_key_in_any_case_gives_pulse_and_heart_rate(key: str) -> None:
    readings = ava4("BP_BIOLIGTH", {"bp_high": 120, "bp_low": 80, key: 70}).readings
    assert [r.kind for r in readings] == [
        ObservationKind.BLOOD_PRESSURE,
        ObservationKind.HEART_RATE,
    ]
    assert readings[0].values["pulse"] == 70
    assert readings[1].values == {"heart_rate": 70}


@pytest.mark.parametrize("key", ["Temp", "temp", "TEMP"])
def test_qube_temperature_key_in_any_case_is_read(key: str) -> None:
    reading = qube("TEMO_Jumper", {key: 36.88, "mode": "Head"}).readings[0]
    assert reading.values == {"temperature": 36.88}
    assert reading.attributes == {"mode": "Head"}


@pytest.mark.parametrize("key", ["Resistance", "resistance"])
def test_body_scale_resistance_key_in_either_case_is_read(key: str) -> None:
    assert qube("BodyScale_JUMPER", {"weight": 76.3, key: 598.5}).readings[0].values == {
        "weight": 76.3,
        "resistance": 598.5,
    }


@pytest.mark.parametrize(
    "attribute", ["Oximeter JUMPER", "Oximeter_JUMPER", "oximeter jumper", "OXIMETER-JUMPER"]
)
def test_attribute_names_match_whatever_the_case_and_separator(attribute: str) -> None:
    assert ava4(attribute, {"spo2": 97}).readings[0].kind is ObservationKind.SPO2


def test_bp_without_pulse_gives_no_heart_rate_reading() -> None:
    readings = qube("WBP_JUMPER", {"bp_high": 120, "bp_low": 78}).readings
    assert [r.kind for r in readings] == [ObservationKind.BLOOD_PRESSURE]
    assert readings[0].values == {"systolic": 120, "diastolic": 78}


def test_empty_string_optional_field_counts_as_absent() -> None:
    readings = ava4("Oximeter JUMPER", {"spo2": 97, "pulse": "", "pi": ""}).readings
    assert [r.values for r in readings] == [{"spo2": 97}]


# Times ----------------------------------------------------------------------------------


def test_ava4_item_scan_time_is_preferred_over_message_time() -> None:
    plausible = int((RECEIVED - timedelta(minutes=10)).timestamp())
    reading = ava4("BLE_BPG", {"bp_high": 120, "bp_low": 80, "scan_time": plausible}, time=1)
    assert reading.readings[0].device_time == RECEIVED - timedelta(minutes=10)
    assert reading.readings[0].measured_at == RECEIVED - timedelta(minutes=10)


def test_ava4_message_time_is_used_when_the_item_has_no_scan_time() -> None:
    sent = int((RECEIVED - timedelta(hours=1)).timestamp())
    reading = ava4("BLE_BPG", {"bp_high": 120, "bp_low": 80}, time=str(sent)).readings[0]
    assert reading.device_time == RECEIVED - timedelta(hours=1)


def test_gateway_clock_178_days_fast_gives_the_receive_time() -> None:
    fast = int((RECEIVED + timedelta(days=178)).timestamp())
    reading = ava4("BLE_BPG", {"bp_high": 120, "bp_low": 80, "scan_time": fast}).readings[0]
    assert reading.device_time == RECEIVED + timedelta(days=178)
    assert reading.measured_at == RECEIVED


def test_ap55_epoch_in_local_time_seven_hours_ahead_gives_the_receive_time() -> None:
    local_as_utc = int((RECEIVED + timedelta(hours=7)).timestamp())
    parsed = watch("AP55", data=[{"timestamp": local_as_utc, "heartRate": 80}])
    assert parsed.readings[0].device_time == RECEIVED + timedelta(hours=7)
    assert parsed.readings[0].measured_at == RECEIVED


def test_kati_time_string_is_utc() -> None:
    parsed = watch("hb", step=10, timeStamps="13/07/2025 08:59:30")
    assert parsed.readings[0].device_time == datetime(2025, 7, 13, 8, 59, 30, tzinfo=UTC)
    assert parsed.readings[0].measured_at == datetime(2025, 7, 13, 8, 59, 30, tzinfo=UTC)


def test_unparseable_device_time_is_none_and_the_reading_is_kept() -> None:
    parsed = watch("hb", step=10, timeStamps="yesterday")
    assert parsed.readings[0].device_time is None
    assert parsed.readings[0].measured_at == RECEIVED


# Kati watch -----------------------------------------------------------------------------


def test_vital_sign_gives_a_reading_for_each_field_present_only() -> None:
    parsed = watch("VitalSign", heartRate="75", battery=50, signalGSM=60)
    assert [(r.kind, r.values) for r in parsed.readings] == [
        (ObservationKind.HEART_RATE, {"heart_rate": 75})
    ]
    assert parsed.status == DeviceStatus(
        device_key=f"imei:{IMEI}", online=True, battery=50, signal=60
    )


def test_vital_sign_without_any_vital_is_a_status_skip() -> None:
    parsed = watch("VitalSign", battery=50)
    assert parsed.skip_reason == NOTHING_TO_STORE
    assert parsed.readings == []
    assert parsed.status is not None
    assert parsed.status.battery == 50


def test_vital_sign_with_empty_gps_has_no_location_reading() -> None:
    parsed = watch("VitalSign", heartRate=72, location={"GPS": {"latitude": "", "longitude": ""}})
    assert [r.kind for r in parsed.readings] == [ObservationKind.HEART_RATE]


def test_heartbeat_without_step_is_a_status_skip_with_battery_and_signal() -> None:
    parsed = watch("hb", battery="35", signalGSM=80, satellites=3, workingMode=1)
    assert parsed.skip_reason == NOTHING_TO_STORE
    assert parsed.status == DeviceStatus(
        device_key=f"imei:{IMEI}",
        online=True,
        battery=35,
        signal=80,
        details={"satellites": 3, "working_mode": 1},
    )


def test_heartbeat_with_unusable_battery_reports_no_battery() -> None:
    parsed = watch("hb", step=5, battery=250, signalGSM="strong")
    assert parsed.status is not None
    assert (parsed.status.battery, parsed.status.signal) == (None, None)


def test_sleepdata_in_heartbeat_shape_is_a_status_skip() -> None:
    parsed = watch("sleepdata", battery=80, signalGSM=100, timeStamps="13/07/2025 08:00:00")
    assert parsed.skip_reason == NOTHING_TO_STORE
    assert parsed.status is not None
    assert parsed.status.battery == 80


def test_sleep_window_before_midnight_starts_the_day_before() -> None:
    parsed = watch(
        "sleepdata",
        sleep={"timeStamps": "13/07/2025 08:00:00", "time": "2300@0630", "data": "0123", "num": 4},
    )
    reading = parsed.readings[0]
    assert reading.values == {
        "duration_minutes": 20,
        "level_0_minutes": 5,
        "level_1_minutes": 5,
        "level_2_minutes": 5,
        "level_3_minutes": 5,
    }
    assert reading.attributes["start"] == "2025-07-12T23:00:00+00:00"
    assert reading.attributes["end"] == "2025-07-13T06:30:00+00:00"


def test_sleep_with_unreadable_window_keeps_the_window_text_only() -> None:
    parsed = watch("sleepdata", sleep={"time": "late", "data": "11"})
    assert parsed.readings[0].attributes == {"stages": "11", "window": "late"}


@pytest.mark.parametrize(
    "stamp", ["2025-07-13T15:50:00+07:00", "13/07/2025 15:50:00 +07:00", 1752396600000]
)
def test_a_watch_time_in_another_form_is_kept_as_sent(stamp: object) -> None:
    parsed = watch("VitalSign", heartRate=72, timeStamps=stamp)
    assert parsed.readings[0].device_time == datetime(2025, 7, 13, 8, 50, tzinfo=UTC)
    assert parsed.readings[0].measured_at == datetime(2025, 7, 13, 8, 50, tzinfo=UTC)


def test_a_gateway_time_in_milliseconds_is_kept_as_sent() -> None:
    reading = ava4("BP_BIOLIGTH", {"bp_high": 120, "bp_low": 80, "scan_time": 1752396600000})
    assert reading.readings[0].device_time == datetime(2025, 7, 13, 8, 50, tzinfo=UTC)


@pytest.mark.parametrize("stamp", ["31/12/9999 23:59:59", "01/01/0001 00:00:00"])
def test_sleep_at_the_ends_of_the_calendar_is_read_without_its_window(stamp: str) -> None:
    # A watch clock at year 1 or 9999: the window cannot be placed around it (it overflowed).
    sleep = {"timeStamps": stamp, "time": "2200@0700", "data": "0000011112222", "num": 13}
    parsed = watch("sleepdata", sleep=sleep)
    assert parsed.readings[0].values["duration_minutes"] == 65
    assert "start" not in parsed.readings[0].attributes


@pytest.mark.parametrize(
    ("topic", "event"), [("SOS", "sos"), ("sos", "sos"), ("fallDown", "fall"), ("FALLDOWN", "fall")]
)
def test_emergency_topics_in_any_case_give_an_emergency_reading(topic: str, event: str) -> None:
    parsed = watch(topic, status="SOS")
    assert [(r.kind, r.attributes) for r in parsed.readings] == [
        (ObservationKind.EMERGENCY, {"event": event})
    ]


def test_onlinetrigger_reports_online_and_offline() -> None:
    assert watch("onlineTrigger", status="online").status.online is True  # type: ignore[union-attr]
    assert watch("onlineTrigger", status="offline").status.online is False  # type: ignore[union-attr]
    assert watch("onlineTrigger", status="?").status.online is None  # type: ignore[union-attr]


def test_ap55_empty_batch_is_a_status_skip() -> None:
    parsed = watch("AP55", num_datas=0, data=[])
    assert parsed.skip_reason == NOTHING_TO_STORE


# Location -------------------------------------------------------------------------------


def location(**gps: Any) -> dict[str, Any]:
    return {"GPS": gps}


@pytest.mark.parametrize(
    "gps",
    [{"latitude": "", "longitude": ""}, {}, {"latitude": None, "longitude": None}],
)
def test_empty_gps_fields_give_no_coordinates_and_no_error(gps: dict[str, Any]) -> None:
    parsed = watch("location", location={"GPS": gps, "LBS": {"MCC": "520", "CID": "7"}})
    reading = parsed.readings[0]
    assert reading.values == {"cell": {"mcc": 520, "cid": 7}}
    assert reading.attributes == {}


@pytest.mark.parametrize(
    "gps",
    [
        {"latitude": 95.0, "longitude": 100.7},
        {"latitude": 13.7, "longitude": -181},
        {"latitude": "north", "longitude": 100.7},
        {"latitude": 13.7, "longitude": ""},
        {"latitude": 0, "longitude": 0},
    ],
)
def test_impossible_coordinates_are_dropped_with_gps_valid_false(gps: dict[str, Any]) -> None:
    parsed = watch("location", location={"GPS": {**gps, "speed": 1.5}, "WiFi": ""})
    reading = parsed.readings[0]
    assert reading.values == {"speed": 1.5}
    assert reading.attributes == {"gps_valid": False}


def test_coordinates_sent_as_strings_are_numbers() -> None:
    parsed = watch("location", location=location(latitude="13.691643", longitude="100.70656"))
    assert parsed.readings[0].values == {"latitude": 13.691643, "longitude": 100.70656}


def test_location_message_with_nothing_usable_is_a_status_skip() -> None:
    assert watch("location", location={"GPS": {}}).skip_reason == NOTHING_TO_STORE


def test_unparseable_wifi_is_kept_as_the_raw_string() -> None:
    raw = "[{'SSID':'Bob's phone','MAC':'aa-bb'"
    reading = watch("location", location={"WiFi": raw}).readings[0]
    assert reading.values == {"wifi": raw}


def test_wifi_ssid_with_quotes_and_escapes_is_decoded() -> None:
    raw = r"""[{'SSID':'Bob\'s "guest"','MAC':'AA:BB:CC:DD:EE:01','RSSI':'-61'}]"""
    reading = watch("location", location={"WiFi": raw}).readings[0]
    assert reading.values == {
        "wifi": [{"ssid": 'Bob\'s "guest"', "mac": "AABBCCDDEE01", "rssi": -61}]
    }


# Pseudo-JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[{'a':'1'}]", [{"a": "1"}]),
        ('[{"a": 1}]', [{"a": 1}]),
        ("{'x': [1, 2.5, -3], 'y': None, 'z': True}", {"x": [1, 2.5, -3], "y": None, "z": True}),
        ("[{'a':'1',},]", [{"a": "1"}]),
        ("  [ ]  ", []),
        ("'it''s'", None),
    ],
)
def test_pseudo_json_reads_single_and_double_quoted_literals(text: str, expected: Any) -> None:
    if expected is None:
        with pytest.raises(PseudoJsonError):
            parse_pseudo_json(text)
    else:
        assert parse_pseudo_json(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "[{...}]",
        "__import__('os').system('true')",
        "[1, 2",
        "{'a' 1}",
        "[" * 50 + "]" * 50,
        "1e999",
        "{1: 2}",
        "",
    ],
)
def test_pseudo_json_refuses_anything_else_without_evaluating_it(text: str) -> None:
    with pytest.raises(PseudoJsonError):
        parse_pseudo_json(text)


# Skips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("dusun_sub", {"type": "cmd", "mac": "xx:xx:xx:xx:xx:xx"}),
        ("dusun_sub", {"anything": 1}),
        ("dusun_pub", {"type": "cmd", "mac": "08:F9:E0:D1:F7:B4"}),
        ("dusun_pub", {"type": "reportAttribute", "from": "CLOUD"}),
        ("CM4_BLE_GW_TX", {"type": "cmd", "mac": "e4:5f:01:ed:82:59"}),
    ],
)
def test_cloud_commands_are_skipped_as_not_device_data(topic: str, payload: dict[str, Any]) -> None:
    parsed = parse(topic, payload)
    assert parsed.skip_reason == NOT_DEVICE_DATA
    assert parsed.readings == []
    assert parsed.status is None


def test_ava4_command_result_without_a_measurement_is_a_status_skip() -> None:
    parsed = parse("dusun_pub", {"type": "cmdResult", "mac": "08:F9:E0:D1:F7:B4", "data": {}})
    assert parsed.skip_reason == NOTHING_TO_STORE
    assert parsed.status == DeviceStatus(device_key="gateway:08F9E0D1F7B4", online=True)


def test_ava4_empty_device_list_is_a_status_skip() -> None:
    payload = {
        "type": "reportAttribute",
        "mac": "08:F9:E0:D1:F7:B4",
        "data": {"attribute": "BP_BIOLIGTH", "value": {"device_list": []}},
    }
    assert parse("dusun_pub", payload).skip_reason == NOTHING_TO_STORE


def test_gateway_heartbeat_saying_offline_reports_offline() -> None:
    parsed = parse(
        "ESP32_BLE_GW_TX",
        {"type": "HB_Msg", "mac": "08:F9:E0:D1:F7:B4", "data": {"msg": "Offline"}},
    )
    assert parsed.status is not None
    assert parsed.status.online is False


def test_parsed_readings_are_json_serialisable() -> None:
    parsed = watch(
        "sleepdata", sleep={"timeStamps": "13/07/2025 08:00:00", "time": "2200@0700", "data": "1"}
    )
    json.dumps([r.values | r.attributes for r in parsed.readings], allow_nan=False)


def test_watch_vitals_sent_as_zero_mean_not_measured_and_the_rest_is_kept():
    import json as _json
    from datetime import UTC as _UTC
    from datetime import datetime as _datetime
    from datetime import timedelta as _timedelta

    from flows.device_clock import ClockRule as _ClockRule
    from flows.devices.parse_payload import parse_payload as _parse

    payload = {
        "IMEI": "865067123456789",
        "heartRate": 72,
        "spO2": 0,
        "bodyTemperature": 0,
        "bloodPressure": {"bp_sys": 0, "bp_dia": 0},
        "timeStamps": "16/06/2025 12:30:45",
    }
    rule = _ClockRule(_timedelta(days=7), _timedelta(minutes=5))
    parsed = _parse(
        "iMEDE_watch/VitalSign", _json.dumps(payload).encode(), _datetime.now(_UTC), rule
    )
    assert [(str(r.kind), r.values) for r in parsed.readings] == [
        ("heart_rate", {"heart_rate": 72})
    ]
