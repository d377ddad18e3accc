"""The flow survives a broker restart, and several partitions share the load.

The broker-restart test runs a Mosquitto of its own (the same Debian binary and limits as
`deploy/local`, on a free port, with persistence) so that restarting it disturbs no other test.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_harness import (
    FlowUnderTest,
    bp_message,
    publish,
    read_topic,
    register_bp_patient,
    wait_for,
)

from flows.parent_death import die_with_parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateMosquitto:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nmax_inflight_messages 10000\n"
            "max_queued_messages 1000000\n"
            # Run as ourselves: as root, Mosquitto would switch to a user that cannot
            # write its persistence file into our temporary directory.
            f"user {getpass.getuser()}\n"
        )
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=(self.workdir / "mosquitto.log").open("ab"),
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise AssertionError("private mosquitto did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # saves its persistence file
            self.process.wait(timeout=10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    mosquitto = PrivateMosquitto(tmp_path)
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


def make_flow(services, unique_id: str, tmp_path: Path, mqtt_url: str) -> FlowUnderTest:  # type: ignore[no-untyped-def]
    flow = FlowUnderTest(
        mqtt_url=mqtt_url,
        mongo_url=services.mongo_url,
        kafka_bootstrap=services.kafka_bootstrap,
        uid=unique_id,
        workdir=tmp_path,
    )
    db = flow.db
    register_bp_patient(db, "restart-patient")
    return flow


def test_flow_reconnects_after_a_broker_restart_and_loses_nothing(
    services, unique_id: str, tmp_path: Path, broker: PrivateMosquitto
) -> None:  # type: ignore[no-untyped-def]
    flow = make_flow(services, unique_id, tmp_path, broker.url)
    try:
        flow.prepare_session()
        flow.start()
        publish(broker.url, [bp_message(n) for n in range(50)])
        wait_for(lambda: flow.db.observations.count_documents({}) >= 100, 60, flow, "first 50")

        broker.stop()
        time.sleep(2)
        broker.start()
        publish(broker.url, [bp_message(n) for n in range(50, 100)])
        wait_for(lambda: flow.db.observations.count_documents({}) >= 200, 90, flow, "all 100")
        assert flow.db.observations.count_documents({}) == 200
        flow.assert_running()
    finally:
        flow.kill()


def test_two_partitions_share_the_topics_and_store_everything_once(
    services, unique_id: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    flow = make_flow(services, unique_id, tmp_path, services.mqtt_url)
    flow.partitions = 2
    try:
        flow.start()
        # Shared subscriptions hold nothing for a group before it subscribes: wait until both
        # partitions are connected (they subscribe on connect), plus a moment for the SUBACK.
        wait_for(lambda: flow.logs().count(" connected to ") >= 2, 60, flow, "both partitions")
        time.sleep(1)
        publish(services.mqtt_url, [bp_message(n) for n in range(200)])
        wait_for(lambda: flow.db.observations.count_documents({}) >= 400, 90, flow, "all 200")
        time.sleep(1)
        assert flow.db.observations.count_documents({}) == 400
        events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
        received = [e for e in events if e["data"]["step"] == "1_mqtt_received"]
        assert len(received) == 200
    finally:
        flow.stop()
