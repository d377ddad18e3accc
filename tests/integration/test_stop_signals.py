"""Ctrl-C and SIGTERM stop `vitalflow run` cleanly, mid-stream, and nothing is lost.

Bytewax 0.21 left alone answers SIGINT with a Rust panic, a long backtrace and exit 1, and
SIGTERM with a silent death. The flow's source now ends on either signal: the process says
so, exits 0 within seconds, and whatever it had received but not acked comes back from the
broker on the next start.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import pytest
from pipeline_harness import FlowUnderTest, bp_message, publish, register_bp_patient, wait_for

MESSAGES = 500
RATE = 100.0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_mid_stream_exits_0_without_a_backtrace_and_loses_nothing(
    flow: FlowUnderTest, signum: signal.Signals
) -> None:
    db = flow.db
    register_bp_patient(db, "signal-patient")
    flow.prepare_session()
    flow.start()
    # Publishing starts once the flow is up, so the signal comes mid-stream even on a slow start.
    wait_for(lambda: "connected to" in flow.logs(), 60, flow, "the flow to connect")
    publisher = threading.Thread(
        target=publish, args=(flow.mqtt_url, [bp_message(n) for n in range(MESSAGES)], RATE)
    )
    publisher.start()
    wait_for(lambda: db.observations.count_documents({}) >= 60, 60, flow, "storing to begin")

    assert flow.process is not None
    flow.process.send_signal(signum)
    try:
        status = flow.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 15 s after {signum.name}:\n{flow.logs()}")
    logs = flow.logs()
    assert status == 0, logs
    assert f"{signum.name} received, stopping" in logs
    assert f"stopped after {signum.name}" in logs
    for sign_of_a_crash in ("panicked", "backtrace", "Traceback"):
        assert sign_of_a_crash not in logs, logs
    stored_at_stop = db.observations.count_documents({})

    publisher.join(timeout=60)
    flow.start()
    wait_for(
        lambda: db.observations.count_documents({}) >= 2 * MESSAGES,
        120,
        flow,
        f"all {MESSAGES} messages stored after the restart",
    )
    assert len({d["message_id"] for d in db.observations.find({}, {"message_id": 1})}) == MESSAGES
    assert db.observations.count_documents({}) == 2 * MESSAGES
    assert stored_at_stop < 2 * MESSAGES, "the signal came too late to test anything"


def test_a_flow_stuck_on_an_absent_store_exits_at_the_end_of_the_grace_or_on_a_second_signal(
    flow: FlowUnderTest,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        flow.mongo_url = f"mongodb://127.0.0.1:{probe.getsockname()[1]}"
    flow.prepare_session()
    flow.start()
    publish(flow.mqtt_url, [bp_message(0)])
    # The worker now waits out the store in the patient lookup, retrying.
    wait_for(lambda: "lookup on mongodb" in flow.logs(), 60, flow, "the lookup to wait")
    assert flow.process is not None
    started = time.monotonic()
    flow.process.send_signal(signal.SIGTERM)
    assert flow.process.wait(timeout=20) == 128 + signal.SIGTERM
    assert 9 < time.monotonic() - started < 15
    assert "not stopped 10 s after SIGTERM" in flow.logs()
    assert "panicked" not in flow.logs()

    flow.start()
    publish(flow.mqtt_url, [bp_message(1)])
    wait_for(
        lambda: "lookup on mongodb" in flow.log_files[-1].read_text(), 60, flow, "the lookup again"
    )
    started = time.monotonic()
    flow.process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    flow.process.send_signal(signal.SIGINT)
    assert flow.process.wait(timeout=5) == 128 + signal.SIGINT
    assert time.monotonic() - started < 3
    assert "SIGINT again, exiting now" in flow.logs()
