"""Running the real dataflow (`vitalflow run`) against the real services, for the pipeline tests.

Each test gets its own MongoDB database, Kafka topics, MQTT client id and recovery directory,
so tests can run in any order and twice against the same services. The flow's persistent MQTT
session is created before the flow starts, so nothing published by the test can be missed
while the flow process is still starting.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event
from cloudevents.core.exceptions import CloudEventValidationError
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from pymongo import MongoClient
from pymongo.database import Database

from connectors.mqtt_source import MqttTarget
from flows.parent_death import die_with_parent
from flows.settings import DEFAULT_TOPICS
from sinks.kafka_writer import CLOUDEVENTS_JSON, PLAIN_JSON

TERMINAL = {"error", "skipped"}


@dataclass
class FlowUnderTest:
    """One test's configuration of the flow, and the flow process once started."""

    mqtt_url: str
    mongo_url: str
    kafka_bootstrap: str
    uid: str
    workdir: Path
    epoch_interval: float = 0.5
    partitions: int = 1
    workers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_files: list[Path] = field(default_factory=list)

    @property
    def client_id(self) -> str:
        return f"vf-test-{self.uid}"

    @property
    def db_name(self) -> str:
        return f"vf_test_{self.uid}"

    @property
    def steps_topic(self) -> str:
        return f"vitalflow.steps.test-{self.uid}"

    @property
    def dlq_topic(self) -> str:
        return f"vitalflow.dlq.test-{self.uid}"

    @property
    def replay_prefix(self) -> str:
        return f"vf_test_{self.uid}/replay"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VITALFLOW_")}
        env.update(
            VITALFLOW_MQTT_URL=self.mqtt_url,
            VITALFLOW_MQTT_CLIENT_ID=self.client_id,
            VITALFLOW_MONGO_URL=self.mongo_url,
            VITALFLOW_MONGO_DB=self.db_name,
            VITALFLOW_KAFKA_BOOTSTRAP=self.kafka_bootstrap,
            VITALFLOW_STEPS_TOPIC=self.steps_topic,
            VITALFLOW_DLQ_TOPIC=self.dlq_topic,
            VITALFLOW_MQTT_REPLAY_PREFIX=self.replay_prefix,
            VITALFLOW_RECOVERY_DIR=str(self.workdir / "recovery"),
            VITALFLOW_EPOCH_INTERVAL_SECONDS=str(self.epoch_interval),
            VITALFLOW_MQTT_PARTITIONS=str(self.partitions),
            VITALFLOW_WORKERS=str(self.workers),
            # A shared-subscription group of its own: offline sessions of other tests' flows
            # in the default group would otherwise be handed (and hold) part of our messages.
            VITALFLOW_MQTT_SHARE_GROUP=self.client_id,
        )
        env.update(self.extra_env)
        return env

    @property
    def db(self) -> Database[dict[str, Any]]:
        return MongoClient(self.mongo_url, tz_aware=True)[self.db_name]

    def redelivered_after_kill(self, listen: float = 2.0) -> list[bytes]:
        """Take over the dead flow's MQTT session and return what the broker redelivers."""
        target = MqttTarget.from_url(self.mqtt_url)
        got: list[bytes] = []
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{self.client_id}-mqtt-0",
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        client.on_message = lambda _c, _u, message: got.append(bytes(message.payload))
        client.connect(target.host, target.port)
        client.loop_start()
        time.sleep(listen)
        client.disconnect()
        client.loop_stop()
        return got

    def prepare_session(self) -> None:
        """Create the flow's persistent MQTT sessions so the broker queues from now on.

        One per partition; with more than one they join the flow's share group, as the flow's
        own clients will, so each queued message waits in exactly one of them.
        """
        target = MqttTarget.from_url(self.mqtt_url)
        topics = [*DEFAULT_TOPICS.split(","), f"{self.replay_prefix}/#"]
        if self.partitions > 1:
            topics = [f"$share/{self.client_id}/{t}" for t in topics]
        for part in range(self.partitions):
            client = self._session_client(part, clean=False)
            client.connect(target.host, target.port)
            client.loop_start()
            result, _mid = client.subscribe([(t, 1) for t in topics])
            assert result == mqtt.MQTT_ERR_SUCCESS
            time.sleep(0.3)
            client.disconnect()
            client.loop_stop()

    def _session_client(self, part: int, *, clean: bool) -> mqtt.Client:
        """A client with the id of the flow's partition `part`, to make or forget its session."""
        return mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{self.client_id}-mqtt-{part}",
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )

    def start(self) -> None:
        log = self.workdir / f"flow-{len(self.log_files)}.log"
        self.log_files.append(log)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "run"],
            env=self.env(),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def kill(self) -> None:
        """Stop the flow the hard way, as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def forget_sessions(self) -> None:
        """Remove the flow's persistent sessions from the broker (clean session connects)."""
        target = MqttTarget.from_url(self.mqtt_url)
        for part in range(self.partitions):
            client = self._session_client(part, clean=True)
            try:
                client.connect(target.host, target.port)
                client.disconnect()
            except OSError:
                pass  # the broker is gone: so are its sessions

    def stop(self) -> None:
        """Kill the flow and forget its sessions: what a test does when it is done."""
        self.kill()
        self.forget_sessions()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.log_files)

    def assert_running(self) -> None:
        assert self.process is not None and self.process.poll() is None, (
            f"flow exited early:\n{self.logs()}"
        )


def publish(mqtt_url: str, messages: list[tuple[str, bytes]], rate: float | None = None) -> None:
    """Publish `(topic, payload)` at QoS 1 and wait for every PUBACK."""
    target = MqttTarget.from_url(mqtt_url)
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311
    )
    client.max_queued_messages_set(0)
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        infos = []
        for topic, payload in messages:
            infos.append(client.publish(topic, payload, qos=1))
            if rate:
                time.sleep(1 / rate)
        for info in infos:
            info.wait_for_publish(timeout=30)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def read_records(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Return every record on `topic` so far, in partition then offset order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Return every JSON record on `topic` so far, each checked by `conforming`."""
    return [conforming(record) for record in read_records(bootstrap, topic)]


def conforming(record: ConsumerRecord) -> Any:
    """Return a record's JSON once the official CloudEvents SDK agrees with its content type.

    Step events say `application/cloudevents+json` and must parse as CloudEvents 1.0 with
    the SDK (the oracle); dead letters say `application/json`, which a CloudEvents consumer
    must not mistake for an event: no `ce_` headers, and the SDK refuses them as one.
    """
    headers = dict(record.headers or [])
    value = json.loads(record.value)
    message = KafkaMessage(headers, record.key, record.value)
    if headers.get("content-type") == CLOUDEVENTS_JSON:
        event = from_kafka_event(message)
        assert event.get_specversion() == "1.0" and event.get_id() == value["id"]
        assert event.get_type() == f"vitalflow.step.{value['data']['step']}"
    else:
        assert headers.get("content-type") == PLAIN_JSON, headers
        assert not [name for name in headers if name.lower().startswith("ce_")], headers
        with contextlib.suppress(CloudEventValidationError):
            from_kafka_event(message)
            raise AssertionError(f"a plain JSON record parses as a CloudEvent: {value}")
    return value


def wait_for(
    condition: Callable[[], Any], timeout: float, flow: FlowUnderTest | None = None, what: str = ""
) -> Any:
    """Poll `condition` until truthy; fail with the flow's log if it never becomes so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if flow is not None:
            flow.assert_running()
        time.sleep(0.5)
    logs = flow.logs() if flow else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


def wait_for_records(flow: FlowUnderTest, topic: str, count: int, timeout: float = 60) -> list[Any]:
    """Return every record on `topic` once there are at least `count`, after a short settle.

    Step events and dead letters leave through sinks of their own: within the last epoch the
    letters may land a moment after the events that ended their chains, so a test that saw
    every chain end waits for the letters too rather than reading them at once.
    """
    wait_for(
        lambda: len(read_topic(flow.kafka_bootstrap, topic)) >= count,
        timeout,
        flow,
        f"{count} records on {topic}",
    )
    time.sleep(0.5)  # anything beyond `count` would show up now
    return read_topic(flow.kafka_bootstrap, topic)


def chains(events: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Group step events by event-id prefix: one chain per delivery."""
    by_delivery: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        prefix = event["id"].rsplit("/", 1)[0]
        by_delivery.setdefault(prefix, []).append(event)
    yield from by_delivery.items()


def terminal_count(events: list[dict[str, Any]]) -> int:
    """Count deliveries whose chain has ended (an error, a skip, or step 5)."""
    return sum(
        1
        for e in events
        if e["data"]["status"] in TERMINAL or e["data"]["step"] == "5_medical_stored"
    )


# One BP cuff behind one AVA4 gateway: the simplest reading whose storage a test can count
# (two observations per message: blood pressure and heart rate).
BP_DEVICE_KEY = "ble:D616F9641622"


def bp_message(
    n: int, *, systolic: int | None = None, diastolic: int | None = None, pulse: int | None = None
) -> tuple[str, bytes]:
    """Return the n-th distinct reading of that cuff, as `(topic, payload)`.

    Its values vary with `n` unless given (an alert test wants a hypertensive crisis).
    """
    payload = {
        "from": "BLE",
        "to": "CLOUD",
        "time": 1764150000 + n,
        "mac": "08:F9:E0:D1:F7:B4",
        "type": "reportAttribute",
        "device": "WBP BIOLIGHT",
        "data": {
            "attribute": "BP_BIOLIGTH",
            "mac": "08:F9:E0:D1:F7:B4",
            "value": {
                "device_list": [
                    {
                        "scan_time": 1764150000 + n,
                        "ble_addr": "d616f9641622",
                        "bp_high": 100 + n % 60 if systolic is None else systolic,
                        "bp_low": 60 + n % 30 if diastolic is None else diastolic,
                        "PR": 60 + n % 40 if pulse is None else pulse,
                    }
                ]
            },
        },
    }
    return "dusun_pub", json.dumps(payload).encode()


def register_bp_patient(db: Database[dict[str, Any]], patient_id: str) -> None:
    """Register a patient (hospital h1) and the cuff `bp_message` readings come from."""
    db.patients.insert_one({"_id": patient_id, "hospital_id": "h1"})
    db.devices.insert_one({"_id": BP_DEVICE_KEY, "patient_id": patient_id})


def free_port() -> int:
    """Return a loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ClusterUnderTest:
    """`vitalflow run` as N OS processes of one Bytewax cluster on loopback addresses.

    Names (database, topics, client ids, share group) come from `flow`; each process gets a
    recovery directory of its own, as a pod gets its own volume, and a metrics port. The
    MQTT partition count is fixed (`partitions`), whatever the number of processes.
    """

    flow: FlowUnderTest
    partitions: int = 3
    recovery_partitions: int = 3
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    metrics_ports: list[int] = field(default_factory=list)
    log_files: list[Path] = field(default_factory=list)
    run_number: int = 0

    def recovery_dir(self, process_id: int) -> Path:
        return self.flow.workdir / f"recovery-{process_id}"

    def start(self, count: int) -> None:
        """Start a cluster of `count` processes (fresh ports: a killed one's may linger)."""
        self.run_number += 1
        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(count))
        self.processes, self.metrics_ports = [], []
        for process_id in range(count):
            port = free_port()
            env = self.flow.env()
            env.update(
                VITALFLOW_PROCESS_ID=str(process_id),
                VITALFLOW_ADDRESSES=addresses,
                VITALFLOW_METRICS_PORT=str(port),
                VITALFLOW_RECOVERY_DIR=str(self.recovery_dir(process_id)),
                VITALFLOW_RECOVERY_PARTITIONS=str(self.recovery_partitions),
                VITALFLOW_MQTT_PARTITIONS=str(self.partitions),
            )
            log = self.flow.workdir / f"cluster-run{self.run_number}-p{process_id}.log"
            self.log_files.append(log)
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flows.cli", "run"],
                    env=env,
                    stdout=log.open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            )
            self.metrics_ports.append(port)

    def current_logs(self) -> list[str]:
        runs = self.log_files[-len(self.processes) :] if self.processes else []
        return [p.read_text(errors="replace") for p in runs]

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.log_files
        )

    def wait_connected(self, timeout: float = 90) -> None:
        """Wait until every MQTT partition is connected, on whichever process runs it."""
        wait_for(
            lambda: (
                sum(log.count(" connected to ") for log in self.current_logs()) >= self.partitions
            ),
            timeout,
            None,
            f"{self.partitions} MQTT partitions connected\n{self.logs()}",
        )

    def assert_running(self) -> None:
        dead = [i for i, p in enumerate(self.processes) if p.poll() is not None]
        assert not dead, f"cluster processes {dead} exited:\n{self.logs()}"

    def kill(self, process_id: int) -> None:
        """`kill -9` one process (its whole process group), as a crash would."""
        process = self.processes[process_id]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def kill_all(self) -> None:
        for process_id in range(len(self.processes)):
            self.kill(process_id)

    def scrape(self, process_id: int) -> str:
        """Return the Prometheus text of one process's metrics endpoint."""
        url = f"http://127.0.0.1:{self.metrics_ports[process_id]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())

    def received_by_partition(self, process_id: int) -> dict[str, float]:
        """Return `vitalflow_mqtt_received_total` by partition, from one process's metrics."""
        got: dict[str, float] = {}
        for line in self.scrape(process_id).splitlines():
            if line.startswith("vitalflow_mqtt_received_total{"):
                labels, value = line.rsplit(" ", 1)
                got[labels.split('partition="')[1].split('"')[0]] = float(value)
        return got

    def prepare_sessions(self) -> None:
        """Create every partition's persistent session in the share group before publishing."""
        self.flow.partitions = self.partitions
        self.flow.prepare_session()

    def stop(self) -> None:
        self.kill_all()
        self.flow.partitions = self.partitions
        self.flow.forget_sessions()
