"""The whole dataflow against real Mosquitto, Kafka and the MongoDB-wire server.

A mixed batch (every documented kind, the real capture, duplicates, malformed payloads and
unknown devices) goes in over MQTT; the test asserts exactly what must come out: the
observations (none doubled, none missing), the patients' latest vitals, one step chain per
delivery on Kafka with the right statuses, and the dead letters.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from pipeline_harness import (
    FlowUnderTest,
    chains,
    publish,
    read_topic,
    terminal_count,
    wait_for,
    wait_for_records,
)

from flows.device_clock import ClockRule
from flows.devices.parse_payload import parse_payload
from flows.model import fingerprint
from flows.settings import Settings

PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"


def load_samples() -> list[tuple[str, bytes]]:
    messages = []
    for name in ("examples.jsonl", "capture-2025-07-13.jsonl"):
        for line in (PAYLOADS / name).read_text().splitlines():
            sample = json.loads(line)
            messages.append((sample["topic"], json.dumps(sample["payload"]).encode()))
    return messages


def unknown_device_messages() -> list[tuple[str, bytes]]:
    bp = {
        "from": "BLE",
        "to": "CLOUD",
        "time": 1836942771,
        "mac": "AA:BB:CC:00:00:01",
        "type": "reportAttribute",
        "device": "WBP BIOLIGHT",
        "data": {
            "attribute": "BP_BIOLIGTH",
            "mac": "AA:BB:CC:00:00:01",
            "value": {
                "device_list": [
                    {
                        "scan_time": 1836942771,
                        "ble_addr": "aabbcc000002",
                        "bp_high": 150,
                        "bp_low": 99,
                        "PR": 80,
                    }
                ]
            },
        },
    }
    hb = {
        "IMEI": "869999999999999",
        "signalGSM": 80,
        "battery": 50,
        "satellites": 1,
        "workingMode": 2,
        "timeStamps": "16/06/2025 12:30:45",
        "step": 10,
    }
    return [("dusun_pub", json.dumps(bp).encode()), ("iMEDE_watch/hb", json.dumps(hb).encode())]


def subscribed(topic: str) -> bool:
    return any(mqtt.topic_matches_sub(s, topic) for s in Settings().topics)


MALFORMED = [
    ("dusun_pub", b"{not json"),
    ("iMEDE_watch/VitalSign", b"\xff\xfe\x00\x01"),
    ("CM4_BLE_GW_TX", b""),
    (
        "dusun_pub",
        json.dumps(
            {
                "type": "reportAttribute",
                "mac": "08:F9:E0:D1:F7:B4",
                "data": {
                    "attribute": "BP_BIOLIGTH",
                    "value": {
                        "device_list": [
                            {"ble_addr": "d616f9641622", "bp_high": "abc", "bp_low": 95}
                        ]
                    },
                },
            }
        ).encode(),
    ),
]


def test_mixed_batch_is_stored_exactly_once_with_one_step_chain_per_delivery(
    flow: FlowUnderTest,
) -> None:
    clock = ClockRule.from_settings(Settings())
    now = datetime.now(UTC)
    samples = load_samples()
    # Register every device that carries readings, spread over three patients in two hospitals.
    expected_ids: set[str] = set()
    registry: dict[str, str] = {}
    for index, (topic, payload) in enumerate(samples):
        parsed = parse_payload(topic, payload, now, clock)
        if parsed.readings and not parsed.skip_reason:
            registry.setdefault(parsed.lookup_keys[0], f"patient-{index % 3}")
            expected_ids |= {
                f"{fingerprint(topic, payload)}:{i}" for i in range(len(parsed.readings))
            }
    db = flow.db
    db.patients.insert_many(
        [
            {"_id": f"patient-{i}", "hospital_id": "hospital-a" if i < 2 else "hospital-b"}
            for i in range(3)
        ]
    )
    db.devices.insert_many(
        [{"_id": key, "patient_id": patient} for key, patient in registry.items()]
    )

    duplicates = [samples[2], samples[3], samples[11]]
    unknown = unknown_device_messages()
    published = samples + duplicates + MALFORMED + unknown
    # Cloud commands on `dusun_sub` are published too but not subscribed to by default.
    deliveries = [m for m in published if subscribed(m[0])]
    assert len(deliveries) < len(published)

    flow.prepare_session()
    publish(flow.mqtt_url, published)
    flow.start()

    def all_chains_ended() -> list[dict]:
        events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
        return events if terminal_count(events) >= len(deliveries) else []

    events = wait_for(all_chains_ended, 90, flow, "a terminal step event for every delivery")

    # Observations: exactly the expected set, none doubled, none missing.
    stored = list(
        db.observations.find({}, {"_id": 1, "patient_id": 1, "kind": 1, "measured_at": 1})
    )
    assert len(stored) == len({d["_id"] for d in stored})
    assert {d["_id"] for d in stored} == expected_ids
    assert all(d["measured_at"] <= datetime.now(UTC) for d in stored)

    # Latest vitals: each kind points at that patient's newest observation of the kind.
    for patient in db.patients.find():
        mine = [d for d in stored if d["patient_id"] == patient["_id"]]
        for kind in {d["kind"] for d in mine}:
            latest = patient["last_vitals"][kind]
            assert latest["measured_at"] == max(d["measured_at"] for d in mine if d["kind"] == kind)

    # One chain per delivery; steps in order; the chain ends at the first error or skip.
    all_chains = dict(chains(events))
    assert len(all_chains) == len(deliveries)
    outcomes: Counter[tuple[str, str, str | None]] = Counter()
    for chain in all_chains.values():
        steps = [e["data"]["step"] for e in chain]
        assert steps == sorted(steps) and steps[0] == "1_mqtt_received"
        assert len({e["id"] for e in chain}) == len(chain)
        assert all(e["data"]["status"] == "success" for e in chain[:-1])
        last = chain[-1]["data"]
        code = (last["error"] or {}).get("code") if last["status"] == "error" else last["reason"]
        outcomes[(last["step"], last["status"], code)] += 1
    assert outcomes[("2_payload_parsed", "skipped", "duplicate")] == len(duplicates)
    assert sum(
        n
        for (step, status, _), n in outcomes.items()
        if step == "2_payload_parsed" and status == "error"
    ) == len(MALFORMED)
    assert outcomes[("3_patient_lookup", "error", "unknown_device")] == len(unknown)
    stored_chains = outcomes[("5_medical_stored", "success", None)]
    assert stored_chains == len({i.split(":")[0] for i in expected_ids})

    # Dead letters: the malformed and the unknown, with their raw payloads.
    letters = wait_for_records(flow, flow.dlq_topic, len(MALFORMED) + len(unknown))
    assert len(letters) == len(MALFORMED) + len(unknown)
    assert Counter(r["reason"]["step"] for r in letters) == {
        "2_payload_parsed": len(MALFORMED),
        "3_patient_lookup": len(unknown),
    }

    # Personal data from the Qube card reader appears in no event and no log line.
    text = json.dumps(events, ensure_ascii=False) + flow.logs()
    for secret in ("3570300400000", "0000000000124", "DEV##HV01", "25220713"):
        assert secret not in text
