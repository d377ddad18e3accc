"""The full dead-letter loop through the running flow: unknown device, register, replay, stored."""

from __future__ import annotations

import json
import time

from pipeline_harness import FlowUnderTest, publish, read_topic, wait_for

from flows.commands.dlq_replay import replay_dead_letters
from flows.commands.seed import register_device
from flows.settings import Settings

IMEI = "868888000011112"
ALL_STEPS = [
    "1_mqtt_received",
    "2_payload_parsed",
    "3_patient_lookup",
    "4_patient_updated",
    "5_medical_stored",
]


def test_a_dead_letter_for_an_unknown_device_is_stored_once_replayed_after_registration(
    flow: FlowUnderTest,
) -> None:
    hb = {"IMEI": IMEI, "signalGSM": 80, "battery": 60, "timeStamps": "16/06/2025 12:30:45"}
    vitals = {**hb, "heartRate": 77, "spO2": 96}
    message = ("iMEDE_watch/VitalSign", json.dumps(vitals).encode())
    db = flow.db
    db.patients.insert_one({"_id": "replay-patient", "hospital_id": "h1"})
    flow.prepare_session()
    flow.start()

    publish(flow.mqtt_url, [message])
    [letter] = wait_for(
        lambda: read_topic(flow.kafka_bootstrap, flow.dlq_topic), 60, flow, "the dead letter"
    )
    assert letter["reason"]["code"] == "unknown_device"
    assert db.observations.count_documents({}) == 0

    register_device(db, f"imei:{IMEI}", "replay-patient")
    # Past the flow's negative-cache TTL, so the new registration is looked up afresh.
    time.sleep(Settings().lookup_negative_ttl_seconds + 1)
    settings = Settings(
        mqtt_url=flow.mqtt_url,
        kafka_bootstrap=flow.kafka_bootstrap,
        dlq_topic=flow.dlq_topic,
        mqtt_replay_prefix=flow.replay_prefix,
    )
    report = replay_dead_letters(settings, group_id=f"replay-{flow.uid}")
    assert report.replayed == 1

    wait_for(lambda: db.observations.count_documents({}) == 2, 60, flow, "heart rate and SpO2")
    stored = {d["kind"] for d in db.observations.find({"patient_id": "replay-patient"})}
    assert stored == {"heart_rate", "spo2"}
    # The replayed copy has the same message id: its chain ends with step 5, not a duplicate,
    # and its events have ids of their own (delivery 2), so a consumer that drops repeats by
    # id keeps them all.
    assert letter["delivery"] == 1
    events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
    chain = [e for e in events if e["data"]["message_id"] == letter["message_id"]]
    first = [(e["id"], e["data"]["status"]) for e in chain if "/d2/" not in e["id"]]
    second = [(e["id"], e["data"]["status"]) for e in chain if "/d2/" in e["id"]]
    mid = letter["message_id"]
    assert first == [
        (f"{mid}/1_mqtt_received", "success"),
        (f"{mid}/2_payload_parsed", "success"),
        (f"{mid}/3_patient_lookup", "error"),
    ]
    assert second == [(f"{mid}/d2/{step}", "success") for step in ALL_STEPS]
    assert chain[3]["data"]["topic"] == "iMEDE_watch/VitalSign"
