"""Benchmark: end-to-end throughput of `vitalflow run` against the real local services.

Queues N simulated messages (all families, the simulator's realistic mix) in the flow's
persistent MQTT session, starts the flow, and times until every delivery's chain has ended
on Kafka. Also times the pure stages (parse, enrich) in-process. Prints figures; asserts
nothing. Run after `deploy/local/up`:

    .venv/bin/python tests/bench/bench_pipeline.py --messages 5000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import paho.mqtt.client as mqtt
from pipeline_harness import FlowUnderTest, publish, read_topic, terminal_count

from connectors.device_roster import roster
from connectors.payload_factory import payload_stream
from flows.device_clock import ClockRule
from flows.enrich import enrich_reading
from flows.parse import parse_payload
from flows.seed import write_roster
from flows.settings import Settings
from flows.thresholds import Thresholds


def bench_pure_stages(messages: list[tuple[str, bytes]]) -> None:
    clock = ClockRule.from_settings(Settings())
    thresholds = Thresholds.load(None)
    now = datetime.now(UTC)
    started = time.perf_counter()
    readings = 0
    for topic, payload in messages:
        try:
            parsed = parse_payload(topic, payload, now, clock)
        except Exception:
            continue
        for reading in parsed.readings:
            enrich_reading(reading, thresholds)
            readings += 1
    elapsed = time.perf_counter() - started
    print(
        f"parse+enrich in-process: {len(messages)} messages, {readings} readings in "
        f"{elapsed:.3f} s = {len(messages) / elapsed:,.0f} msg/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--mongo-url", default="mongodb://127.0.0.1:27017")
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    args = parser.parse_args()

    world = roster(seed=7, patients=12)
    stream = payload_stream(world, random.Random(7))
    topics = Settings().topics
    # Cloud commands go to `dusun_sub`, which the flow does not subscribe to by default.
    messages = [
        (m.topic, m.payload)
        for m, _ in zip(stream, range(args.messages), strict=False)
        if any(mqtt.topic_matches_sub(t, m.topic) for t in topics)
    ]
    bench_pure_stages(messages)

    flow = FlowUnderTest(
        args.mqtt_url, args.mongo_url, args.kafka, uuid.uuid4().hex[:8], Path(tempfile.mkdtemp())
    )
    write_roster(flow.db, world)
    flow.prepare_session()
    started = time.perf_counter()
    publish(flow.mqtt_url, messages)
    print(f"published {len(messages)} messages at QoS 1 in {time.perf_counter() - started:.1f} s")
    try:
        started = time.perf_counter()
        flow.start()
        while True:
            ended = terminal_count(read_topic(flow.kafka_bootstrap, flow.steps_topic))
            if ended >= len(messages):
                break
            flow.assert_running()
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        stored = flow.db.observations.count_documents({})
        print(
            f"vitalflow run (1 worker, epoch {flow.epoch_interval} s, recovery on): "
            f"{len(messages)} messages, {stored} observations, every chain ended in "
            f"{elapsed:.1f} s including start-up = {len(messages) / elapsed:,.0f} msg/s"
        )
    finally:
        flow.kill()


if __name__ == "__main__":
    main()
