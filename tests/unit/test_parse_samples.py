"""Every line of both sample files parses to exactly the readings or skip written out here.

The expected values are typed in from the sample files and SPEC.md, not produced by the
parser. Examples are parsed as if received at RECEIVED (2025-07-13 09:00 UTC), so every
documented device time (2024-2028) is implausible and readings are timed RECEIVED; capture
lines are parsed at their real receive time, where the watches' clocks are right.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.device_clock import ClockRule
from flows.devices.parse_payload import NOT_DEVICE_DATA, NOTHING_TO_STORE, identify, parse_payload
from flows.model import DeviceStatus, ObservationKind, ParsedMessage, Reading

PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"
RECEIVED = datetime(2025, 7, 13, 9, 0, tzinfo=UTC)
RULE = ClockRule(max_age=timedelta(days=7), max_skew=timedelta(seconds=300))
K = ObservationKind


def at(text: str) -> datetime:
    """A UTC datetime from "YYYY-MM-DD HH:MM:SS"."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def lines(name: str) -> list[dict[str, Any]]:
    with (PAYLOADS / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def wire(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


@dataclass
class Expected:
    device_type: str
    device_id: str
    message_kind: str
    readings: list[Reading] = field(default_factory=list)
    lookup_keys: list[str] = field(default_factory=list)
    skip_reason: str | None = None
    status: DeviceStatus | None = None


def reading(
    kind: ObservationKind,
    values: dict[str, Any],
    *,
    device_time: datetime | None,
    measured_at: datetime = RECEIVED,
    sub_device: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> Reading:
    return Reading(
        kind=kind,
        values=values,
        measured_at=measured_at,
        device_time=device_time,
        sub_device=sub_device,
        attributes=attributes or {},
    )


def gateway_heartbeat(device_type: str, mac: str, kind: str, details: dict[str, Any]) -> Expected:
    return Expected(
        device_type,
        mac,
        kind,
        lookup_keys=[f"gateway:{mac}"],
        skip_reason=NOTHING_TO_STORE,
        status=DeviceStatus(device_key=f"gateway:{mac}", online=True, details=details),
    )


def watch_status(imei: str, **fields: Any) -> DeviceStatus:
    return DeviceStatus(device_key=f"imei:{imei}", **fields)


WARD_3_LOCATION = {
    "latitude": 13.691643,
    "longitude": 100.70656,
    "speed": 0.0,
    "heading": 0.0,
    "wifi": [{"ssid": "ward-3", "mac": "AABBCCDDEEFF", "rssi": 87}],
    "cell": {
        "mcc": 520,
        "mnc": 3,
        "lac": 1815,
        "cid": 79474300,
        "neighbours": [{"lac": 1815, "cid": 79474301, "dbm": 40}],
    },
}
SLEEP_STAGES = (
    "0000000111110000010011111110011111111111110000000002200000001111111112111100111001111111"
    "211111111222111111111110110111111110110111111011112201110"
)
WATCH = "865067123456789"


def bp_and_heart_rate(
    systolic: int, diastolic: int, pulse: int, ble: str, device_time: datetime
) -> list[Reading]:
    return [
        reading(
            K.BLOOD_PRESSURE,
            {"systolic": systolic, "diastolic": diastolic, "pulse": pulse},
            device_time=device_time,
            sub_device=ble,
        ),
        reading(
            K.HEART_RATE,
            {"heart_rate": pulse},
            device_time=device_time,
            sub_device=ble,
            attributes={"derived_from": "blood_pressure"},
        ),
    ]


EXAMPLES: dict[str, Expected] = {
    "HB_Msg": gateway_heartbeat(
        "AVA4",
        "DCDA0C5A8064",
        "HB_Msg",
        {
            "name": "AVA4-No.1",
            "imei": "868334037510868",
            "iccid": "8966032240112716129",
            "message": "Online",
            "device_time": "2025-04-06T18:25:11+00:00",
        },
    ),
    "reportMsg_online_trigger": gateway_heartbeat(
        "AVA4",
        "DCDA0C5AFFFF",
        "reportMsg",
        {
            "imei": "868334037510868",
            "iccid": "8966032240112716129",
            "message": "Online",
            "device_time": "2025-04-06T09:41:05+00:00",
        },
    ),
    "BP_BIOLIGTH": Expected(
        "AVA4",
        "08F9E0D1F7B4",
        "reportAttribute",
        readings=bp_and_heart_rate(137, 95, 74, "ble:D616F9641622", at("2028-03-17 21:52:51")),
        lookup_keys=["ble:D616F9641622", "gateway:08F9E0D1F7B4"],
    ),
    "Oximeter_JUMPER": Expected(
        "AVA4",
        "DCDA0C5A8044",
        "reportAttribute",
        readings=[
            reading(
                K.SPO2,
                {"spo2": 96, "pulse": 72, "perfusion_index": 4.3},
                device_time=at("2028-03-17 23:02:38"),
                sub_device="ble:FF23041920B4",
            ),
            reading(
                K.HEART_RATE,
                {"heart_rate": 72},
                device_time=at("2028-03-17 23:02:38"),
                sub_device="ble:FF23041920B4",
                attributes={"derived_from": "spo2"},
            ),
        ],
        lookup_keys=["ble:FF23041920B4", "gateway:DCDA0C5A8044"],
    ),
    "Contour_Elite": Expected(
        "AVA4",
        "DCDA0C5A8088",
        "reportAttribute",
        readings=[
            reading(
                K.BLOOD_GLUCOSE,
                {"glucose": 108},
                device_time=at("2028-05-14 00:12:33"),
                sub_device="ble:806FB0750C88",
                attributes={"marker": "After Meal"},
            )
        ],
        lookup_keys=["ble:806FB0750C88", "gateway:DCDA0C5A8088"],
    ),
    "AccuChek_Instant": Expected(
        "AVA4",
        "806599A1DC77",
        "reportAttribute",
        readings=[
            reading(
                K.BLOOD_GLUCOSE,
                {"glucose": 111},
                device_time=at("2028-05-14 00:12:33"),
                sub_device="ble:60E85B7AAB77",
                attributes={"marker": "After Meal"},
            )
        ],
        lookup_keys=["ble:60E85B7AAB77", "gateway:806599A1DC77"],
    ),
    "IR_TEMO_JUMPER": Expected(
        "AVA4",
        "DCDA0C5A8064",
        "reportAttribute",
        readings=[
            reading(
                K.BODY_TEMPERATURE,
                {"temperature": 36.43},
                device_time=at("2028-05-14 15:54:06"),
                sub_device="ble:FF2301283119",
                attributes={"mode": "Head"},
            )
        ],
        lookup_keys=["ble:FF2301283119", "gateway:DCDA0C5A8064"],
    ),
    "BodyScale_JUMPER": Expected(
        "AVA4",
        "DCDA0C5A8033",
        "reportAttribute",
        readings=[
            reading(
                K.BODY_WEIGHT,
                {"weight": 79.3, "resistance": 605.9},
                device_time=at("2026-03-12 17:41:46"),
                sub_device="ble:A0779E1C14D8",
            )
        ],
        lookup_keys=["ble:A0779E1C14D8", "gateway:DCDA0C5A8033"],
    ),
    "MGSS_REF_UA": Expected(
        "AVA4",
        "3420039A1322",
        "reportAttribute",
        readings=[
            reading(
                K.URIC_ACID,
                {"uric_acid": 517.5},
                device_time=at("2028-05-14 00:12:33"),
                sub_device="ble:60E85B7AAB77",
            )
        ],
        lookup_keys=["ble:60E85B7AAB77", "gateway:3420039A1322"],
    ),
    "MGSS_REF_CHOL": Expected(
        "AVA4",
        "3420039A1311",
        "reportAttribute",
        readings=[
            reading(
                K.CHOLESTEROL,
                {"cholesterol": 4.3},
                device_time=at("2028-05-14 00:12:33"),
                sub_device="ble:0035FF226907",
            )
        ],
        lookup_keys=["ble:0035FF226907", "gateway:3420039A1311"],
    ),
    "BLE_BPG_variant": Expected(
        "AVA4",
        "08F9E0D1F7B4",
        "reportAttribute",
        readings=bp_and_heart_rate(137, 95, 74, "ble:C12488906DE0", at("2028-03-17 21:52:51")),
        lookup_keys=["ble:C12488906DE0", "gateway:08F9E0D1F7B4"],
    ),
    "hb": Expected(
        "Kati",
        WATCH,
        "hb",
        readings=[reading(K.STEPS, {"steps": 999}, device_time=at("2025-06-16 12:30:45"))],
        lookup_keys=[f"imei:{WATCH}"],
        status=watch_status(
            WATCH, online=True, battery=67, signal=80, details={"satellites": 4, "working_mode": 2}
        ),
    ),
    "VitalSign": Expected(
        "Kati",
        WATCH,
        "VitalSign",
        readings=[
            reading(
                K.BLOOD_PRESSURE,
                {"systolic": 122, "diastolic": 74},
                device_time=at("2025-06-16 12:30:45"),
            ),
            reading(K.HEART_RATE, {"heart_rate": 72}, device_time=at("2025-06-16 12:30:45")),
            reading(
                K.BODY_TEMPERATURE, {"temperature": 36.6}, device_time=at("2025-06-16 12:30:45")
            ),
            reading(K.SPO2, {"spo2": 97}, device_time=at("2025-06-16 12:30:45")),
            reading(
                K.LOCATION,
                {
                    "latitude": 22.5678,
                    "longitude": 112.3456,
                    "wifi": "[{...}]",
                    "cell": {"mcc": 520, "mnc": 3, "lac": 1815, "cid": 79474300},
                },
                device_time=at("2025-06-16 12:30:45"),
                attributes={"gps_valid": True},
            ),
        ],
        lookup_keys=[f"imei:{WATCH}"],
        status=watch_status(WATCH, online=True, battery=67, signal=80),
    ),
    "location": Expected(
        "Kati",
        WATCH,
        "location",
        readings=[
            reading(
                K.LOCATION,
                {
                    "latitude": 22.5678,
                    "longitude": 112.3456,
                    "speed": 0.0,
                    "heading": 180.0,
                    "wifi": [{"ssid": "WiFi1", "mac": "AABBCCDDEEFF", "rssi": 87}],
                    "cell": {
                        "mcc": 520,
                        "mnc": 3,
                        "lac": 1815,
                        "cid": 79474300,
                        "neighbours": "[{...}]",
                    },
                },
                device_time=None,
                attributes={"gps_valid": True},
            )
        ],
        lookup_keys=[f"imei:{WATCH}"],
        status=watch_status(WATCH, online=True),
    ),
    "sleepdata": Expected(
        "Kati",
        WATCH,
        "sleepdata",
        readings=[
            reading(
                K.SLEEP,
                {
                    "duration_minutes": 725,
                    "level_0_minutes": 215,
                    "level_1_minutes": 465,
                    "level_2_minutes": 45,
                    "level_3_minutes": 0,
                },
                device_time=at("2025-06-16 01:00:00"),
                attributes={
                    "stages": SLEEP_STAGES,
                    "window": "2200@0700",
                    "start": "2025-06-15T22:00:00+00:00",
                    "end": "2025-06-16T07:00:00+00:00",
                },
            )
        ],
        lookup_keys=[f"imei:{WATCH}"],
        status=watch_status(WATCH, online=True),
    ),
    "HB_Msg_online_status": gateway_heartbeat(
        "Qube",
        "DCA632FEA3EB",
        "HB_Msg",
        {
            "name": "Vital Box PHAi#1",
            "imei": "867395074089109",
            "iccid": "520031008598593",
            "message": "Online",
            "device_time": "2024-05-04T02:11:01+00:00",
        },
    ),
    "WBP_JUMPER_bp": Expected(
        "Qube",
        "E45F01ED8259",
        "reportAttribute",
        readings=bp_and_heart_rate(120, 78, 71, "ble:FF2209083131", at("2025-02-12 11:45:02")),
        lookup_keys=["citizen_id:3570300400000", "ble:FF2209083131", "gateway:E45F01ED8259"],
    ),
    "CONTOUR_glucose": Expected(
        "Qube",
        "E45F01ED8259",
        "reportAttribute",
        readings=[
            reading(
                K.BLOOD_GLUCOSE,
                {"glucose": 97},
                device_time=at("2025-02-12 11:45:02"),
                sub_device="ble:005FBF976C84",
                attributes={"marker": "After Meal"},
            )
        ],
        lookup_keys=["citizen_id:3570300400000", "ble:005FBF976C84", "gateway:E45F01ED8259"],
    ),
    "BodyScale_JUMPER_weight": Expected(
        "Qube",
        "E45F01ED8259",
        "reportAttribute",
        readings=[
            reading(
                K.BODY_WEIGHT,
                {"weight": 76.3, "resistance": 598.5},
                device_time=at("2024-05-04 10:39:11"),
                sub_device="ble:A0779E1C1826",
            )
        ],
        lookup_keys=["citizen_id:3570300400000", "ble:A0779E1C1826", "gateway:E45F01ED8259"],
    ),
    "TEMO_Jumper_temp": Expected(
        "Qube",
        "E45F01ED8259",
        "reportAttribute",
        readings=[
            reading(
                K.BODY_TEMPERATURE,
                {"temperature": 36.88},
                device_time=at("2025-02-12 11:45:02"),
                sub_device="ble:FF2301281039",
                attributes={"mode": "Head"},
            )
        ],
        lookup_keys=["citizen_id:3570300400000", "ble:FF2301281039", "gateway:E45F01ED8259"],
    ),
    "Oximeter_JUMPER_spo2": Expected(
        "Qube",
        "E45F01ED8259",
        "reportAttribute",
        readings=[
            reading(
                K.SPO2,
                {"spo2": 97, "pulse": 70, "perfusion_index": 7.0},
                device_time=at("2024-05-04 10:39:11"),
                sub_device="ble:402E714A3884",
            ),
            reading(
                K.HEART_RATE,
                {"heart_rate": 70},
                device_time=at("2024-05-04 10:39:11"),
                sub_device="ble:402E714A3884",
                attributes={"derived_from": "spo2"},
            ),
        ],
        # 0000000000124 fails the mod-11 check (a test card) and is accepted all the same.
        lookup_keys=["citizen_id:0000000000124", "ble:402E714A3884", "gateway:E45F01ED8259"],
    ),
    "AP55": Expected(
        "Kati",
        WATCH,
        "AP55",
        readings=[
            reading(
                K.BLOOD_PRESSURE,
                {"systolic": 119, "diastolic": 73},
                device_time=at("2025-01-31 13:47:36"),
            ),
            reading(K.HEART_RATE, {"heart_rate": 84}, device_time=at("2025-01-31 13:47:36")),
            reading(
                K.BODY_TEMPERATURE, {"temperature": 36.9}, device_time=at("2025-01-31 13:47:36")
            ),
            reading(K.SPO2, {"spo2": 98}, device_time=at("2025-01-31 13:47:36")),
            reading(
                K.BLOOD_PRESSURE,
                {"systolic": 121, "diastolic": 75},
                device_time=at("2025-01-31 13:52:36"),
            ),
            reading(K.HEART_RATE, {"heart_rate": 80}, device_time=at("2025-01-31 13:52:36")),
            reading(
                K.BODY_TEMPERATURE, {"temperature": 36.8}, device_time=at("2025-01-31 13:52:36")
            ),
            reading(K.SPO2, {"spo2": 97}, device_time=at("2025-01-31 13:52:36")),
            reading(
                K.LOCATION,
                WARD_3_LOCATION,
                device_time=at("2025-06-16 12:30:45"),
                attributes={"gps_valid": True},
            ),
        ],
        lookup_keys=[f"imei:{WATCH}"],
        status=watch_status(WATCH, online=True),
    ),
    "SOS": Expected(
        "Kati",
        WATCH,
        "SOS",
        readings=[
            reading(
                K.EMERGENCY,
                WARD_3_LOCATION,
                device_time=None,
                attributes={"event": "sos", "gps_valid": True},
            )
        ],
        lookup_keys=[f"imei:{WATCH}"],
        status=watch_status(WATCH, online=True),
    ),
    "fallDown": Expected(
        "Kati",
        WATCH,
        "fallDown",
        readings=[
            reading(
                K.EMERGENCY,
                WARD_3_LOCATION,
                device_time=None,
                attributes={"event": "fall", "gps_valid": True},
            )
        ],
        lookup_keys=[f"imei:{WATCH}"],
        status=watch_status(WATCH, online=True),
    ),
    "onlineTrigger": Expected(
        "Kati",
        WATCH,
        "onlineTrigger",
        lookup_keys=[f"imei:{WATCH}"],
        skip_reason=NOTHING_TO_STORE,
        status=watch_status(WATCH, online=False),
    ),
}


def cloud_command() -> Expected:
    return Expected("AVA4", "unknown", "cmd", skip_reason=NOT_DEVICE_DATA)


def capture_heartbeat(mac: str, name: str, imei: str, iccid: str, sent: str) -> Expected:
    details = {
        "name": name,
        "imei": imei,
        "iccid": iccid,
        "message": "Online",
        "device_time": f"{sent}+00:00",
    }
    return gateway_heartbeat("AVA4", mac, "HB_Msg", details)


def capture_steps(imei: str, steps: int, sent: str, battery: int, signal: int) -> Expected:
    # The watch clock is right: the reading is timed by the watch, not by the broker.
    return Expected(
        "Kati",
        imei,
        "hb",
        readings=[reading(K.STEPS, {"steps": steps}, device_time=at(sent), measured_at=at(sent))],
        lookup_keys=[f"imei:{imei}"],
        status=watch_status(
            imei,
            online=True,
            battery=battery,
            signal=signal,
            details={"satellites": 0, "working_mode": 1},
        ),
    )


def capture_location(sent: str) -> Expected:
    imei = "861265061478050"
    return Expected(
        "Kati",
        imei,
        "location",
        readings=[
            reading(
                K.LOCATION,
                {
                    "latitude": 13.691645,
                    # Nonsense for a site at 100.7 E, but a valid longitude: kept.
                    "longitude": 4.039888,
                    "speed": 0.1,
                    "heading": 350.01,
                    "wifi": [
                        {"ssid": "a", "mac": "E2B370181BB6", "rssi": 115},
                        {"ssid": "a", "mac": "DEB370181BB6", "rssi": 115},
                        {"ssid": "a", "mac": "EAB370181BB6", "rssi": 115},
                        {"ssid": "a", "mac": "E6B370181BB6", "rssi": 113},
                    ],
                    "cell": {
                        "mcc": 520,
                        "mnc": 3,
                        "lac": 13015,
                        "cid": 166155371,
                        "neighbours": [{"lac": 13015, "cid": 166155376, "dbm": 43}],
                    },
                },
                device_time=at(sent),
                measured_at=at(sent),
                attributes={"gps_valid": True},
            )
        ],
        lookup_keys=[f"imei:{imei}"],
        status=watch_status(imei, online=True),
    )


TKH = ("08F9E0D1F7B4", "TKH-08-Instant", "861518041658567", "8966032240112702889")
NO8 = ("806599A28008", "AVA4 No.8 Kitisak", "868334037509019", "8966032240112705254")
KM = ("08B61F881298", "KM Contour Jumper", "861518041657700", "8966032240112716137")
NO5 = ("744DBD834258", "AVA4 No.5 BanNaSan #", "868334037609462", "8966032240112716277")
BED = ("DCDA0C5A8064", "AVA4-KM-Bed-Room", "868334037510868", "8966032240112716129")

CAPTURE: dict[int, Expected] = {
    1: Expected(
        "Kati",
        "861265061477987",
        "onlineTrigger",
        lookup_keys=["imei:861265061477987"],
        skip_reason=NOTHING_TO_STORE,
        status=watch_status("861265061477987", online=True),
    ),
    2: cloud_command(),
    3: cloud_command(),
    4: capture_heartbeat(*TKH, "2026-01-07T15:49:58"),
    5: capture_location("2025-07-13 08:50:18"),
    6: capture_heartbeat(*NO8, "2026-01-07T15:50:04"),
    7: capture_heartbeat(*KM, "2026-01-07T15:50:13"),
    8: capture_heartbeat(*NO5, "2026-01-07T15:50:40"),
    9: capture_heartbeat(*BED, "2026-01-07T15:50:48"),
    10: capture_steps("861265061482607", 783, "2025-07-13 08:50:59", battery=89, signal=100),
    11: cloud_command(),
    12: cloud_command(),
    13: capture_steps("861265061486269", 0, "2025-07-13 08:51:00", battery=90, signal=100),
    14: capture_heartbeat(*TKH, "2026-01-07T15:51:03"),
    15: capture_location("2025-07-13 08:51:18"),
    16: capture_heartbeat(*NO8, "2026-01-07T15:51:04"),
    17: capture_heartbeat(*KM, "2026-01-07T15:51:13"),
    18: capture_heartbeat(*NO5, "2026-01-07T15:51:40"),
    19: capture_heartbeat(*BED, "2026-01-07T15:51:48"),
    20: capture_steps("861265061482334", 0, "2025-07-13 08:51:58", battery=35, signal=80),
    21: cloud_command(),
    22: cloud_command(),
    23: capture_steps("861265061366537", 317, "2025-07-13 08:52:00", battery=9, signal=100),
    24: capture_steps("861265061482888", 30, "2025-07-13 08:52:00", battery=85, signal=60),
    25: capture_heartbeat(*TKH, "2026-01-07T15:52:08"),
}


def assert_parsed(parsed: ParsedMessage, expected: Expected) -> None:
    assert parsed.device_type == expected.device_type
    assert parsed.device_id == expected.device_id
    assert parsed.message_kind == expected.message_kind
    assert parsed.skip_reason == expected.skip_reason
    assert parsed.lookup_keys == expected.lookup_keys
    assert parsed.status == expected.status
    assert len(parsed.readings) == len(expected.readings)
    for got, want in zip(parsed.readings, expected.readings, strict=True):
        assert got == replace(want, patient_keys=_patient_keys(want, expected))


def _patient_keys(want: Reading, expected: Expected) -> tuple[str, ...]:
    # An AVA4 reading is looked up by its own cuff, then by its gateway (a gateway can serve
    # a household); the other families' readings are their message's.
    if expected.device_type != "AVA4":
        return ()
    [gateway] = [k for k in expected.lookup_keys if k.startswith("gateway:")]
    return (want.sub_device, gateway) if want.sub_device else (gateway,)


EXAMPLE_LINES = lines("examples.jsonl")
CAPTURE_LINES = lines("capture-2025-07-13.jsonl")


def test_every_example_line_has_an_expectation() -> None:
    assert [line["name"] for line in EXAMPLE_LINES] == list(EXAMPLES)


def test_every_capture_line_has_an_expectation() -> None:
    assert [line["capture_seq"] for line in CAPTURE_LINES] == list(CAPTURE)


@pytest.mark.parametrize("line", EXAMPLE_LINES, ids=lambda line: line["name"])
def test_documented_example_parses_to_expected_readings(line: dict[str, Any]) -> None:
    parsed = parse_payload(line["topic"], wire(line["payload"]), RECEIVED, RULE)
    assert_parsed(parsed, EXAMPLES[line["name"]])


@pytest.mark.parametrize("line", CAPTURE_LINES, ids=lambda line: f"seq{line['capture_seq']}")
def test_captured_message_parses_to_expected_readings(line: dict[str, Any]) -> None:
    received = datetime.fromisoformat(line["received_at_utc"])
    parsed = parse_payload(line["topic"], wire(line["payload"]), received, RULE)
    assert_parsed(parsed, CAPTURE[line["capture_seq"]])


@pytest.mark.parametrize(
    ("line", "expected"),
    [(line, EXAMPLES[line["name"]]) for line in EXAMPLE_LINES]
    + [(line, CAPTURE[line["capture_seq"]]) for line in CAPTURE_LINES],
    ids=lambda value: (
        str(value.get("name", value.get("capture_seq"))) if isinstance(value, dict) else ""
    ),
)
def test_identify_names_the_device_parse_would(line: dict[str, Any], expected: Expected) -> None:
    assert identify(line["topic"], wire(line["payload"])) == (
        expected.device_type,
        expected.device_id,
    )


@pytest.mark.parametrize(
    "line",
    [line for line in EXAMPLE_LINES if "citiz" in line["payload"]],
    ids=lambda line: line["name"],
)
def test_qube_payload_keeps_no_personal_data(line: dict[str, Any]) -> None:
    parsed = parse_payload(line["topic"], wire(line["payload"]), RECEIVED, RULE)
    reported = json.dumps(parsed.payload, ensure_ascii=False)
    for key in ("citiz", "nameTH", "nameEN", "brith", "gender"):
        assert parsed.payload[key] == "[redacted]"
    # Gender ("1") is too short to search for; the others must appear nowhere.
    for key in ("citiz", "nameTH", "nameEN", "brith"):
        assert line["payload"][key] not in reported
    # What is not personal survives redaction untouched.
    assert parsed.payload["data"] == line["payload"]["data"]
