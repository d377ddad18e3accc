"""Benchmark: delivery latency from Kafka to SSE clients, and the API's memory, with N clients.

    .venv/bin/python tests/bench/bench_sse.py --clients 200 --events 3000 --rate 250

It starts the API as its own process (as `vitalflow api` runs) on a fresh topic created with
`message.timestamp.type=LogAppendTime`, so every record carries the time Kafka appended it;
opens the clients in this process; produces step events at a steady rate; and measures, for
every (client, event) pair, the time from Kafka's append to the frame's arrival at the client.
It prints p50/p90/p99/max latency, whether every client got every event exactly once, and the
API's resident memory before the clients connect, with them connected, and at its peak.
Everything runs on one machine, so the API, the clients, Kafka and the producer share its
cores: the figures are an upper bound for the API alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from flows.parent_death import die_with_parent

__all__ = ["main"]

_LAUNCHER = """
import json, os
from flows.settings import Settings
from api.hub import StreamTuning
from api.server import build_server
tuning = StreamTuning(**json.loads(os.environ.get("VF_BENCH_TUNING", "{}")))
build_server(Settings(), tuning, log_level="warning", access_log=False).run()
"""
_MESSAGE_ID = re.compile(rb'"message_id":\s*"(bench-\d+)"')
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ClientTally:
    """What one client received: message id -> arrival time (s since the epoch)."""

    arrivals: dict[bytes, float] = field(default_factory=dict)
    repeats: int = 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _event(n: int, padding: int) -> bytes:
    step = ("1_mqtt_received", "2_payload_parsed", "3_patient_lookup")[n % 3]
    data = {
        "message_id": f"bench-{n}",
        "step": step,
        "status": "success",
        "device_type": ("AVA4", "Kati", "Qube")[n % 3],
        "device_id": f"D{n % 50}",
        "topic": "dusun_pub",
        "patient_id": f"P{n % 20}",
        "hospital_id": "H1",
        "payload": {"pad": "x" * padding},
        "processed_data": {},
        "error": None,
    }
    event = {
        "specversion": "1.0",
        "id": f"bench-{n}/{step}",
        "source": "vitalflow",
        "type": f"vitalflow.step.{step}",
        "subject": f"{data['device_type']}/{data['device_id']}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "datacontenttype": "application/json",
        "data": data,
    }
    return json.dumps(event, separators=(",", ":")).encode()


async def _client(base: str, tally: ClientTally, ready: asyncio.Event, done: asyncio.Event) -> None:
    """Read a stream as raw bytes: arrival time per message id, no full parsing (cheap)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=2**22)
    writer.write(
        f"GET /events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        msg = f"stream refused: {head[:80]!r}"
        raise RuntimeError(msg)
    ready.set()
    carry = b""
    arrivals = tally.arrivals
    try:
        while not done.is_set():
            chunk = await reader.read(1 << 20)
            if not chunk:
                break
            now = time.time()
            # A message id split across two reads is found with the next one.
            text = carry + chunk
            cut = text.rfind(b"\n")
            carry = text[cut + 1 :]
            for match in _MESSAGE_ID.finditer(text, 0, cut + 1):
                key = match.group(1)
                if key in arrivals:
                    tally.repeats += 1
                else:
                    arrivals[key] = now
    finally:
        writer.close()


def _produce(
    bootstrap: str, topic: str, events: int, rate: float, padding: int, results: Connection
) -> None:
    """Produce at a steady rate; send back when Kafka appended each event (its own process)."""
    die_with_parent()
    appended: dict[bytes, float] = {}
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    interval = 1.0 / rate
    started = time.monotonic()
    for n in range(events):
        key = f"bench-{n}".encode()

        def remember(metadata: Any, key: bytes = key) -> None:
            appended[key] = metadata.timestamp / 1000  # LogAppendTime: when Kafka appended it

        future = producer.send(topic, key=f"D{n % 50}".encode(), value=_event(n, padding))
        future.add_callback(remember)
        delay = started + (n + 1) * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    producer.flush()
    producer.close()
    results.send(appended)
    results.close()


def _percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))]


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    topic = f"vitalflow.steps.bench-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.create_topics(
        [
            NewTopic(
                topic,
                num_partitions=args.partitions,
                replication_factor=1,
                topic_configs={"message.timestamp.type": "LogAppendTime"},
            )
        ]
    )
    admin.close()
    port = _free_port()
    env = {
        **os.environ,
        "VITALFLOW_KAFKA_BOOTSTRAP": args.bootstrap,
        "VITALFLOW_STEPS_TOPIC": topic,
        "VITALFLOW_STEPS_PARTITIONS": str(args.partitions),
        "VITALFLOW_API_PORT": str(port),
        "VITALFLOW_AUTH": "off",
        "VF_BENCH_TUNING": json.dumps({"client_queue": args.client_queue}),
    }
    api = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER], cwd=_REPO_ROOT, env=env, preexec_fn=die_with_parent
    )
    process = psutil.Process(api.pid)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline or api.poll() is not None:
                    raise
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        rss_idle = process.memory_info().rss

        tallies = [ClientTally() for _ in range(args.clients)]
        readies = [asyncio.Event() for _ in tallies]
        done = asyncio.Event()
        tasks = [
            asyncio.create_task(_client(base, tally, ready, done))
            for tally, ready in zip(tallies, readies, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
        await asyncio.sleep(1.0)
        rss_connected = process.memory_info().rss

        peak = {"rss": rss_connected}
        cpu_before = process.cpu_times()

        def sample() -> None:
            while not done.is_set():
                peak["rss"] = max(peak["rss"], process.memory_info().rss)
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        # The producer gets a process of its own: kafka-python's producer is CPU-hungry, and
        # sharing this process's GIL would delay the clients' reads and inflate the figures.
        receiving, sending = multiprocessing.Pipe(duplex=False)
        producer = multiprocessing.get_context("spawn").Process(
            target=_produce,
            args=(args.bootstrap, topic, args.events, args.rate, args.padding, sending),
        )
        producer.start()
        appended: dict[bytes, float] = await asyncio.to_thread(receiving.recv)
        await asyncio.to_thread(producer.join)
        # Wait for the tail of the stream to arrive everywhere (or give up after a while).
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up and any(len(t.arrivals) < args.events for t in tallies):
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        cpu_after = process.cpu_times()
        done.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sampler.join()
    finally:
        api.terminate()
        api.wait(timeout=20)

    latencies = sorted(
        arrival - appended[key]
        for tally in tallies
        for key, arrival in tally.arrivals.items()
        if key in appended
    )
    complete = sum(1 for t in tallies if len(t.arrivals) == args.events)
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return {
        "clients": args.clients,
        "events": args.events,
        "rate_per_second": args.rate,
        "event_bytes": len(_event(0, args.padding)),
        "deliveries": len(latencies),
        "clients_with_every_event": complete,
        "repeats": sum(t.repeats for t in tallies),
        "latency_ms": {
            "p50": round(_percentile(latencies, 0.50) * 1000, 1),
            "p90": round(_percentile(latencies, 0.90) * 1000, 1),
            "p99": round(_percentile(latencies, 0.99) * 1000, 1),
            "max": round(latencies[-1] * 1000, 1),
            "mean": round(statistics.fmean(latencies) * 1000, 1),
        },
        "api_rss_mib": {
            "idle": round(rss_idle / 2**20, 1),
            "with_clients": round(rss_connected / 2**20, 1),
            "peak": round(peak["rss"] / 2**20, 1),
        },
        "api_cpu_percent_of_one_core": round(100 * cpu / elapsed, 1),
        "cores": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures (text, then JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("VITALFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=250.0, help="events per second")
    parser.add_argument("--padding", type=int, default=600, help="payload bytes per event")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--client-queue", type=int, default=2000)
    args = parser.parse_args(argv)
    result = asyncio.run(_run(args))
    latency, rss = result["latency_ms"], result["api_rss_mib"]
    print(
        f"{result['clients']} clients, {result['events']} events "
        f"at {result['rate_per_second']:g}/s "
        f"({result['event_bytes']} B each), {result['cores']} cores shared with Kafka and clients\n"
        f"delivered {result['deliveries']} of {result['clients'] * result['events']} "
        f"(clients with every event: {result['clients_with_every_event']}, "
        f"repeats: {result['repeats']})\n"
        f"latency Kafka append -> client: p50 {latency['p50']} ms, p90 {latency['p90']} ms, "
        f"p99 {latency['p99']} ms, max {latency['max']} ms\n"
        f"API memory (RSS): {rss['idle']} MiB idle, {rss['with_clients']} MiB with clients, "
        f"{rss['peak']} MiB peak; API CPU {result['api_cpu_percent_of_one_core']}% of one core"
    )
    print(json.dumps(result))
    return 0 if result["clients_with_every_event"] == result["clients"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
