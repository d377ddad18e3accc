"""The flow's metrics and liveness, scraped from a running `vitalflow run` (`--metrics-port`).

A few readings, a copy, a malformed payload and an unknown device go through the real flow;
its /metrics must count them by step, status and device type, the dead letter by code, the
de-dup state and the MQTT source's deliveries and un-acked messages; /healthz must say alive
with its partition polled a moment ago.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

from pipeline_harness import (
    FlowUnderTest,
    bp_message,
    free_port,
    publish,
    read_topic,
    register_bp_patient,
    terminal_count,
    wait_for,
)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _value(metrics: str, name: str, **labels: str) -> float:
    for line in metrics.splitlines():
        if not line.startswith(name):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if line.split("{")[0].split(" ")[0] == name and labels.items() <= found.items():
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_what_the_flow_did_and_healthz_says_alive(flow: FlowUnderTest) -> None:
    register_bp_patient(flow.db, "metrics-patient")
    port = free_port()
    flow.extra_env["VITALFLOW_METRICS_PORT"] = str(port)
    readings = [bp_message(n) for n in range(5)]
    unknown = (
        "dusun_pub",
        bp_message(99)[1].replace(b"d616f9641622", b"aaaaaaaaaaaa"),
    )
    batch = [*readings, readings[0], ("dusun_pub", b"{not json"), unknown]
    flow.prepare_session()
    flow.start()
    wait_for(lambda: " connected to " in flow.logs(), 60, flow, "the MQTT partition")
    publish(flow.mqtt_url, batch)
    wait_for(
        lambda: terminal_count(read_topic(flow.kafka_bootstrap, flow.steps_topic)) >= len(batch),
        60,
        flow,
        "every chain to end",
    )
    time.sleep(1.0)

    status, metrics = _get(port, "/metrics")
    assert status == 200
    stored = _value(
        metrics,
        "vitalflow_step_outcomes_total",
        step="5_medical_stored",
        status="success",
        device_type="AVA4",
    )
    duplicates = _value(
        metrics, "vitalflow_step_outcomes_total", step="2_payload_parsed", status="skipped"
    )
    received = _value(metrics, "vitalflow_mqtt_received_total", partition="mqtt-0")
    letters = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("vitalflow_dead_letters_total{")
    )
    print(
        f"\nflow metrics: stored {stored}, duplicates {duplicates}, received {received}, "
        f"dead letters {letters}, de-dup entries {_value(metrics, 'vitalflow_dedup_entries')}"
    )
    # Other programs may publish to the device topics too: at least ours are counted.
    assert stored >= len(readings)
    assert duplicates >= 1
    assert received >= len(batch)
    assert letters >= 2
    assert _value(metrics, "vitalflow_dedup_entries") >= len(readings)
    assert _value(metrics, "vitalflow_dedup_devices") >= 1
    assert "vitalflow_mqtt_unacked_messages{" in metrics
    assert "vitalflow_retries_total" in metrics or "vitalflow_retries" in metrics

    status, body = _get(port, "/healthz")
    health = json.loads(body)
    assert status == 200 and health["alive"] is True, health
    assert health["partitions"]["mqtt-0"]["connected"] is True
    assert health["partitions"]["mqtt-0"]["polled_seconds_ago"] < 5
    assert _get(port, "/nothing")[0] == 404
