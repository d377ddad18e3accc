"""Alert records: which observations raise one, their CloudEvent, and the flow's `alerts` output."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.mqtt_source import MqttMessage
from flows.alerts import alert_event, alert_kind, alert_records
from flows.commands.seed import write_roster
from flows.model import Delivery, Envelope, Step, StepOutcome, StepStatus
from flows.pipeline import build_flow
from flows.settings import Settings
from flows.simulator.device_roster import roster
from flows.simulator.payload_factory import payload_stream
from sinks.mongo_database import open_database

NOW = datetime(2026, 11, 26, 10, 30, tzinfo=UTC)


def _observation(index: int, severity: str, flags: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "_id": f"m1:{index}",
        "patient_id": "P1",
        "hospital_id": "H1",
        "kind": "blood_pressure",
        "device_type": "AVA4",
        "device_id": "08F9E0D1F7B4",
        "message_id": "m1",
        "measured_at": NOW,
        "received_at": NOW,
        "values": {"systolic": 190, "diastolic": 100},
        "flags": flags,
        "severity": severity,
        "alert": severity in {"high", "critical"},
    }


CRISIS = {"code": "bp_hypertensive_crisis", "severity": "critical", "message": "Crisis"}
STAGE_1 = {"code": "bp_stage_1", "severity": "medium", "message": "Stage 1"}


def _envelope(observations: list[dict[str, Any]], stored: bool = True) -> Envelope:
    delivery = Delivery("dusun_pub", b"{}", NOW, "m1")
    steps = list(Step) if stored else list(Step)[:4]
    outcomes = [StepOutcome(s, StepStatus.SUCCESS, NOW) for s in steps]
    if not stored:
        outcomes.append(StepOutcome(Step.STORED, StepStatus.ERROR, NOW, error_code="store_failed"))
    return Envelope(
        delivery, "AVA4", "08F9E0D1F7B4", {}, outcomes, patient_id="P1", observations=observations
    )


def test_a_hypertensive_crisis_is_one_alert_keyed_by_patient_with_the_observation_id() -> None:
    envelope = _envelope(
        [_observation(0, "critical", [CRISIS, STAGE_1]), _observation(1, "medium", [STAGE_1])]
    )

    [(key, (same_key, value))] = alert_records(envelope)

    event = json.loads(value)
    assert key == same_key == "P1"
    assert event["id"] == "m1:0"
    assert event["type"] == "vitalflow.alert.bp_hypertensive_crisis"
    assert event["specversion"] == "1.0"
    assert event["subject"] == "patient/P1"
    assert event["time"] == "2026-11-26T10:30:00.000Z"
    assert event["data"]["observation_id"] == "m1:0"
    assert event["data"]["severity"] == "critical"
    assert event["data"]["emergency"] is False
    assert event["data"]["values"] == {"systolic": 190, "diastolic": 100}


def test_the_same_observation_always_gives_the_same_alert() -> None:
    first = alert_records(_envelope([_observation(0, "critical", [CRISIS])]))
    again = alert_records(replace(_envelope([_observation(0, "critical", [CRISIS])])))
    assert first == again


def test_nothing_is_alerted_before_the_observation_is_stored() -> None:
    assert alert_records(_envelope([_observation(0, "critical", [CRISIS])], stored=False)) == []


def test_an_emergency_outranks_a_critical_reading_in_the_kind() -> None:
    sos = {"code": "sos", "severity": "critical", "message": "SOS"}
    assert alert_kind([CRISIS, sos]) == "sos"
    assert alert_kind([STAGE_1, {"code": "spo2_low_severe", "severity": "high"}]) == (
        "spo2_low_severe"
    )
    event = alert_event({**_observation(0, "critical", [sos]), "kind": "emergency"})
    assert event["type"] == "vitalflow.alert.sos"
    assert event["data"]["emergency"] is True


@pytest.fixture
def database(tmp_path: Path) -> Any:
    db = open_database(f"montydb://{tmp_path / 'store'}", "vf")
    yield db
    db.client.close()


def _run(database: Any, deliveries: list[MqttMessage]) -> list[tuple[str, dict[str, Any]]]:
    alerts: list[tuple[str, tuple[str, bytes]]] = []
    flow = build_flow(
        Settings(recovery_dir=None),
        source=TestingSource(deliveries),
        steps_sink=TestingSink([]),
        dlq_sink=TestingSink([]),
        alerts_sink=TestingSink(alerts),
        database=lambda: database,
    )
    run_main(flow)
    return [(key, json.loads(value)) for key, (_k, value) in alerts]


def test_the_flow_alerts_once_per_stored_alerting_observation_and_again_with_the_same_ids(
    database: Any,
) -> None:
    world = roster(seed=11, patients=5)
    write_roster(database, world)
    subscribed = Settings().topics
    stream = payload_stream(world, random.Random(5), duplicate_fraction=0.1, sos_fraction=0.1)
    wanted = (m for m in stream if any(mqtt.topic_matches_sub(t, m.topic) for t in subscribed))
    deliveries = [MqttMessage(m.topic, m.payload, NOW) for m in itertools.islice(wanted, 150)]

    alerts = _run(database, deliveries)

    alerting = {d["_id"]: d for d in database.observations.find({"alert": True})}
    assert alerting, "the traffic raised no alert"
    # A copy the de-dup step let through (see flows.deduplicate) repeats its alert's id.
    assert {event["id"] for _key, event in alerts} == set(alerting)
    assert any(event["type"] == "vitalflow.alert.sos" for _k, event in alerts)
    for key, event in alerts:
        assert key == alerting[event["id"]]["patient_id"] == event["data"]["patient_id"]
    # A fresh flow (no de-dup state) delivering everything again: the same alert ids.
    again = _run(database, deliveries)
    assert {e["id"] for _k, e in again} == set(alerting)
