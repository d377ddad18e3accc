"""Alerts through the running flow: a hypertensive crisis is one record on the alerts topic.

Real Mosquitto, Kafka and the MongoDB-wire server; `vitalflow run` as a process. A copy of the
message is a duplicate and alerts nothing; a flow that lost its de-dup state (a new recovery
directory) stores the copy again and re-emits the alert under the same id.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event
from pipeline_harness import (
    FlowUnderTest,
    bp_message,
    publish,
    read_records,
    read_topic,
    register_bp_patient,
    wait_for,
)

from sinks.kafka_writer import CLOUDEVENTS_JSON


def crisis_message(systolic: int, diastolic: int) -> tuple[str, bytes]:
    return bp_message(systolic, systolic=systolic, diastolic=diastolic, pulse=72)


def read_alerts(bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any]]]:
    """Every alert record so far as (key, CloudEvent JSON), checked with the CloudEvents SDK."""
    found = []
    for record in read_records(bootstrap, topic):
        headers = dict(record.headers or [])
        assert headers.get("content-type") == CLOUDEVENTS_JSON, headers
        event = from_kafka_event(KafkaMessage(headers, record.key, record.value))
        value = json.loads(record.value)
        assert event.get_id() == value["id"]
        assert event.get_type() == value["type"]
        found.append((record.key.decode(), value))
    return found


def stored_events(flow: FlowUnderTest) -> int:
    return sum(
        1
        for e in read_topic(flow.kafka_bootstrap, flow.steps_topic)
        if e["data"]["step"] == "5_medical_stored" or e["data"]["status"] != "success"
    )


def test_a_hypertensive_crisis_is_one_alert_whose_id_survives_a_redelivery(
    flow: FlowUnderTest,
) -> None:
    alerts_topic = f"vitalflow.alerts.test-{flow.uid}"
    flow.extra_env["VITALFLOW_ALERTS_TOPIC"] = alerts_topic
    patient = f"p-{flow.uid}"
    register_bp_patient(flow.db, patient)
    flow.prepare_session()
    flow.start()
    crisis = crisis_message(200, 110)
    publish(flow.mqtt_url, [crisis, crisis_message(118, 76)])

    wait_for(lambda: stored_events(flow) >= 2, 90, flow, "both messages stored")
    alerts = wait_for(lambda: read_alerts(flow.kafka_bootstrap, alerts_topic), 30, flow, "alert")
    time.sleep(1.0)  # a second alert, if any, would be there by now
    alerts = read_alerts(flow.kafka_bootstrap, alerts_topic)

    assert len(alerts) == 1, alerts
    key, event = alerts[0]
    [observation] = flow.db.observations.find({"alert": True})
    assert observation["kind"] == "blood_pressure"
    assert key == patient
    assert event["id"] == observation["_id"]
    assert event["type"] == "vitalflow.alert.bp_hypertensive_crisis"
    assert event["data"]["patient_id"] == patient
    assert event["data"]["severity"] == "critical"
    assert event["data"]["values"]["systolic"] == 200
    assert event["data"]["device_id"] == "08F9E0D1F7B4"  # the AVA4 gateway

    # The broker delivers the same bytes again: a duplicate, reported at step 2, no alert.
    publish(flow.mqtt_url, [crisis])
    wait_for(lambda: stored_events(flow) >= 3, 60, flow, "the copy's chain")
    time.sleep(1.0)
    assert len(read_alerts(flow.kafka_bootstrap, alerts_topic)) == 1

    # A flow that lost its de-dup state stores the copy again: the alert keeps its id.
    flow.kill()
    shutil.rmtree(flow.workdir / "recovery")
    flow.start()
    publish(flow.mqtt_url, [crisis])
    again = wait_for(
        lambda: read_alerts(flow.kafka_bootstrap, alerts_topic)[1:],
        90,
        flow,
        "the re-emitted alert",
    )
    assert [e["id"] for _k, e in again] == [event["id"]]
    assert again[0][1]["type"] == event["type"]
