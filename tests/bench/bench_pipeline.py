"""Benchmark: `vitalflow run` end to end against the real local services; prints, asserts nothing.

Traffic is the simulator's (`flows.simulator.payload_factory`): all three device families in its
realistic mix, from `--patients` distinct patients (default 1,000; each has an AVA4 gateway
with its BLE devices and a Kati watch, every other one a citizen card for the kiosks), with
its duplicates, malformed and unknown-device messages. The roster is registered in each run's
own database first. Every run gets its own database, Kafka topics and MQTT session
(`tests/integration/pipeline_harness.py`), and its MQTT session is forgotten afterwards.

1. **Throughput** (per `--epoch-interval`): every message is queued in the flow's persistent
   session first, then the flow starts; timed until every delivery's chain has ended on
   Kafka. Checked: one chain per delivery, no event id twice, every stored chain with its
   five step events, stored observations equal to what the messages carry.
2. **Latency** (per `--rate` and `--epoch-interval`): the flow runs first, then the messages
   are published at R msg/s. Nothing is embedded in payloads: the publish time of each
   delivery is kept client-side by message id (`flows.model.fingerprint`, the id the flow
   gives it) and compared with the step-5 event's CloudEvent `time` (stamped when the
   observations' `insert_many` has returned: stored in MongoDB) and with the moment the
   broker appended it (step 5 visible downstream: the benchmark creates its topics with
   broker timestamps, so its consumer need not poll hard; `step_watcher.py`).
   With `--processes 1 2`, each throughput run is repeated as a 2-process cluster (one MQTT
   partition per process, a shared subscription; `ClusterUnderTest` of the harness).
3. **Baseline** (`--baseline naive`): `naive_listener.py`, a per-message paho callback, over
   the same messages queued the same way, in its own database and topic.

`--flow-env VITALFLOW_NAME=VALUE` (repeatable) sets a setting for every flow run, to measure a
lever (the source's batch size, say) with everything else equal.

Each phase prints the CPU each process used (the flow, the services found by port, the
benchmark's own helpers) and, with `--profile`, where the flow spent its time (py-spy).

    .venv/bin/python tests/bench/bench_pipeline.py --messages 10000 \\
        --epoch-interval 1.0 0.1 --rate 100 1000 --baseline naive --profile
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import paho.mqtt.client as mqtt
from pipeline_harness import ClusterUnderTest, FlowUnderTest, publish
from process_cpu import CpuMeter, Profile, service_processes
from pymongo import MongoClient
from pymongo.database import Database
from raw_publisher import RawPublisher
from step_watcher import TIMED_TOPIC, SeenEvent, StepWatcher

from connectors.mqtt_source import MqttTarget
from flows.codes_and_flags import enrich_reading
from flows.commands.seed import device_documents, write_roster
from flows.device_clock import ClockRule
from flows.devices.parse_payload import parse_payload
from flows.model import fingerprint
from flows.parent_death import die_with_parent
from flows.settings import DEFAULT_TOPICS, Settings
from flows.simulator.device_roster import Roster, roster
from flows.simulator.payload_factory import SimulatedMessage, payload_stream
from flows.thresholds import Thresholds
from sinks.kafka_writer import ensure_topics

STEPS_PARTITIONS = Settings().steps_partitions
WARM_UP = ("dusun_pub", b"bench warm-up: not JSON, ends at step 2")
WARM_UP_ID = fingerprint(*WARM_UP)
LAST_STEP = "5_medical_stored"


@dataclass
class RunResult:
    """What one run measured, for the closing summary."""

    name: str
    figures: dict[str, str] = field(default_factory=dict)
    bound_by: str = ""
    epoch: float | None = None
    rate: float | None = None
    stored_ms: tuple[float, float] | None = None  # p50, p99 publish -> stored


def simulated_messages(patients: int, count: int) -> tuple[Roster, list[SimulatedMessage]]:
    """Return the roster and `count` messages of the simulator's mix on the flow's topics."""
    world = roster(seed=7, patients=patients)
    stream = payload_stream(world, random.Random(7))
    topics = Settings().topics
    messages: list[SimulatedMessage] = []
    # Cloud commands go to `dusun_sub`, which the flow does not subscribe to by default.
    for message in stream:
        if any(mqtt.topic_matches_sub(t, message.topic) for t in topics):
            messages.append(message)
            if len(messages) == count:
                return world, messages
    raise AssertionError("unreachable: the stream is endless")


def delivery_ids(messages: list[SimulatedMessage]) -> list[str]:
    """Return each message's event-id prefix: the flow numbers repeats, `<id>/d<n>`."""
    copies: Counter[str] = Counter()
    ids = []
    for message in messages:
        message_id = fingerprint(message.topic, message.payload)
        copies[message_id] += 1
        n = copies[message_id]
        ids.append(message_id if n == 1 else f"{message_id}/d{n}")
    return ids


def seed(db: Database[dict[str, Any]], world: Roster) -> None:
    """Register the roster's patients and devices: what `vitalflow seed` writes."""
    write_roster(db, world)


def bench_pure_stages(messages: list[SimulatedMessage]) -> str:
    clock = ClockRule.from_settings(Settings())
    thresholds = Thresholds.load(None)
    now = datetime.now(UTC)
    started = time.perf_counter()
    readings = 0
    for message in messages:
        try:
            parsed = parse_payload(message.topic, message.payload, now, clock)
        except Exception:
            continue
        for reading in parsed.readings:
            enrich_reading(reading, thresholds)
            readings += 1
    elapsed = time.perf_counter() - started
    rate = len(messages) / elapsed
    print(
        f"parse+enrich in-process: {len(messages)} messages, {readings} readings in "
        f"{elapsed:.3f} s = {rate:,.0f} msg/s"
    )
    return f"{rate:,.0f} msg/s"


# Past this, the local Mosquitto holds many queued messages for sessions nobody reads.
STALE_BROKER_BYTES = 16 * 1024 * 1024


def warn_of_stale_sessions() -> None:
    """Say so when the local Mosquitto's saved database is large: the figures would suffer.

    A flow or benchmark killed before it forgot its persistent session leaves Mosquitto
    queueing every later device message for it, and Mosquitto saves its whole database every
    5 s; at 180 MB each save stalled delivery for up to a second and publish -> stored p99 at
    1,000 msg/s went past 1 s (2026-12-03).
    """
    default = Path(__file__).resolve().parents[2] / "deploy/local/.run"
    run_dir = Path(os.environ.get("VITALFLOW_LOCAL_RUN_DIR", default))
    saved = run_dir / "mosquitto/data/mosquitto.db"
    if saved.exists() and saved.stat().st_size > STALE_BROKER_BYTES:
        print(
            f"WARNING: {saved} is {saved.stat().st_size / 2**20:.0f} MiB: stale MQTT sessions "
            "queue device messages and Mosquitto's saves stall it; for comparable figures "
            "run on purged services (deploy/local/down --purge && deploy/local/up)"
        )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def tail_by_second(
    events: list[SeenEvent], published: dict[str, float], first_published: float
) -> str:
    """Return publish -> stored p99 per second of publishing: where in the run the tail is."""
    by_second: dict[int, list[float]] = {}
    for e in events:
        if e.step == LAST_STEP and e.status == "success" and e.delivery in published:
            second = int(published[e.delivery] - first_published)
            by_second.setdefault(second, []).append(e.event_time - published[e.delivery])
    return "publish -> stored p99 by second of publishing, ms: " + " ".join(
        f"{1000 * percentile(v, 99):,.0f}" for _, v in sorted(by_second.items())
    )


def stage_breakdown(events: list[SeenEvent], published: dict[str, float]) -> str:
    """Return p50/p99 of each stretch of the stored chains: where their latency is spent.

    Each step event's `time` is when its stage decided (step 1: when paho handed the message
    over; ms resolution), so consecutive steps bound what happened in between.
    """
    times: dict[str, dict[str, float]] = {}
    for e in events:
        if e.delivery in published:
            times.setdefault(e.delivery, {})[e.step] = e.event_time
    stretches: dict[str, list[float]] = {}
    points = (
        ("publish", None),
        ("received", "1_mqtt_received"),
        ("parsed", "2_payload_parsed"),
        ("looked up", "3_patient_lookup"),
        ("stored", LAST_STEP),
    )
    for delivery, steps in times.items():
        if LAST_STEP not in steps:
            continue
        for (before, first), (after, second) in itertools.pairwise(points):
            start = published[delivery] if first is None else steps.get(first)
            end = steps.get(second) if second is not None else None
            if start is not None and end is not None:
                stretches.setdefault(f"{before} -> {after}", []).append(1000 * (end - start))
    return "stretches of the stored chains, p50/p99 ms: " + ", ".join(
        f"{name} {percentile(v, 50):,.0f}/{percentile(v, 99):,.0f}" for name, v in stretches.items()
    )


def latency_line(label: str, seconds: list[float]) -> str:
    ms = [1000 * s for s in seconds]
    if not ms:
        return f"{label}: no samples"
    return (
        f"{label}: p50 {percentile(ms, 50):,.0f} ms, p95 {percentile(ms, 95):,.0f} ms, "
        f"p99 {percentile(ms, 99):,.0f} ms, max {max(ms):,.0f} ms ({len(ms)} deliveries)"
    )


class Bench:
    """The services, the traffic, and the runs made on them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="vf-bench-"))
        self.world, self.messages = simulated_messages(args.patients, args.messages)
        self.results: list[RunResult] = []
        self.databases: list[str] = []
        families = Counter(m.family for m in self.messages)
        categories = Counter(m.category for m in self.messages)
        registered = len(device_documents(self.world, datetime.now(UTC)))
        print(
            f"traffic: {len(self.messages)} messages from {args.patients} patients "
            f"({registered} registered device identifiers); families "
            + ", ".join(f"{k} {v}" for k, v in families.most_common())
            + "; categories "
            + ", ".join(f"{k} {v}" for k, v in categories.most_common())
        )

    # --- one flow run -------------------------------------------------------------------------

    def new_flow(self, epoch: float, workers: int = 1) -> FlowUnderTest:
        args = self.args
        uid = f"bench{uuid.uuid4().hex[:8]}"
        # A recovery directory (and logs) per run: Bytewax's store belongs to one flow's keys.
        workdir = self.workdir / uid
        workdir.mkdir()
        flow = FlowUnderTest(
            args.mqtt_url,
            args.mongo_url,
            args.kafka,
            uid,
            workdir,
            epoch_interval=epoch,
            workers=workers,
            # One MQTT partition per worker (a shared subscription), so every worker parses
            # its own share instead of all parsing landing on the worker owning the only one.
            partitions=workers,
            extra_env=dict(setting.split("=", 1) for setting in args.flow_env),
        )
        self.databases.append(flow.db_name)
        started = time.perf_counter()
        seed(flow.db, self.world)
        print(f"  seeded {flow.db_name} in {time.perf_counter() - started:.1f} s")
        ensure_topics(args.kafka, {flow.steps_topic: STEPS_PARTITIONS}, TIMED_TOPIC)
        ensure_topics(args.kafka, {flow.dlq_topic: 1})
        flow.prepare_session()
        return flow

    def watch(self, flow: FlowUnderTest, messages: list[SimulatedMessage]) -> StepWatcher:
        watcher = StepWatcher(
            flow.kafka_bootstrap,
            flow.steps_topic,
            STEPS_PARTITIONS,
            flow.workdir,
            {*delivery_ids(messages), WARM_UP_ID},
        )
        watcher.start()
        return watcher

    def meter(self) -> CpuMeter:
        meter = CpuMeter()
        for name, process in service_processes().items():
            meter.add(name, process.pid)
        meter.add("benchmark (publisher, checks)", os.getpid())
        return meter

    def wait_for_chains(
        self, flow: FlowUnderTest, watcher: StepWatcher, count: int, profile: Profile | None
    ) -> None:
        """Wait until `count` chains ended; start the profile once the first event is out."""
        deadline = time.monotonic() + self.args.timeout
        last_progress, last_count = time.monotonic(), -1
        while watcher.ended < count:
            flow.assert_running()
            if profile is not None and profile.process is None and watcher.ended > 0:
                assert flow.process is not None
                profile.start(flow.process.pid, self.args.profile_seconds)
            if watcher.ended != last_count:
                last_progress, last_count = time.monotonic(), watcher.ended
            if time.monotonic() > deadline:
                msg = f"{watcher.ended} of {count} chains ended in {self.args.timeout} s"
                raise TimeoutError(msg)
            if time.monotonic() - last_progress > 60:
                print(f"  (no chain ended for 60 s; {watcher.ended} of {count} so far)")
                last_progress = time.monotonic()
            time.sleep(0.05)

    def check(
        self,
        flow: FlowUnderTest,
        events: list[SeenEvent],
        messages: list[SimulatedMessage],
        extra_deliveries: tuple[str, ...] = (),
    ) -> str:
        """Return a line saying whether anything was lost or doubled.

        Only this run's deliveries count: the flow's session also receives whatever other
        programs publish to the device topics meanwhile (other tests, a simulator).
        """
        ours = {*delivery_ids(messages), *extra_deliveries}
        foreign = {e.delivery for e in events if e.delivery not in ours}
        events = [e for e in events if e.delivery in ours]
        ids = Counter(e.id for e in events)
        repeated = sum(n - 1 for n in ids.values() if n > 1)
        chains: dict[str, list[SeenEvent]] = {}
        for event in events:
            chains.setdefault(event.delivery, []).append(event)
        ended = sum(1 for chain in chains.values() if any(e.ends_chain for e in chain))
        stored_chains = [
            chain
            for chain in chains.values()
            if any(e.step == LAST_STEP and e.status == "success" for e in chain)
        ]
        five = sum(1 for c in stored_chains if len({e.step for e in c}) == 5)
        outcomes = Counter(
            f"{e.step}:{e.status}" for e in events if e.ends_chain and e.step != LAST_STEP
        )
        expected_stored = sum(m.expected_readings for m in messages)
        message_ids = sorted({fingerprint(m.topic, m.payload) for m in messages})
        stored = sum(
            flow.db.observations.count_documents({"message_id": {"$in": message_ids[i : i + 5000]}})
            for i in range(0, len(message_ids), 5000)
        )
        verdict = (
            "nothing lost or doubled"
            if (
                len(chains) == ended == len(ours)
                and repeated == 0
                and stored == expected_stored
                and five == len(stored_chains)
            )
            else "MISMATCH"
        )
        return (
            f"  check: {len(chains)} chains for {len(ours)} deliveries, {ended} ended, "
            f"{repeated} event ids repeated; {len(stored_chains)} chains stored, {five} of them "
            f"with all five step events; observations {stored} stored of {expected_stored} "
            f"expected: {verdict}\n"
            "  other chain ends: "
            + ", ".join(f"{k} {v}" for k, v in outcomes.most_common())
            + (f"; {len(foreign)} foreign deliveries (not ours) ignored" if foreign else "")
        )

    def throughput_run(self, epoch: float, workers: int = 1) -> None:
        name = f"throughput, epoch {epoch} s" + (f", {workers} workers" if workers > 1 else "")
        print(f"\n== vitalflow {name}: {len(self.messages)} messages queued first ==")
        flow = self.new_flow(epoch, workers)
        started = time.perf_counter()
        publish(flow.mqtt_url, [(m.topic, m.payload) for m in self.messages])
        print(
            f"  published {len(self.messages)} at QoS 1 into the flow's session in "
            f"{time.perf_counter() - started:.1f} s"
        )
        watcher = self.watch(flow, self.messages)
        meter = self.meter()
        meter.add("step watcher (Kafka consumer)", watcher.pid)
        profile = self.new_profile(f"flow-throughput-{epoch}")
        try:
            meter.start()
            wall_start = time.time()
            flow.start()
            assert flow.process is not None
            meter.add("vitalflow run", flow.process.pid, from_zero=True)
            self.wait_for_chains(flow, watcher, len(self.messages), profile)
            meter.stop()
        finally:
            flow.stop()
        events = watcher.stop()
        total = max(e.visible_at for e in events) - wall_start
        first = min(e.visible_at for e in events)
        steady = max(e.visible_at for e in events) - first
        count = len(self.messages)
        print(
            f"  every chain ended {total:.1f} s after the flow was started = "
            f"{count / total:,.0f} msg/s including start-up; first event to last chain end "
            f"{steady:.1f} s = {count / steady:,.0f} msg/s"
        )
        print(self.check(flow, events, self.messages))
        print("  CPU during the run:")
        print(meter.report())
        print(f"    {meter.per_message(count)}")
        if profile is not None:
            print("  profile of the flow:")
            print(profile.summary())
        self.results.append(
            RunResult(
                f"vitalflow {name}",
                {
                    "msg/s (first event to last chain end)": f"{count / steady:,.0f}",
                    "msg/s (incl. start-up)": f"{count / total:,.0f}",
                },
                f"{meter.headline()}\n    {meter.per_message(count)}",
            )
        )

    def cluster_throughput_run(self, epoch: float, processes: int) -> None:
        """Throughput of a cluster of `processes` OS processes (one MQTT partition each)."""
        name = f"throughput, epoch {epoch} s, {processes} processes"
        print(f"\n== vitalflow {name}: {len(self.messages)} messages queued first ==")
        flow = self.new_flow(epoch)
        cluster = ClusterUnderTest(flow, partitions=processes, recovery_partitions=processes)
        # new_flow made the one-process session (plain subscriptions); the cluster's
        # partitions share one group instead, or mqtt-0 would get every message as well.
        flow.forget_sessions()
        cluster.prepare_sessions()
        started = time.perf_counter()
        publish(flow.mqtt_url, [(m.topic, m.payload) for m in self.messages])
        print(
            f"  published {len(self.messages)} at QoS 1 into the flow's {processes} sessions in "
            f"{time.perf_counter() - started:.1f} s"
        )
        watcher = self.watch(flow, self.messages)
        meter = self.meter()
        meter.add("step watcher (Kafka consumer)", watcher.pid)
        try:
            meter.start()
            wall_start = time.time()
            cluster.start(processes)
            for process_id, process in enumerate(cluster.processes):
                meter.add(f"vitalflow run, process {process_id}", process.pid, from_zero=True)
            deadline = time.monotonic() + self.args.timeout
            while watcher.ended < len(self.messages):
                cluster.assert_running()
                if time.monotonic() > deadline:
                    msg = f"{watcher.ended} of {len(self.messages)} chains ended"
                    raise TimeoutError(msg)
                time.sleep(0.05)
            received = [cluster.received_by_partition(p) for p in range(processes)]
            meter.stop()
        finally:
            cluster.stop()
        events = watcher.stop()
        total = max(e.visible_at for e in events) - wall_start
        steady = max(e.visible_at for e in events) - min(e.visible_at for e in events)
        count = len(self.messages)
        print(
            f"  every chain ended {total:.1f} s after the cluster was started = "
            f"{count / total:,.0f} msg/s including start-up; first event to last chain end "
            f"{steady:.1f} s = {count / steady:,.0f} msg/s"
        )
        print(f"  MQTT deliveries by process and partition: {received}")
        print(self.check(flow, events, self.messages))
        print("  CPU during the run:")
        print(meter.report())
        print(f"    {meter.per_message(count)}")
        self.results.append(
            RunResult(
                f"vitalflow {name}",
                {
                    "msg/s (first event to last chain end)": f"{count / steady:,.0f}",
                    "msg/s (incl. start-up)": f"{count / total:,.0f}",
                },
                f"{meter.headline()}\n    {meter.per_message(count)}",
            )
        )

    def latency_run(self, epoch: float, rate: float, workers: int = 1) -> None:
        count = min(len(self.messages), max(1, int(rate * self.args.rate_seconds)))
        messages = self.messages[:count]
        name = f"latency at {rate:g} msg/s, epoch {epoch} s" + (
            f", {workers} workers" if workers > 1 else ""
        )
        print(f"\n== vitalflow {name}: {count} messages over ~{count / rate:.0f} s ==")
        flow = self.new_flow(epoch, workers)
        watcher = self.watch(flow, messages)
        meter = self.meter()
        meter.add("step watcher (Kafka consumer)", watcher.pid)
        profile = self.new_profile(f"flow-rate-{rate:g}-{epoch}-w{workers}")
        published: dict[str, float] = {}
        try:
            flow.start()
            assert flow.process is not None
            publish(flow.mqtt_url, [WARM_UP])
            self.wait_for_chains(flow, watcher, 1, None)
            meter.add("vitalflow run", flow.process.pid)
            meter.start()
            if profile is not None:
                profile.start(flow.process.pid, self.args.profile_seconds)
            publish_at_rate = (
                self.publish_at_rate if self.args.publisher == "paho" else self.raw_publish_at_rate
            )
            achieved = publish_at_rate(flow.mqtt_url, messages, rate, published)
            print(f"  published {count} at {achieved:,.0f} msg/s (asked {rate:g})")
            self.wait_for_chains(flow, watcher, 1 + count, None)
            meter.stop()
        finally:
            flow.stop()
        events = watcher.stop()
        to_stored = [
            e.event_time - published[e.delivery]
            for e in events
            if e.step == LAST_STEP and e.status == "success" and e.delivery in published
        ]
        to_kafka = [
            e.visible_at - published[e.delivery]
            for e in events
            if e.step == LAST_STEP and e.status == "success" and e.delivery in published
        ]
        to_end = [
            e.visible_at - published[e.delivery]
            for e in events
            if e.ends_chain and e.delivery in published
        ]
        lines = [
            latency_line("publish -> stored (step-5 time)", to_stored),
            latency_line("publish -> step 5 visible on Kafka", to_kafka),
            latency_line("publish -> any chain end visible on Kafka", to_end),
        ]
        lines.append(stage_breakdown(events, published))
        first_published = min(published.values())
        lines.append(tail_by_second(events, published, first_published))
        last_end = max(e.visible_at for e in events if e.delivery in published)
        drained = count / (last_end - first_published)
        lines.append(
            f"flow kept up: every chain ended within {last_end - first_published:.1f} s of the "
            "first publish"
            if drained >= 0.9 * achieved
            else f"flow FELL BEHIND: drained {drained:,.0f} msg/s against {achieved:,.0f} "
            "published (latency grows with the run's length: it is throughput-bound)"
        )
        for line in lines:
            print(f"  {line}")
        print(self.check(flow, events, messages, extra_deliveries=(WARM_UP_ID,)))
        print("  CPU while publishing and draining:")
        print(meter.report())
        if profile is not None:
            print("  profile of the flow:")
            print(profile.summary())
        self.results.append(
            RunResult(
                f"vitalflow {name}",
                {
                    "to stored p50/p95/p99 ms": "/".join(
                        f"{1000 * percentile(to_stored, p):,.0f}" for p in (50, 95, 99)
                    ),
                    "to step 5 on Kafka p50/p95/p99 ms": "/".join(
                        f"{1000 * percentile(to_kafka, p):,.0f}" for p in (50, 95, 99)
                    ),
                },
                meter.headline(),
                epoch=epoch,
                rate=rate,
                stored_ms=(1000 * percentile(to_stored, 50), 1000 * percentile(to_stored, 99)),
            )
        )

    @staticmethod
    def publish_at_rate(
        url: str, messages: list[SimulatedMessage], rate: float, published: dict[str, float]
    ) -> float:
        """Publish on a fixed schedule; note each delivery's publish time by its event prefix."""
        target = MqttTarget.from_url(url)
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311
        )
        client.max_queued_messages_set(0)
        client.connect(target.host, target.port)
        client.loop_start()
        infos = []
        try:
            started = time.perf_counter()
            for index, (message, delivery) in enumerate(
                zip(messages, delivery_ids(messages), strict=True)
            ):
                due = started + index / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                published[delivery] = time.time()
                infos.append(client.publish(message.topic, message.payload, qos=1))
            elapsed = time.perf_counter() - started
            for info in infos:
                info.wait_for_publish(timeout=30)
        finally:
            client.disconnect()
            client.loop_stop()
        return len(messages) / elapsed if elapsed > 0 else float("inf")

    @staticmethod
    def raw_publish_at_rate(
        url: str, messages: list[SimulatedMessage], rate: float, published: dict[str, float]
    ) -> float:
        """`publish_at_rate` through `raw_publisher` (the default: far less of the CPU)."""
        target = MqttTarget.from_url(url)
        deliveries = delivery_ids(messages)
        client = RawPublisher(target.host, target.port, f"vf-bench-pub-{uuid.uuid4().hex[:8]}")
        try:

            def sent(index: int, at: float) -> None:
                published[deliveries[index]] = at

            achieved = client.publish_at_rate([(m.topic, m.payload) for m in messages], rate, sent)
            if not client.wait_for_acks(len(messages)):
                msg = f"the broker acknowledged {client.acked} of {len(messages)} messages"
                raise RuntimeError(msg)
        finally:
            client.close()
        return achieved

    def new_profile(self, label: str) -> Profile | None:
        if not self.args.profile:
            return None
        return Profile(self.workdir / f"{label}.pyspy.txt")

    # --- the baseline -------------------------------------------------------------------------

    def naive_run(self) -> None:
        count = min(len(self.messages), self.args.baseline_messages or len(self.messages))
        messages = self.messages[:count]
        print(f"\n== baseline: naive per-message listener, {count} messages queued first ==")
        uid = uuid.uuid4().hex[:8]
        db_name = f"vf_bench_naive_{uid}"
        self.databases.append(db_name)
        db = MongoClient(self.args.mongo_url, tz_aware=True)[db_name]
        seed(db, self.world)
        topic = f"bench.naive.{uid}"
        ensure_topics(self.args.kafka, {topic: 1})
        client_id = f"vf-bench-naive-{uid}"
        mqtt_session(self.args.mqtt_url, client_id, clean=False)
        publish(self.args.mqtt_url, [(m.topic, m.payload) for m in messages])
        result_file = self.workdir / f"naive-{uid}.json"
        meter = self.meter()
        meter.start()
        started = time.time()
        process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("naive_listener.py")),
                "--mqtt-url", self.args.mqtt_url, "--client-id", client_id,
                "--mongo-url", self.args.mongo_url, "--db", db_name,
                "--kafka", self.args.kafka, "--topic", topic,
                "--expect", str(count), "--result", str(result_file),
            ],
            preexec_fn=die_with_parent,
        )  # fmt: skip
        meter.add("naive listener", process.pid, from_zero=True)
        try:
            while process.poll() is None:
                meter.stop()  # the last reading before it exits is the one reported
                time.sleep(0.2)
                if time.time() - started > self.args.timeout:
                    process.kill()
                    msg = f"the naive listener did not finish in {self.args.timeout} s"
                    raise TimeoutError(msg)
        finally:
            mqtt_session(self.args.mqtt_url, client_id, clean=True)
        outcome = json.loads(result_file.read_text())
        total = outcome["last_at"] - started
        steady = outcome["last_at"] - outcome["first_at"]
        expected = sum(m.expected_readings for m in messages)
        stored = db.observations.count_documents({})
        print(
            f"  handled {outcome['handled']} messages {total:.1f} s after start = "
            f"{count / total:,.0f} msg/s including start-up; first message to last "
            f"{steady:.1f} s = {count / steady:,.0f} msg/s; observations {stored} stored of "
            f"{expected} expected"
        )
        print("  CPU during the run:")
        print(meter.report())
        self.results.append(
            RunResult(
                "naive per-message listener",
                {
                    "msg/s (first event to last chain end)": f"{count / steady:,.0f}",
                    "msg/s (incl. start-up)": f"{count / total:,.0f}",
                },
                meter.headline(),
            )
        )

    # --- the end ------------------------------------------------------------------------------

    def summary(self) -> None:
        print("\n== summary ==")
        print(
            f"{len(self.messages)} messages, {self.args.patients} patients; measured on "
            "this machine with the services on the same 2 cores"
        )
        naive = next((r for r in self.results if r.name.startswith("naive")), None)
        key = "msg/s (first event to last chain end)"
        for result in self.results:
            figures = "; ".join(f"{k} {v}".strip() for k, v in result.figures.items())
            if naive is not None and key in result.figures and result is not naive:
                multiple = float(result.figures[key].replace(",", "")) / float(
                    naive.figures[key].replace(",", "")
                )
                figures += f"; {multiple:.1f}x the naive listener"
            print(f"- {result.name}: {figures}")
            if result.bound_by:
                print(f"    CPU: {result.bound_by}")
        for rate in self.args.rate:
            runs = [r for r in self.results if r.rate == rate and r.stored_ms is not None]
            if len(runs) < 2:
                continue
            print(
                f"- what the epoch costs at {rate:g} msg/s (publish -> stored p50 / p99): "
                + ", ".join(
                    f"epoch {r.epoch:g} s {r.stored_ms[0]:,.0f} / {r.stored_ms[1]:,.0f} ms"
                    for r in runs
                    if r.stored_ms is not None
                )
                + " (the flow acks MQTT once an epoch closes and commits a recovery snapshot "
                "at each close)"
            )
        print(
            "  CPU of the services includes whatever else used them meanwhile (other tests); "
            "'everything else on the machine' is CPU no process listed here used."
        )

    def drop_databases(self) -> None:
        client: MongoClient[dict[str, Any]] = MongoClient(self.args.mongo_url)
        for name in self.databases:
            client.drop_database(name)


def mqtt_session(url: str, client_id: str, *, clean: bool) -> None:
    """Create (clean=False) or forget (clean=True) a persistent session subscribed to devices."""
    target = MqttTarget.from_url(url)
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=mqtt.MQTTv311,
    )
    client.connect(target.host, target.port)
    client.loop_start()
    if not clean:
        client.subscribe([(t, 1) for t in DEFAULT_TOPICS.split(",")])
        time.sleep(0.3)
    client.disconnect()
    client.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000, help="messages per throughput run")
    parser.add_argument("--patients", type=int, default=1000, help="distinct patients")
    parser.add_argument(
        "--epoch-interval", type=float, nargs="+", default=[1.0], help="seconds; one run each"
    )
    parser.add_argument(
        "--rate", type=float, nargs="*", default=[], help="fixed-rate latency runs, msg/s"
    )
    parser.add_argument(
        "--rate-seconds", type=float, default=20.0, help="how long each fixed-rate run publishes"
    )
    parser.add_argument("--no-throughput", action="store_true", help="only the fixed-rate runs")
    parser.add_argument(
        "--publisher",
        choices=["raw", "paho"],
        default="raw",
        help="fixed-rate publisher: raw (pre-encoded packets, lean) or paho (as before 2026-12-03)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1],
        help="throughput runs as a Bytewax cluster of N OS processes (one MQTT partition each)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        help="runs of one process with N Bytewax workers (threads), N MQTT partitions",
    )
    parser.add_argument("--baseline", choices=["naive"], help="also run the naive listener")
    parser.add_argument(
        "--baseline-messages", type=int, default=0, help="cap the baseline's messages (0: all)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the flow in each run")
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per run, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the runs' databases")
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--mongo-url", default="mongodb://127.0.0.1:27017")
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument(
        "--flow-env",
        action="append",
        default=[],
        metavar="VITALFLOW_NAME=VALUE",
        help="a setting for every flow run (repeatable), e.g. VITALFLOW_MQTT_BATCH_SIZE=250",
    )
    args = parser.parse_args()
    for setting in args.flow_env:
        name, sep, _value = setting.partition("=")
        if not sep or not name.startswith("VITALFLOW_"):
            parser.error(f"--flow-env takes VITALFLOW_NAME=VALUE, not {setting!r}")

    warn_of_stale_sessions()
    bench = Bench(args)
    parse_rate = bench_pure_stages(bench.messages)
    bench.results.append(RunResult("parse + enrich in-process (one thread)", {"": parse_rate}))
    try:
        if not args.no_throughput:
            for epoch in args.epoch_interval:
                for processes in args.processes:
                    if processes == 1:
                        for workers in args.workers:
                            bench.throughput_run(epoch, workers)
                    else:
                        bench.cluster_throughput_run(epoch, processes)
        for epoch in args.epoch_interval:
            for rate in args.rate:
                for workers in args.workers:
                    bench.latency_run(epoch, rate, workers)
        if args.baseline == "naive":
            bench.naive_run()
        bench.summary()
    finally:
        if not args.keep:
            bench.drop_databases()


if __name__ == "__main__":
    main()
