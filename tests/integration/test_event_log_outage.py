"""Kafka goes away mid-stream and comes back: the flow waits, then every chain arrives once.

Stops the shared local Kafka (deploy/local/up brings it back, also if the test fails).
While Kafka is away the flow may store readings but cannot make their events durable, so it
acks nothing and does not move on; afterwards each message has its full chain, with no error
and nothing stored twice.
"""

from __future__ import annotations

import os
import signal
import socket
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


def full_log(flow: FlowUnderTest) -> str:
    return "\n".join(p.read_text(errors="replace") for p in flow.log_files)


def waiting_for_kafka(flow: FlowUnderTest) -> bool:
    return f"Kafka at {flow.kafka_bootstrap}" in full_log(flow) and "the flow waits" in full_log(
        flow
    )


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
    # The flow stores, tries to write events, waits and retries meanwhile, and says so.
    wait_for(lambda: waiting_for_kafka(flow), 20, flow, "a warning that Kafka is away")
    flow.assert_running()
    restore_services()
    back = time.monotonic()

    wait_for(lambda: chains_done(flow, 60), 120, flow, "all 60 chains")
    # kafka-python's default reconnect backoff (up to 30 s) once left the flow idle for half
    # a minute after Kafka was back.
    resumed_after = time.monotonic() - back
    print(f"resumed {resumed_after:.1f} s after Kafka was back")
    assert resumed_after < 15
    flow.assert_running()
    assert db.observations.count_documents({}) == 120
    events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
    assert [e for e in events if e["data"]["status"] != "success"] == []
    # Re-sent events keep their ids: a consumer dropping repeats by id sees each step once.
    ids = {e["id"] for e in events}
    assert len(ids) == 60 * 5
    assert read_topic(flow.kafka_bootstrap, flow.dlq_topic) == []


def test_kafka_unreachable_at_start_is_reported_within_seconds(flow: FlowUnderTest) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{probe.getsockname()[1]}"
    flow.kafka_bootstrap = nowhere
    flow.start()
    started = time.monotonic()
    wait_for(lambda: f"Kafka at {nowhere} unreachable" in flow.logs(), 15, flow, "the warning")
    print(f"warned after {time.monotonic() - started:.1f} s")
