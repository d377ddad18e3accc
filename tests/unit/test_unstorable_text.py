"""Texts and numbers JSON allows but Unicode, BSON or strict JSON readers refuse.

Found by an adversarial probe of the running flow: an escaped lone surrogate in a stored text
(a glucose reading's meal marker, a thermometer's mode, a watch's Wi-Fi SSID) made the
store's `insert_many` raise UnicodeEncodeError and stopped the flow on every redelivery; a
payload with NaN and a 21-digit integer gave step events with a bare `NaN`; a 5,000-digit
number in a watch's Wi-Fi text failed the whole location reading.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import bson
import pytest
from test_storable_fuzz import staged

from flows.dead_letters import dead_letters
from flows.devices.parse_payload import decode_payload
from flows.model import Envelope
from flows.step_events import step_events

RECEIVED = datetime(2025, 11, 26, 9, 40, tzinfo=UTC)
NOW = 1764150000  # 2025-11-26T09:40:00Z

GLUCOSE_MARKER = (
    "dusun_pub",
    b'{"from": "BLE", "to": "CLOUD", "time": 1764150000, "mac": "08:F9:E0:D1:F7:B4", '
    b'"type": "reportAttribute", "data": {"attribute": "Contour_Elite", '
    b'"mac": "08:F9:E0:D1:F7:B4", "value": {"device_list": [{"scan_time": 1764150000, '
    b'"ble_addr": "806fb0750c88", "blood_glucose": "108", "marker": "After \\ud800 Meal"}]}}}',
)
THERMOMETER_MODE = (
    "CM4_BLE_GW_TX",
    b'{"from": "PI", "to": "CLOUD", "time": 1764150000, "mac": "e4:5f:01:ed:82:59", '
    b'"type": "reportAttribute", "data": {"attribute": "TEMO_Jumper", '
    b'"ble_mac": "FF:23:01:28:10:00", "value": {"Temp": 36.5, "mode": "\\udc80"}}}',
)
WIFI_SSID = (
    "iMEDE_watch/location",
    b'{"IMEI": "865067123456789", "location": {"GPS": {"latitude": 13.691643, '
    b'"longitude": 100.70656, "speed": 0.0, "header": 0.0}, '
    b"\"WiFi\": \"[{'SSID':'\\udfff','MAC':'aa-bb-cc-dd-ee-ff','RSSI':'87'}]\"}, "
    b'"time": "26/11/2025 16:40:00"}',
)


def through_the_stages(topic: str, payload: bytes) -> Envelope:
    return staged(topic, payload, RECEIVED)


def test_a_lone_surrogate_escape_is_read_as_the_replacement_character() -> None:
    decoded = decode_payload(
        b'{"a": "x\\ud800y", "\\uDC80k": ["\\ud83d\\ude00", "\\\\ud800"], "n": 1}'
    )
    # A lone one, in a value or a key, becomes U+FFFD; a pair stays the character it
    # encodes; an escaped backslash followed by "ud800" is plain text.
    assert decoded == {"a": "x\ufffdy", "\ufffdk": ["\U0001f600", "\\ud800"], "n": 1}


@pytest.mark.parametrize(
    "message", [GLUCOSE_MARKER, THERMOMETER_MODE, WIFI_SSID], ids=["marker", "mode", "ssid"]
)
def test_a_reading_with_a_lone_surrogate_in_a_text_is_stored_with_u_fffd(
    message: tuple[str, bytes],
) -> None:
    envelope = through_the_stages(*message)
    assert envelope.failed is None
    assert envelope.observations
    encoded = b"".join(bson.encode(doc) for doc in envelope.observations)
    assert "\ufffd".encode() in encoded
    for _key, (_, value) in step_events(envelope):
        json.loads(value)


def test_events_of_a_payload_with_nan_and_a_huge_integer_are_strict_json() -> None:
    payload = b'{"IMEI":"865067123456789","battery":NaN,"step":100000000000000000000,"x":1e400}'
    envelope = through_the_stages("iMEDE_watch/hb", payload)
    assert envelope.failed is not None and envelope.failed.error_code == "invalid_json"
    records = step_events(envelope) + dead_letters(envelope)
    assert len(records) == 3  # received, parsed (error), and its dead letter

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in an event")

    events = [json.loads(value, parse_constant=refuse) for _key, (_, value) in records[:2]]
    assert events[0]["data"]["payload"]["battery"] is None
    assert events[0]["data"]["payload"]["step"] == 100000000000000000000
    assert events[0]["data"]["payload"]["x"] is None
    json.loads(records[2][1][1], parse_constant=refuse)


def test_a_wifi_text_with_a_number_too_long_to_read_leaves_the_location_stored() -> None:
    wifi = "[" + "9" * 5000 + "]"
    payload = json.dumps(
        {
            "IMEI": "865067123456789",
            "location": {"GPS": {"latitude": 13.691643, "longitude": 100.70656}, "WiFi": wifi},
            "time": "26/11/2025 16:40:00",
        }
    ).encode()
    envelope = through_the_stages("iMEDE_watch/location", payload)
    assert envelope.failed is None
    assert [doc["kind"] for doc in envelope.observations] == ["location"]
