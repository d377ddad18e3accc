"""Benchmark: receiving queued QoS 1 messages with paho's client vs `BufferedClient`.

What the flow's MQTT source does with paho, alone: N messages are queued in a persistent
session on the local Mosquitto, then a client of each kind connects and takes each message
as the source does (bytes of the payload and a timestamp, into a list, on paho's thread),
while the main thread, as the flow's worker, acks what arrived every `--ack-ms` (paho: `ack`
per message; buffered: `ack_all`). Printed per kind and round: messages/s and the process's
CPU per message, with the process otherwise idle and with `--busy` Python threads spinning
beside it (the flow's worker holds the interpreter lock most of the time: each system call
of paho's then waits to get it back). The switch interval is the flow's (1 ms). Asserts
nothing.

    .venv/bin/python tests/bench/bench_mqtt_receive.py --messages 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import paho.mqtt.client as mqtt
from raw_publisher import RawPublisher

from connectors.buffered_reads import BufferedClient

HOST = "127.0.0.1"


def _client(kind: type[mqtt.Client], client_id: str, *, clean: bool) -> mqtt.Client:
    return kind(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=mqtt.MQTTv311,
        manual_ack=True,
    )


def _queue(port: int, topic: str, client_id: str, messages: int, payload: bytes) -> None:
    """Subscribe a persistent session, leave, and publish `messages` into it."""
    subscribed = threading.Event()
    client = _client(mqtt.Client, client_id, clean=False)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect(HOST, port)
    client.loop_start()
    if not subscribed.wait(10):
        msg = "no SUBACK from the broker"
        raise RuntimeError(msg)
    client.disconnect()
    client.loop_stop()
    publisher = RawPublisher(HOST, port, f"bench-pub-{uuid.uuid4().hex[:8]}")
    publisher.publish_at_rate([(topic, payload)] * messages, 1e9, lambda _i, _t: None)
    if not publisher.wait_for_acks(messages, timeout=60):
        msg = "the broker did not ack every publish"
        raise RuntimeError(msg)
    publisher.close()


def _receive(
    kind: type[mqtt.Client], port: int, client_id: str, messages: int, ack_every: float
) -> tuple[float, float]:
    """Return (seconds, process CPU seconds) to take and ack every queued message."""
    arrived: list[tuple[int, int]] = []
    got: list[tuple[str, bytes, datetime]] = []

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append((message.topic, bytes(message.payload), datetime.now(UTC)))
        arrived.append((message.mid, message.qos))

    client = _client(kind, client_id, clean=False)
    client.on_message = on_message
    cpu, wall = time.process_time(), time.perf_counter()
    client.connect(HOST, port)
    client.loop_start()
    acked = 0
    deadline = time.monotonic() + 300
    while acked < messages:
        if time.monotonic() > deadline:
            msg = f"{len(got)} of {messages} messages received"
            raise RuntimeError(msg)
        time.sleep(ack_every)
        due = arrived[acked:]
        if isinstance(client, BufferedClient):
            client.ack_all(due)
        else:
            for mid, qos in due:
                client.ack(mid, qos)
        acked += len(due)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    client.disconnect()
    client.loop_stop()
    forget = _client(mqtt.Client, client_id, clean=True)
    forget.connect(HOST, port)
    forget.disconnect()
    return wall, cpu


def _spin(stop: threading.Event) -> None:
    total = 0
    while not stop.is_set():
        for i in range(1_000):
            total += i * i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--payload-bytes", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", type=int, nargs="*", default=[0, 1], help="spinning threads")
    parser.add_argument("--ack-ms", type=float, default=20.0, help="ack what arrived this often")
    parser.add_argument("--mqtt-port", type=int, default=int(os.environ.get("MQTT_PORT", 1883)))
    args = parser.parse_args()
    sys.setswitchinterval(0.001)  # as the flow sets it (flows.thread_switching)
    payload = b"x" * args.payload_bytes
    results: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for round_ in range(args.rounds):
        for busy in args.busy:
            for kind in (mqtt.Client, BufferedClient):
                client_id = f"bench-recv-{uuid.uuid4().hex[:8]}"
                topic = f"bench/recv/{client_id}"
                _queue(args.mqtt_port, topic, client_id, args.messages, payload)
                stop = threading.Event()
                spinners = [threading.Thread(target=_spin, args=(stop,)) for _ in range(busy)]
                for spinner in spinners:
                    spinner.start()
                try:
                    wall, cpu = _receive(
                        kind, args.mqtt_port, client_id, args.messages, args.ack_ms / 1000
                    )
                finally:
                    stop.set()
                    for spinner in spinners:
                        spinner.join()
                # With spinners the process CPU is theirs too: only the rate is paho's then.
                results.setdefault((busy, kind.__name__), []).append((wall, cpu))
                print(
                    f"round {round_ + 1}, {busy} busy thread(s), {kind.__name__:>14}: "
                    f"{args.messages / wall:8,.0f} msg/s"
                    + ("" if busy else f", {cpu / args.messages * 1e6:5.1f} us CPU a message"),
                    flush=True,
                )
    print(
        f"\n== median of {args.rounds} rounds, "
        f"{args.messages} messages of {args.payload_bytes} bytes =="
    )
    for (busy, name), runs in results.items():
        rate = statistics.median(args.messages / wall for wall, _ in runs)
        cpu = statistics.median(cpu for _, cpu in runs) / args.messages * 1e6
        extra = "" if busy else f", {cpu:.1f} us CPU a message"
        print(f"{busy} busy thread(s), {name:>14}: {rate:,.0f} msg/s{extra}")


if __name__ == "__main__":
    main()
