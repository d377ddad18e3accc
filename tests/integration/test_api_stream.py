"""The SSE API against real Kafka: filters, resume, restarts, 200 clients, slow clients, auth.

Each test writes to a topic of its own (`vitalflow.steps.test-<id>`), so tests run in any
order and twice against the same broker. Most run the API in a thread of the test process;
the restart, fan-out and slow-client tests run it as a separate process, as in production,
so that it can be killed and so that its memory can be measured alone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import psutil
import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from api.client import SseConnection, SseFrame, SseHttpError, open_stream
from api.hub import StreamTuning
from api.position import Position
from api.server import serve_in_thread
from flows.model import Step
from flows.parent_death import die_with_parent
from flows.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = tuple(str(step) for step in Step)
DEVICE_TYPES = ("AVA4", "Kati", "Qube")
SECRET = "integration-test-secret-long-enough-for-hs256"

# Runs the API the way `vitalflow api` does, with test-sized limits from the environment.
LAUNCHER = """
import json, os
from flows.settings import Settings
from api.hub import StreamTuning
from api.server import build_server
tuning = StreamTuning(**json.loads(os.environ.get("VF_TEST_TUNING", "{}")))
build_server(Settings(), tuning, log_level="warning", access_log=False).run()
"""


def step_event(
    n: int,
    *,
    device_type: str | None = None,
    device_id: str | None = None,
    patient: str | None = "P1",
    hospital: str | None = "H1",
    step: str | None = None,
    status: str = "success",
    padding: int = 0,
) -> dict[str, Any]:
    """Message `n`'s step event; the defaults spread messages over types, devices and steps."""
    step = step or STEPS[n % len(STEPS)]
    device_type = device_type or DEVICE_TYPES[n % len(DEVICE_TYPES)]
    return {
        "specversion": "1.0",
        "id": f"m{n}/{step}",
        "source": "vitalflow",
        "type": f"vitalflow.step.{step}",
        "subject": f"{device_type}/{device_id or f'D{n % 7}'}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "datacontenttype": "application/json",
        "data": {
            "message_id": f"m{n}",
            "step": step,
            "status": status,
            "device_type": device_type,
            "device_id": device_id or f"D{n % 7}",
            "topic": "dusun_pub",
            "patient_id": patient,
            "hospital_id": hospital,
            "payload": {"sent_at": time.time(), "pad": "x" * padding},
            "processed_data": {},
            "error": {"code": "E", "message": "failed"} if status == "error" else None,
        },
    }


class StepProducer:
    """Writes step events to the test's topic as the dataflow's Kafka sink does."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)

    def send(self, event: dict[str, Any]) -> None:
        key = event["data"]["device_id"].encode()
        self._producer.send(
            self.topic,
            key=key,
            value=json.dumps(event).encode(),
            headers=[("content-type", b"application/cloudevents+json")],
        )

    def send_all(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.send(event)
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


@dataclass
class ApiProcess:
    """An API running as its own process."""

    base: str
    process: subprocess.Popen[bytes]

    @property
    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def stop(self) -> float:
        """SIGTERM, as an orchestrator would; returns how long the process took to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=20)
        return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def api_process(
    bootstrap: str, topic: str, tuning: dict[str, Any] | None = None, **env: str
) -> Iterator[ApiProcess]:
    port = free_port()
    environment = {
        **os.environ,
        "VITALFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "VITALFLOW_STEPS_TOPIC": topic,
        "VITALFLOW_API_PORT": str(port),
        "VITALFLOW_AUTH": "off",
        "VF_TEST_TUNING": json.dumps(tuning or {}),
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER],
        cwd=REPO_ROOT,
        env=environment,
        preexec_fn=die_with_parent,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the API process exited"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not become healthy"
            time.sleep(0.1)
        yield ApiProcess(base, process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def api_thread(
    bootstrap: str, topic: str, tuning: StreamTuning | None = None, **settings: Any
) -> Iterator[str]:
    options = {"auth": "off", **settings}
    config = Settings(kafka_bootstrap=bootstrap, steps_topic=topic, api_port=0, **options)
    with serve_in_thread(config, tuning) as base:
        yield base


def run(scenario: Callable[[], Any], timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), timeout=timeout))


async def connect(base: str, **kwargs: Any) -> SseConnection:
    """Open a stream and wait for its `ready` frame."""
    stream = await open_stream(f"{base}/events", **kwargs)
    ready = await stream.next_frame(10)
    assert ready is not None and ready.event == "ready"
    return stream


async def step_frames(
    stream: SseConnection, count: int, timeout: float = 15, until_close: bool = False
) -> list[SseFrame]:
    """The next `count` step-event frames (control frames skipped)."""
    found: list[SseFrame] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        frame = await stream.next_frame(max(0.1, deadline - time.monotonic()))
        assert frame is not None, f"stream ended after {len(found)} of {count} events"
        if frame.event in STEPS:
            found.append(frame)
        elif frame.event == "close" and until_close:
            break
    return found


async def no_more_step_frames(stream: SseConnection, wait: float = 0.3) -> None:
    try:
        frame = await stream.next_frame(wait)
    except TimeoutError:
        return
    assert frame is None or frame.event not in STEPS, f"unexpected {frame}"


def ids(frames: list[SseFrame]) -> list[str]:
    return [frame.json()["data"]["message_id"] for frame in frames]


def assert_positions_only_move_forward(frames: list[SseFrame]) -> None:
    positions = [Position.decode(f.id) for f in frames if f.id]
    for before, after in itertools.pairwise(positions):
        assert after.covers(before), f"{after} went back from {before}"


@pytest.fixture
def topic(services: Any, unique_id: str) -> str:
    name = f"vitalflow.steps.test-{unique_id}"
    create_topic(services.kafka_bootstrap, name, partitions=3)
    return name


@pytest.fixture
def producer(services: Any, topic: str) -> Iterator[StepProducer]:
    step_producer = StepProducer(services.kafka_bootstrap, topic)
    yield step_producer
    step_producer.close()


def test_filters_select_exactly_the_matching_events(
    services: Any, topic: str, producer: StepProducer
) -> None:
    events = [
        step_event(
            n,
            patient=f"P{n % 4}" if n % 5 else None,
            status=("success", "error", "skipped")[n % 3],
        )
        for n in range(90)
    ]
    filters: dict[str, tuple[dict[str, str], Callable[[dict[str, Any]], bool]]] = {
        "kati": ({"device_type": "Kati"}, lambda d: d["device_type"] == "Kati"),
        "device": ({"device_id": "D2,D3"}, lambda d: d["device_id"] in {"D2", "D3"}),
        "patient": ({"patient_id": "P1"}, lambda d: d["patient_id"] == "P1"),
        "stored": ({"step": "5_medical_stored"}, lambda d: d["step"] == "5_medical_stored"),
        "errors": ({"status": "error"}, lambda d: d["status"] == "error"),
        "combined": (
            {"device_type": "AVA4", "status": "success", "step": "1_mqtt_received"},
            lambda d: (
                (d["device_type"], d["status"], d["step"]) == ("AVA4", "success", "1_mqtt_received")
            ),
        ),
    }

    async def scenario() -> None:
        with api_thread(services.kafka_bootstrap, topic) as base:
            streams = {
                name: await connect(base, params=query) for name, (query, _) in filters.items()
            }
            producer.send_all(events)
            for name, (_, wanted) in filters.items():
                expected = sorted(e["data"]["message_id"] for e in events if wanted(e["data"]))
                assert expected, name
                got = await step_frames(streams[name], len(expected))
                assert sorted(ids(got)) == expected, name
                await no_more_step_frames(streams[name])
                await streams[name].close()
            health = httpx.get(f"{base}/health").json()
            assert health["status"] == "ok"
            assert health["dependencies"][0]["name"].startswith("event feed (kafka")
            metrics = httpx.get(f"{base}/metrics").text
            assert "vitalflow_api_events_consumed_total 90.0" in metrics

    run(scenario)


def test_resume_after_a_disconnect_mid_stream_has_no_gap_and_no_repeat(
    services: Any, topic: str, producer: StepProducer
) -> None:
    total = 300
    events = [step_event(n) for n in range(total)]

    def produce() -> None:
        for event in events:
            producer.send(event)
            time.sleep(0.002)
        producer._producer.flush()

    async def scenario() -> None:
        with api_thread(services.kafka_bootstrap, topic) as base:
            first = await connect(base)
            writer = threading.Thread(target=produce)
            writer.start()
            seen = await step_frames(first, 60)
            await first.close()
            await asyncio.sleep(0.3)  # events keep arriving while the client is away
            # Reconnect as EventSource does: with the Last-Event-ID header.
            second = await connect(base, last_event_id=seen[-1].id)
            seen += await step_frames(second, 120)
            await second.close()
            # And as the dashboard does after a refused connection: with the query parameter.
            third = await connect(base, params={"last_event_id": seen[-1].id or ""})
            seen += await step_frames(third, total - len(seen))
            await no_more_step_frames(third)
            await third.close()
            await asyncio.to_thread(writer.join)
        assert len(ids(seen)) == total
        assert sorted(ids(seen)) == sorted(e["data"]["message_id"] for e in events)
        assert_positions_only_move_forward(seen)

    run(scenario)


def test_resume_across_an_api_restart_gets_exactly_the_rest(
    services: Any, topic: str, producer: StepProducer
) -> None:
    async def scenario() -> None:
        with api_process(services.kafka_bootstrap, topic) as api:
            stream = await connect(api.base)
            producer.send_all([step_event(n) for n in range(40)])
            seen = await step_frames(stream, 25)
            await stream.close()
            took = await asyncio.to_thread(api.stop)
            assert took < 5
        producer.send_all([step_event(n) for n in range(40, 70)])
        with api_process(services.kafka_bootstrap, topic) as restarted:
            stream = await connect(restarted.base, last_event_id=seen[-1].id)
            rest = await step_frames(stream, 45)
            await no_more_step_frames(stream)
            await stream.close()
        assert sorted(ids(seen) + ids(rest)) == sorted(f"m{n}" for n in range(70))
        assert_positions_only_move_forward(seen + rest)

    run(scenario, timeout=90)


def test_open_streams_get_a_close_frame_promptly_on_shutdown(
    services: Any, topic: str, producer: StepProducer
) -> None:
    async def scenario() -> None:
        with api_process(services.kafka_bootstrap, topic) as api:
            streams = [await connect(api.base) for _ in range(5)]
            producer.send_all([step_event(n) for n in range(3)])
            for stream in streams:
                await step_frames(stream, 3)
            stopping = asyncio.create_task(asyncio.to_thread(api.stop))
            for stream in streams:
                frame = await stream.next_frame(5)
                assert frame is not None
                assert (frame.event, frame.json()) == ("close", {"reason": "shutdown"})
                assert await stream.next_frame(5) is None
            assert await stopping < 5

    run(scenario)


def test_two_hundred_clients_each_receive_every_event(
    services: Any, topic: str, producer: StepProducer
) -> None:
    clients, total = 200, 150
    events = [step_event(n, padding=600) for n in range(total)]

    async def scenario() -> None:
        with api_process(services.kafka_bootstrap, topic) as api:
            streams = await asyncio.gather(*(connect(api.base) for _ in range(clients)))
            assert httpx.get(f"{api.base}/health").json()["clients"] == clients
            rss_connected = api.rss

            def produce() -> None:
                for event in events:
                    event["data"]["payload"]["sent_at"] = time.time()
                    producer.send(event)
                    time.sleep(0.004)
                producer._producer.flush()

            writer = threading.Thread(target=produce)
            writer.start()
            received = await asyncio.gather(*(step_frames(s, total, timeout=60) for s in streams))
            await asyncio.to_thread(writer.join)
            rss_after = api.rss
            for stream in streams:
                await no_more_step_frames(stream, wait=0.05)
            await asyncio.gather(*(s.close() for s in streams))

        expected = sorted(f"m{n}" for n in range(total))
        latencies = []
        for frames in received:
            assert sorted(ids(frames)) == expected
            assert_positions_only_move_forward(frames)
            latencies += [f.received_at - f.json()["data"]["payload"]["sent_at"] for f in frames]
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[int(len(latencies) * 0.99)]
        print(
            f"\n{clients} clients x {total} events: latency p50 {p50 * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms; API RSS {rss_connected / 2**20:.0f} MiB connected, "
            f"{rss_after / 2**20:.0f} MiB after"
        )
        assert p99 < 5.0  # a sanity bound only: tests/bench/bench_sse.py measures latency properly
        assert rss_after - rss_connected < 60 * 2**20

    run(scenario, timeout=120)


def test_a_slow_client_is_dropped_with_a_reason_while_memory_stays_bounded(
    services: Any, topic: str, producer: StepProducer
) -> None:
    total = 4000
    queue = 500

    async def scenario() -> None:
        tuning = {"client_queue": queue, "send_timeout_seconds": 30}
        with api_process(services.kafka_bootstrap, topic, tuning) as api:
            fast = await connect(api.base)
            # A small receive buffer and no reading: the server's writes back up at once.
            slow = await open_stream(f"{api.base}/events", receive_buffer=4096)
            await asyncio.sleep(0.5)
            rss_before = api.rss

            def produce() -> None:
                # Fast, but at a pace a reading client keeps up with: ~2,000 events/s.
                for first in range(0, total, 100):
                    producer.send_all(
                        [step_event(n, padding=1000) for n in range(first, first + 100)]
                    )
                    time.sleep(0.05)

            await asyncio.to_thread(produce)
            got = await step_frames(fast, total, timeout=60)
            assert sorted(ids(got)) == sorted(f"m{n}" for n in range(total))
            rss_after = api.rss
            metrics = httpx.get(f"{api.base}/metrics").text
            assert 'vitalflow_api_clients_dropped_total{reason="slow_consumer"} 1.0' in metrics

            # The slow client now reads what was buffered for it, then the final frame.
            frames: list[SseFrame] = []
            while not frames or frames[-1].event != "close":
                frame = await slow.next_frame(20)
                assert frame is not None, "the stream ended without a close frame"
                frames.append(frame)
            assert frames[-1].json() == {"reason": "slow_consumer"}
            delivered = [f for f in frames if f.event in STEPS]
            assert len(delivered) < total
            assert len(set(ids(delivered))) == len(delivered)
            # Resuming from the close frame's id gives exactly what it missed.
            again = await connect(api.base, last_event_id=frames[-1].id)
            rest = await step_frames(again, total - len(delivered), timeout=60)
            assert sorted(ids(delivered) + ids(rest)) == sorted(f"m{n}" for n in range(total))
            await asyncio.gather(fast.close(), slow.close(), again.close())
        print(f"\nAPI RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB")
        # 4000 events of ~1.5 KB (6 MB) passed; a per-client backlog would have kept them all.
        assert rss_after - rss_before < 25 * 2**20

    run(scenario, timeout=120)


def test_auth_matrix_on_the_stream(services: Any, topic: str, producer: StepProducer) -> None:
    def token(scope: str, expires_in: float = 300, key: str = SECRET) -> str:
        claims = {"exp": time.time() + expires_in, "scope": scope}
        return jwt.encode(claims, key, algorithm="HS256")

    async def status_of(base: str, **kwargs: Any) -> int:
        try:
            stream = await open_stream(f"{base}/events", **kwargs)
        except SseHttpError as exc:
            return exc.status
        await stream.close()
        return 200

    async def scenario() -> None:
        with api_thread(services.kafka_bootstrap, topic, auth="jwt", jwt_secret=SECRET) as base:
            assert await status_of(base) == 401
            assert await status_of(base, token=token("events:all", expires_in=-5)) == 401
            assert await status_of(base, token=token("events:all", key="k" * 40)) == 401
            bad_in_query = {"access_token": token("events:all", key="k" * 40)}
            assert await status_of(base, params=bad_in_query) == 401
            out_of_scope = {"patient_id": "P2"}
            assert await status_of(base, token=token("patient:P1"), params=out_of_scope) == 403
            assert (
                await status_of(base, token=token("hospital:H1"), params={"hospital_id": "H2"})
                == 403
            )
            assert await status_of(base, token=token("events:all")) == 200

            hospital = await connect(base, token=token("hospital:H1"))
            patient = await connect(base, params={"access_token": token("patient:P3")})
            everything = await connect(base, token=token("events:all"))
            events = [
                step_event(0, patient="P1", hospital="H1"),
                step_event(1, patient="P3", hospital="H2"),
                step_event(2, patient=None, hospital=None),
                step_event(3, patient="P2", hospital="H1"),
            ]
            producer.send_all(events)
            assert sorted(ids(await step_frames(everything, 4))) == ["m0", "m1", "m2", "m3"]
            assert sorted(ids(await step_frames(hospital, 2))) == ["m0", "m3"]
            assert ids(await step_frames(patient, 1)) == ["m1"]
            for stream in (hospital, patient):
                await no_more_step_frames(stream)
            for stream in (hospital, patient, everything):
                await stream.close()

    run(scenario)


def test_a_position_kafka_no_longer_holds_gets_a_reset_frame(services: Any, unique_id: str) -> None:
    topic = f"vitalflow.steps.test-{unique_id}"
    create_topic(services.kafka_bootstrap, topic, partitions=1)
    producer = StepProducer(services.kafka_bootstrap, topic)
    producer.send_all([step_event(n) for n in range(10)])
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    admin.delete_records({TopicPartition(topic, 0): 6})
    admin.close()
    producer.close()

    async def scenario() -> None:
        # A replay buffer too small to hold position 3, so the API must ask Kafka for it.
        tuning = StreamTuning(replay_buffer=2)
        with api_thread(services.kafka_bootstrap, topic, tuning, steps_partitions=1) as base:
            stream = await open_stream(f"{base}/events", last_event_id="0-3")
            ready = await stream.next_frame(10)
            assert ready is not None and ready.event == "ready"
            reset = await stream.next_frame(10)
            assert reset is not None and reset.event == "reset"
            assert reset.json()["lost"] == {"0": 3}
            assert reset.id == "0-6"
            assert ids(await step_frames(stream, 4)) == ["m6", "m7", "m8", "m9"]
            await stream.close()

    run(scenario)
