"""Two Bytewax workers, two MQTT partitions: realistic traffic stored once, newest vitals win.

With two workers the source partitions, the de-dup state (keyed by device, exchanged between
workers) and the store all run in parallel: both workers write `last_vitals` of the same
patients at the same moments, which is what the guarded per-patient update must get right.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from pipeline_harness import FlowUnderTest, publish, read_topic, terminal_count, wait_for

from flows.commands.seed import write_roster
from flows.settings import Settings
from flows.simulator.device_roster import roster
from flows.simulator.payload_factory import payload_stream, simulated_clock

MESSAGES = 800


def test_two_workers_store_everything_once_and_keep_the_newest_vitals(
    flow: FlowUnderTest,
) -> None:
    world = roster(seed=11, patients=6)
    stream = payload_stream(
        world,
        random.Random(11),
        clock=simulated_clock(datetime.now(UTC).replace(microsecond=0), 0.05),
        duplicate_fraction=0.1,
    )
    subscribed = Settings().topics
    sent = [
        m
        for m in itertools.islice(stream, MESSAGES)
        if any(mqtt.topic_matches_sub(t, m.topic) for t in subscribed)
    ]
    db = flow.db
    write_roster(db, world)
    flow.partitions = 2
    flow.workers = 2
    flow.start()
    # Shared subscriptions hold nothing for a group before it subscribes.
    wait_for(lambda: flow.logs().count(" connected to ") >= 2, 60, flow, "both partitions")
    time.sleep(1)
    publish(flow.mqtt_url, [(m.topic, m.payload) for m in sent])

    def ended() -> bool:
        return terminal_count(read_topic(flow.kafka_bootstrap, flow.steps_topic)) >= len(sent)

    wait_for(ended, 180, flow, f"every chain of {len(sent)} messages to end")
    time.sleep(1)
    flow.assert_running()

    expected = sum(m.expected_readings for m in sent)
    observations = list(db.observations.find({}, {"patient_id": 1, "kind": 1, "measured_at": 1}))
    assert len(observations) == expected
    events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
    received = Counter(
        e["data"]["message_id"] for e in events if e["id"].endswith("/1_mqtt_received")
    )
    assert sum(received.values()) == len(sent)
    skipped = [e for e in events if e["data"]["status"] == "skipped"]
    assert sum(1 for e in skipped if e["data"].get("reason") == "duplicate") == sum(
        1 for m in sent if m.category == "duplicate"
    )

    newest: dict[tuple[str, str], datetime] = {}
    for doc in observations:
        target = (doc["patient_id"], doc["kind"])
        newest[target] = max(newest.get(target, doc["measured_at"]), doc["measured_at"])
    held: dict[tuple[str, str], Any] = {
        (patient["_id"], kind): vitals["measured_at"]
        for patient in db.patients.find({}, {"last_vitals": 1})
        for kind, vitals in patient.get("last_vitals", {}).items()
    }
    assert held == newest
    assert len({patient for patient, _ in newest}) == 6
