"""Hostile traffic through the running flow: it keeps going, and every message is accounted for.

Hundreds of damaged, oversized, deeply nested, mistyped and odd-topic messages built from the
real samples (every device registered, so damage is the only reason to fail), then ordinary
readings: the flow must still be running, every delivery's chain must have ended, every error
must have its dead letter, and the readings after the storm must be stored.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from pipeline_harness import (
    FlowUnderTest,
    bp_message,
    publish,
    read_records,
    read_topic,
    register_bp_patient,
    terminal_count,
    wait_for,
    wait_for_records,
)
from test_pipeline_end_to_end import load_samples

from flows.device_clock import ClockRule
from flows.devices.parse_payload import parse_payload
from flows.model import ParseError, fingerprint
from flows.settings import Settings

HOSTILE_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    2**70,
    -(2**70),
    1e308,
    -1e-308,
    "",
    " ",
    "\u0000",
    "🙂" * 2000,
    "1e400",
    "NaN",
    "99:99:99:99:99:99",
    "x" * 70_000,
    [],
    {},
    {"$where": "sleep(1000)"},
    {"a.b": {"$gt": ""}},
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
]
ODD_TOPICS = ["iMEDE_watch/" + "\u202e" * 10, "iMEDE_watch/" + "x" * 5000, "iMEDE_watch//"]


def leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(leaves(value, (*path, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(leaves(value, (*path, index)))
    return found


def hostile_messages(samples: list[tuple[str, bytes]], count: int) -> list[tuple[str, bytes]]:
    rng = random.Random(2026)
    out: list[tuple[str, bytes]] = []
    while len(out) < count:
        topic, raw = rng.choice(samples)
        style = rng.randrange(6)
        if style == 0:  # a leaf replaced by something hostile
            payload = copy.deepcopy(json.loads(raw))
            path = rng.choice(leaves(payload)[1:] or [()])
            if path:
                parent = payload
                for step in path[:-1]:
                    parent = parent[step]
                parent[path[-1]] = rng.choice(HOSTILE_VALUES)
            body = json.dumps(payload).encode()
        elif style == 1:  # cut short
            body = raw[: rng.randrange(len(raw))]
        elif style == 2:  # bytes flipped
            flipped = bytearray(raw)
            for _ in range(rng.randrange(1, 6)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            body = bytes(flipped)
        elif style == 3:  # far too large, or nested far too deep
            body = rng.choice([raw + b" " * 300_000, b'{"a":' * 5000 + b"1" + b"}" * 5000])
        elif style == 4:  # an odd topic in the watch tree
            topic, body = rng.choice(ODD_TOPICS), raw
        else:  # random bytes
            body = rng.randbytes(rng.randrange(0, 400))
        out.append((topic, body))
    return out


def test_hostile_traffic_never_stops_the_flow_and_nothing_goes_unaccounted(
    flow: FlowUnderTest,
) -> None:
    # Cloud commands (`dusun_sub`) are in the samples but not subscribed to by default.
    samples = [
        (topic, raw)
        for topic, raw in load_samples()
        if any(mqtt.topic_matches_sub(t, topic) for t in Settings().topics)
    ]
    clock = ClockRule.from_settings(Settings())
    now = datetime.now(UTC)
    keys = set()
    for topic, raw in samples:
        with contextlib.suppress(ParseError):
            keys.update(parse_payload(topic, raw, now, clock).lookup_keys)
    db = flow.db
    db.patients.insert_one({"_id": "storm-patient", "hospital_id": "h1"})
    db.devices.insert_many([{"_id": k, "patient_id": "storm-patient"} for k in sorted(keys)])
    db.devices.update_one(
        {"_id": "ble:D616F9641622"}, {"$set": {"patient_id": "storm-patient"}}, upsert=True
    )
    storm = hostile_messages(samples, 400)
    after = [bp_message(n) for n in range(10)]
    flow.prepare_session()
    flow.start()
    publish(flow.mqtt_url, storm)
    publish(flow.mqtt_url, after)
    total = len(storm) + len(after)

    seen = [0]

    def ended() -> bool:
        seen[0] = terminal_count(read_topic(flow.kafka_bootstrap, flow.steps_topic))
        return seen[0] >= total

    try:
        wait_for(ended, 180, flow, f"every chain of {total} deliveries to end")
    finally:
        print(f"chains ended: {seen[0]} of {total}")
    flow.assert_running()

    events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
    received = [e for e in events if e["data"]["step"] == "1_mqtt_received"]
    # At least once: a QoS 1 redelivery (after a reconnect under load) is a delivery too.
    assert len(received) >= total
    assert {e["data"]["message_id"] for e in received} == {
        fingerprint(topic, body) for topic, body in [*storm, *after]
    }
    errors = [e for e in events if e["data"]["status"] == "error"]
    # A message stored but for some of its parts is dead-lettered too (`parts_rejected`).
    rejecting = {
        e["id"].rpartition("/")[0]
        for e in events
        if e["data"]["step"] == "2_payload_parsed" and e["data"]["processed_data"].get("rejected")
    }
    partial = [
        e
        for e in events
        if e["data"]["step"] == "5_medical_stored"
        and e["data"]["status"] == "success"
        and e["id"].rpartition("/")[0] in rejecting
    ]
    letters = wait_for_records(flow, flow.dlq_topic, len(errors) + len(partial))
    assert len(letters) == len(errors) + len(partial) > 100
    assert Counter(e["data"]["message_id"] for e in [*errors, *partial]) == Counter(
        letter["message_id"] for letter in letters
    )
    codes = Counter(e["data"]["error"]["code"] for e in errors)
    assert {"invalid_json", "payload_too_large"} <= set(codes), codes
    # The readings sent after the storm are all there.
    bp_ids = {json.loads(payload)["time"] for _, payload in after}
    stored = {
        doc["device_time"].timestamp()
        for doc in db.observations.find({"kind": "blood_pressure", "device_id": "08F9E0D1F7B4"})
    }
    assert bp_ids <= {int(t) for t in stored}


def test_a_payload_of_nul_bytes_is_dead_lettered_and_the_flow_goes_on(flow: FlowUnderTest) -> None:
    # JSON escapes each NUL as six bytes: its dead letter once outgrew Kafka's 1 MiB limit,
    # the write raised, the flow died before acking and died again on every redelivery.
    nul = ("dusun_pub", b"\x00" * 200_000)
    register_bp_patient(flow.db, "nul-patient")
    flow.prepare_session()
    flow.start()
    publish(flow.mqtt_url, [nul, bp_message(1)])

    nul_id = fingerprint(*nul)

    def events() -> list[dict[str, Any]]:
        return read_topic(flow.kafka_bootstrap, flow.steps_topic)

    wait_for(lambda: terminal_count(events()) >= 2, 90, flow, "both chains to end")
    flow.assert_running()
    errors = [e for e in events() if e["data"]["status"] == "error"]
    assert [(e["data"]["message_id"], e["data"]["step"]) for e in errors] == [
        (nul_id, "2_payload_parsed")
    ]
    [letter] = wait_for_records(flow, flow.dlq_topic, 1)
    assert letter["message_id"] == nul_id and letter["payload_encoding"] == "base64"
    assert base64.b64decode(letter["payload"]) == nul[1]
    assert flow.db.observations.count_documents({"kind": "blood_pressure"}) == 1


def test_texts_and_topics_an_adversarial_probe_found_leave_the_flow_running(
    flow: FlowUnderTest,
) -> None:
    # Each of the first three stopped the flow, and again on every redelivery: a lone
    # surrogate escape in a stored text (the store's BSON encoding raised), and a replay
    # number `isdigit` took but `int` refused. The last two ended with step events that
    # were not JSON (a bare NaN) and a location reading refused for its Wi-Fi text.
    now = int(time.time())
    kati_now = datetime.fromtimestamp(now, UTC).strftime("%d/%m/%Y %H:%M:%S")
    glucose = {
        "time": now,
        "mac": "08:F9:E0:D1:F7:B4",
        "type": "reportAttribute",
        "data": {
            "attribute": "Contour_Elite",
            "mac": "08:F9:E0:D1:F7:B4",
            "value": {
                "device_list": [
                    {
                        "scan_time": now,
                        "ble_addr": "806fb0750c88",
                        "blood_glucose": "108",
                        "marker": "After LONE Meal",
                    }
                ]
            },
        },
    }
    thermometer = {
        "time": now,
        "mac": "e4:5f:01:ed:82:59",
        "type": "reportAttribute",
        "data": {
            "attribute": "TEMO_Jumper",
            "ble_mac": "FF:23:01:28:10:00",
            "value": {"Temp": 36.5, "mode": "LONE"},
        },
    }
    location = {
        "IMEI": "865067123456789",
        "location": {
            "GPS": {"latitude": 13.691643, "longitude": 100.70656},
            "WiFi": "[{'SSID':'LONE','MAC':'aa-bb-cc-dd-ee-ff','RSSI':'87'}]",
        },
        "time": kati_now,
    }
    long_wifi = {**location, "location": {**location["location"], "WiFi": "[" + "9" * 5000 + "]"}}

    def with_lone_surrogate(body: dict[str, Any]) -> bytes:
        return json.dumps(body).encode().replace(b"LONE", b"\\ud800")

    stored_texts = [
        ("dusun_pub", with_lone_surrogate(glucose)),
        ("CM4_BLE_GW_TX", with_lone_surrogate(thermometer)),
        ("iMEDE_watch/location", with_lone_surrogate(location)),
    ]
    others = [
        (f"{flow.replay_prefix}/\u00b2/dusun_pub", bp_message(1)[1]),
        (
            "iMEDE_watch/hb",
            b'{"IMEI":"865067123456789","battery":NaN,"step":100000000000000000000}',
        ),
        ("iMEDE_watch/location", json.dumps(long_wifi).encode()),
    ]
    clock = ClockRule.from_settings(Settings())
    keys = set()
    for topic, raw in stored_texts:  # the watch of `others` is the location's
        keys.update(parse_payload(topic, raw, datetime.now(UTC), clock).lookup_keys)
    flow.db.patients.insert_one({"_id": "probe-patient", "hospital_id": "h1"})
    flow.db.devices.insert_many([{"_id": k, "patient_id": "probe-patient"} for k in sorted(keys)])
    register_bp_patient(flow.db, "probe-bp-patient")
    messages = [*stored_texts, *others, bp_message(2)]
    flow.prepare_session()
    flow.start()
    publish(flow.mqtt_url, messages)

    def events() -> list[dict[str, Any]]:
        return read_topic(flow.kafka_bootstrap, flow.steps_topic)

    wait_for(lambda: terminal_count(events()) >= len(messages), 90, flow, "every chain to end")
    flow.assert_running()
    ends = {
        e["data"]["message_id"]: (e["data"]["step"], e["data"]["status"])
        for e in events()
        if e["data"]["status"] != "success" or e["data"]["step"] == "5_medical_stored"
    }
    stored = ("5_medical_stored", "success")
    assert [ends[fingerprint(*m)] for m in stored_texts] == [stored] * 3
    assert ends[fingerprint(*others[2])] == stored
    assert ends[fingerprint(*messages[-1])] == stored
    assert ends[fingerprint(*others[0])][1] == "error"  # an unknown topic, not a replay
    assert ends[fingerprint(*others[1])] == ("2_payload_parsed", "error")
    texts = [flow.db.observations.find_one({"message_id": fingerprint(*m)}) for m in stored_texts]
    assert all(
        doc is not None and "\ufffd" in json.dumps(doc, default=str, ensure_ascii=False)
        for doc in texts
    )
    # Every event is JSON to a strict reader: no bare NaN or Infinity.
    for record in read_records(flow.kafka_bootstrap, flow.steps_topic):
        json.loads(record.value, parse_constant=_not_json)


def _not_json(constant: str) -> None:
    msg = f"{constant} in a step event"
    raise AssertionError(msg)
