"""The whole dataflow in process: Bytewax's testing source and sink, the embedded store.

Simulated traffic of every family (valid readings, status messages, duplicates, malformed
payloads, unknown devices) goes through `build_flow` exactly as `vitalflow run` builds it,
with only the MQTT source, the event-log sinks and the database swapped; the step chains,
dead letters and stored documents are checked message by message.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.mqtt_source import MqttMessage
from flows.commands.seed import write_roster
from flows.model import fingerprint
from flows.pipeline import build_flow
from flows.settings import Settings
from flows.simulator.device_roster import roster
from flows.simulator.payload_factory import payload_stream
from flows.simulator.simulated_message import SimulatedMessage
from sinks.mongo_database import open_database

STEPS = (
    "1_mqtt_received",
    "2_payload_parsed",
    "3_patient_lookup",
    "4_patient_updated",
    "5_medical_stored",
)


@pytest.fixture
def database(tmp_path: Path) -> Any:
    db = open_database(f"montydb://{tmp_path / 'store'}", "vf")
    yield db
    db.client.close()


def _traffic(count: int) -> list[SimulatedMessage]:
    subscribed = Settings().topics
    stream = payload_stream(
        roster(seed=11, patients=5),
        random.Random(11),
        duplicate_fraction=0.1,
        malformed_fraction=0.1,
        unknown_fraction=0.1,
    )
    messages: list[SimulatedMessage] = []
    for message in stream:
        if any(mqtt.topic_matches_sub(t, message.topic) for t in subscribed):
            messages.append(message)
        if len(messages) == count:
            return messages
    raise AssertionError("unreachable")


def _run(
    database: Any, messages: list[SimulatedMessage], recovery_dir: Path | None = None
) -> tuple[list[dict], list[dict]]:
    now = datetime.now(UTC)
    deliveries = [MqttMessage(m.topic, m.payload, now) for m in messages]
    steps: list[tuple[str, tuple[str, bytes]]] = []
    letters: list[tuple[str, tuple[str, bytes]]] = []
    # With a recovery directory the store is the stateful step writing inline (the graph a
    # resume reads a snapshot into); Bytewax itself runs here without recovery either way.
    flow = build_flow(
        Settings(recovery_dir=recovery_dir),
        source=TestingSource(deliveries),
        steps_sink=TestingSink(steps),
        dlq_sink=TestingSink(letters),
        alerts_sink=TestingSink([]),  # checked in test_alerts.py
        database=lambda: database,
    )
    run_main(flow)
    return (
        [json.loads(value) for _key, (_k, value) in steps],
        [json.loads(value) for _key, (_k, value) in letters],
    )


def _chains(events: list[dict]) -> dict[str, list[list[tuple[str, str]]]]:
    """Return, per message id, each delivery's chain of (step, status), split at step 1."""
    chains: dict[str, list[list[tuple[str, str]]]] = defaultdict(list)
    for event in events:
        data = event["data"]
        if data["step"] == STEPS[0]:
            chains[data["message_id"]].append([])
        chains[data["message_id"]][-1].append((data["step"], data["status"]))
    return chains


@pytest.mark.parametrize("store_step", ["plain", "stateful"])
def test_every_message_ends_its_chain_and_valid_readings_are_stored(
    database: Any, tmp_path: Path, store_step: str
) -> None:
    world = roster(seed=11, patients=5)
    write_roster(database, world)
    messages = _traffic(120)
    categories = Counter(m.category for m in messages)
    assert {"valid", "duplicate", "malformed", "unknown_device"} <= set(categories)

    recovery_dir = tmp_path / "recovery" if store_step == "stateful" else None
    events, letters = _run(database, messages, recovery_dir)

    chains = _chains(events)
    assert sum(len(c) for c in chains.values()) == len(messages)
    seen: Counter[str] = Counter()
    for message in messages:
        message_id = fingerprint(message.topic, message.payload)
        chain = chains[message_id][seen[message_id]]
        seen[message_id] += 1
        assert [s for s, _ in chain] == list(STEPS[: len(chain)])
        # Every step before the last succeeded: the first error or skip ends a chain.
        assert all(status == "success" for _, status in chain[:-1]), chain
        if message.category in {"valid", "status"} and message.expected_readings:
            assert chain == [(s, "success") for s in STEPS], (message.category, chain)
        elif message.category == "duplicate":
            assert chain[-1] == ("2_payload_parsed", "skipped"), chain
        elif message.category == "malformed":
            assert chain[-1] == ("2_payload_parsed", "error"), chain
        elif message.category == "unknown_device":
            assert chain[-1] == ("3_patient_lookup", "error"), chain

    expected = sum(m.expected_readings for m in messages if m.category != "duplicate")
    assert database.observations.count_documents({}) == expected
    dead = {letter["message_id"] for letter in letters}
    failed = {
        fingerprint(m.topic, m.payload)
        for m in messages
        if m.category in {"malformed", "unknown_device"}
    }
    assert dead == failed


def test_latest_vitals_point_at_the_newest_stored_reading_of_each_kind(database: Any) -> None:
    write_roster(database, roster(seed=11, patients=5))
    _run(database, _traffic(120))

    newest: dict[tuple[str, str], datetime] = {}
    for doc in database.observations.find({}):
        target = (doc["patient_id"], doc["kind"])
        if target not in newest or doc["measured_at"] > newest[target]:
            newest[target] = doc["measured_at"]
    assert newest
    for (patient_id, kind), measured_at in newest.items():
        patient = database.patients.find_one({"_id": patient_id})
        held = patient["last_vitals"][kind]["measured_at"]
        assert held.replace(tzinfo=UTC) == measured_at.replace(tzinfo=UTC), (patient_id, kind)


def test_a_second_run_of_the_same_traffic_stores_nothing_twice(database: Any) -> None:
    write_roster(database, roster(seed=11, patients=5))
    messages = _traffic(60)
    _run(database, messages)
    stored = database.observations.count_documents({})

    # A fresh flow has no de-dup state: deterministic ids keep the store unchanged.
    events, _ = _run(database, messages)

    assert database.observations.count_documents({}) == stored
    assert any(e["data"]["step"] == "5_medical_stored" for e in events)


def test_with_recovery_the_store_is_one_stateful_step_whether_it_overlaps_or_not(
    tmp_path: Path,
) -> None:
    def store_steps(recovery_dir: Path | None, overlap: bool) -> list[str]:
        flow = build_flow(
            Settings(recovery_dir=recovery_dir, store_overlap=overlap),
            source=TestingSource([]),
            steps_sink=TestingSink([]),
            dlq_sink=TestingSink([]),
            alerts_sink=TestingSink([]),
            database=lambda: None,  # never opened: the flow is only built
        )
        return [type(s).__name__ for s in flow.substeps if s.step_id == "vitalflow.store"]

    stateful = ["stateful_batch"]
    # A snapshot taken with the overlap on is read on a resume with it off: same step.
    assert store_steps(tmp_path, overlap=True) == stateful
    assert store_steps(tmp_path, overlap=False) == stateful
    assert store_steps(None, overlap=True) == ["flat_map_batch"]
