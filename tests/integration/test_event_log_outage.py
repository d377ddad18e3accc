"""Kafka goes away mid-stream and comes back: the flow waits, then every chain arrives once.

Stops the shared local Kafka (deploy/local/up brings it back, also if the test fails).
While Kafka is away the flow may store readings but cannot make their events durable, so it
acks nothing and does not move on; afterwards each message has its full chain, with no error
and nothing stored twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_harness import (
    FlowUnderTest,
    bp_message,
    publish,
    read_topic,
    register_bp_patient,
    wait_for,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KAFKA_PID = REPO / "deploy/local/.run/kafka/pid"


def restore_services() -> None:
    subprocess.run([str(REPO / "deploy/local/up")], check=True, capture_output=True, timeout=300)


@pytest.fixture
def stoppable_kafka(services: Any) -> Iterator[None]:
    assert KAFKA_PID.is_file(), "the local Kafka is not running from deploy/local/up"
    yield
    restore_services()


def stop_kafka() -> None:
    pid = int(KAFKA_PID.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError("Kafka did not stop within 60 s")


def chains_done(flow: FlowUnderTest, count: int) -> bool:
    events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
    done = {e["data"]["message_id"] for e in events if e["data"]["step"] == "5_medical_stored"}
    return len(done) >= count


def test_a_kafka_outage_mid_stream_delays_events_but_loses_none(
    stoppable_kafka: None, flow: FlowUnderTest
) -> None:
    db = flow.db
    register_bp_patient(db, "kafka-outage-patient")
    flow.prepare_session()
    flow.start()
    publish(flow.mqtt_url, [bp_message(n) for n in range(30)])
    wait_for(lambda: chains_done(flow, 30), 60, flow, "the first 30 chains")

    stop_kafka()
    publish(flow.mqtt_url, [bp_message(n) for n in range(30, 60)])
    time.sleep(6)  # the flow stores, tries to write events, waits and retries meanwhile
    flow.assert_running()
    restore_services()

    wait_for(lambda: chains_done(flow, 60), 120, flow, "all 60 chains")
    flow.assert_running()
    assert db.observations.count_documents({}) == 120
    events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
    assert [e for e in events if e["data"]["status"] != "success"] == []
    # Re-sent events keep their ids: a consumer dropping repeats by id sees each step once.
    ids = {e["id"] for e in events}
    assert len(ids) == 60 * 5
    assert read_topic(flow.kafka_bootstrap, flow.dlq_topic) == []
