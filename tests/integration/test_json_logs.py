"""`vitalflow --log-format json run` and `api` against real services: every line is JSON.

A dead letter's line carries the message id and step a log shipper can join on; uvicorn's own
lines (start-up, access log) come out as JSON too, not in uvicorn's format.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pipeline_harness import FlowUnderTest, publish, wait_for

from flows.model import fingerprint
from flows.parent_death import die_with_parent


def _json_lines(text: str) -> list[dict[str, str]]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    return lines


def test_a_json_run_logs_a_dead_letter_with_its_message_id_and_step(flow: FlowUnderTest) -> None:
    flow.extra_env["VITALFLOW_LOG_FORMAT"] = "json"
    flow.prepare_session()
    flow.start()
    payload = b'{"not": "a device message of any family"'
    publish(flow.mqtt_url, [("dusun_pub", payload)])
    message_id = fingerprint("dusun_pub", payload)
    wait_for(
        lambda: "dead letter: " in flow.logs() and message_id in flow.logs(),
        60,
        flow,
        "the dead letter's log line",
    )
    assert flow.process is not None
    flow.process.send_signal(signal.SIGTERM)
    assert flow.process.wait(timeout=15) == 0
    lines = _json_lines(flow.log_files[-1].read_text())
    [letter] = [line for line in lines if line.get("message_id") == message_id]
    assert letter["step"] == "2_payload_parsed"
    assert letter["logger"] == "flows.dead_letters"
    assert any("SIGTERM received, stopping" in line["message"] for line in lines)


def test_the_api_logs_json_lines_uvicorns_included(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALFLOW_")}
    env.update(
        VITALFLOW_AUTH="off",
        VITALFLOW_API_PORT=str(port),
        VITALFLOW_EVENT_LOG_URL=f"sqlite:///{tmp_path / 'events.db'}",
    )
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "--log-format", "json", "api"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert api.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        time.sleep(0.5)
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)
    lines = _json_lines(log.read_text())
    loggers = {line["logger"] for line in lines}
    assert "uvicorn.access" in loggers, loggers
    assert "uvicorn.error" in loggers, loggers
