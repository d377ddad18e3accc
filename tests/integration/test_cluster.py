"""A real 2-process Bytewax cluster: kill -9 one process mid-stream, restart, then rescale.

Two `vitalflow run` processes on loopback addresses form one cluster over three MQTT
partitions (a shared subscription), each with a recovery directory of its own as a pod has its
own volume (process 0 holds the recovery partitions). Both ingest; one is killed with
`kill -9` while messages flow; the cluster is started again, and every reading must be stored
exactly once with its whole step chain. Then the state written by 2 processes resumes under 1
and under 3: a copy of a message delivered before the rescale must come out as a duplicate
(the de-dup state found its way to the new owner of its device) and store nothing.
The counts are printed for the record.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from pipeline_harness import (
    ClusterUnderTest,
    FlowUnderTest,
    publish,
    read_topic,
    terminal_count,
    wait_for,
)

from flows.commands.seed import write_roster
from flows.model import fingerprint
from flows.settings import Settings
from flows.simulator.device_roster import roster
from flows.simulator.payload_factory import payload_stream, simulated_clock
from flows.simulator.simulated_message import SimulatedMessage

MESSAGES = 1200
RATE = 150.0
STEPS = ("1_mqtt_received", "2_payload_parsed", "3_patient_lookup", "4_patient_updated")


@pytest.fixture
def cluster(flow: FlowUnderTest) -> Iterator[ClusterUnderTest]:
    under_test = ClusterUnderTest(flow)
    yield under_test
    under_test.stop()


def _valid_messages(count: int, seed: int) -> tuple[Any, list[SimulatedMessage]]:
    world = roster(seed=seed, patients=12)
    stream = payload_stream(
        world,
        random.Random(seed),
        clock=simulated_clock(datetime.now(UTC).replace(microsecond=0), 0.05),
        duplicate_fraction=0.0,
        malformed_fraction=0.0,
        unknown_fraction=0.0,
        sos_fraction=0.0,
    )
    subscribed = Settings().topics
    wanted = (
        m
        for m in stream
        if m.category == "valid"
        and m.expected_readings > 0
        and any(mqtt.topic_matches_sub(t, m.topic) for t in subscribed)
    )
    unique: dict[bytes, SimulatedMessage] = {}
    for m in wanted:
        unique.setdefault(m.topic.encode() + b"\0" + m.payload, m)
        if len(unique) == count:
            break
    return world, list(unique.values())


def _stored_counts(flow: FlowUnderTest) -> Counter[str]:
    return Counter(d["message_id"] for d in flow.db.observations.find({}, {"message_id": 1}))


def _events_since(flow: FlowUnderTest, seen_before: set[str]) -> list[dict[str, Any]]:
    # By id, not by position: the topic has several partitions, read one after the other.
    events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
    return [e for e in events if e["id"] not in seen_before]


def _chains_ended(flow: FlowUnderTest, seen_before: set[str], message_ids: set[str]) -> bool:
    ended = {
        e["data"]["message_id"] for e in _events_since(flow, seen_before) if terminal_count([e])
    }
    return message_ids <= ended


def _by_process(cluster: ClusterUnderTest) -> list[dict[str, float]]:
    return [cluster.received_by_partition(p) for p in range(len(cluster.processes))]


def test_two_process_cluster_survives_kill_9_and_rescales_to_1_and_3(
    flow: FlowUnderTest, cluster: ClusterUnderTest
) -> None:
    world, sent = _valid_messages(MESSAGES + 80, seed=23)
    sent, spare = sent[:MESSAGES], sent[MESSAGES:]
    ids = {fingerprint(m.topic, m.payload): m for m in sent}
    write_roster(flow.db, world)
    expected = {mid: m.expected_readings for mid, m in ids.items()}

    # --- crash: two processes ingest, one is killed with -9 mid-stream -------------------
    cluster.prepare_sessions()
    cluster.start(2)
    cluster.wait_connected()
    publisher = threading.Thread(
        target=publish, args=(flow.mqtt_url, [(m.topic, m.payload) for m in sent], RATE)
    )
    publisher.start()
    wait_for(
        lambda: flow.db.observations.count_documents({}) >= 400,
        90,
        None,
        f"storing to begin\n{cluster.logs()}",
    )
    cluster.assert_running()
    before_kill = _by_process(cluster)
    print(f"\ncluster: MQTT deliveries by process and partition before the kill: {before_kill}")
    assert all(sum(parts.values()) > 0 for parts in before_kill), before_kill
    cluster.kill(1)
    stored_at_kill = len(_stored_counts(flow))
    time.sleep(1.0)
    survivor_exited = cluster.processes[0].poll() is not None
    cluster.kill_all()  # the survivor cannot go on without its peer; Bytewax restarts whole
    cluster.start(2)
    cluster.wait_connected()
    publisher.join(timeout=120)
    wait_for(
        lambda: (
            sum(min(n, expected[m]) for m, n in _stored_counts(flow).items() if m in expected)
            >= sum(expected.values())
        ),
        240,
        None,
        f"every reading stored after the restart\n{cluster.logs()}",
    )
    time.sleep(3.0)  # a few more epochs: anything doubled would show up now
    cluster.assert_running()
    after_restart = _by_process(cluster)

    stored = _stored_counts(flow)
    lost = sum(max(0, expected[m] - stored.get(m, 0)) for m in expected)
    doubled_docs = sum(max(0, n - expected.get(m, 0)) for m, n in stored.items())
    events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
    stored_by = Counter(
        e["id"].rsplit("/", 1)[0]
        for e in events
        if e["data"]["step"] == "5_medical_stored" and e["data"]["status"] == "success"
    )
    stored_deliveries = Counter(prefix.split("/")[0] for prefix in stored_by)
    restored_twice = sum(1 for n in stored_deliveries.values() if n > 1)
    first_chains: dict[str, set[str]] = {}
    for e in events:
        if e["id"].count("/") == 1:
            first_chains.setdefault(e["data"]["message_id"], set()).add(e["data"]["step"])
    incomplete = [m for m in expected if first_chains.get(m, set()) < {*STEPS, "5_medical_stored"}]
    readings = sum(min(n, expected[m]) for m, n in stored.items() if m in expected)
    print(
        f"cluster crash: sent={len(sent)} messages ({sum(expected.values())} readings), "
        f"stored at the kill={stored_at_kill} messages, survivor exited by itself="
        f"{survivor_exited}; after the restart stored={readings} "
        f"readings, lost={lost}, doubled={doubled_docs} readings, stored by two deliveries="
        f"{restored_twice}, incomplete chains={len(incomplete)}, events={len(events)}"
    )
    print(f"cluster: MQTT deliveries by process and partition after the restart: {after_restart}")
    assert lost == 0 and doubled_docs == 0 and restored_twice == 0
    assert not incomplete, incomplete[:5]

    # --- rescale: the state of 2 processes resumes under 1, then under 3 ------------------
    old = list(ids.values())
    for count, copies, new in ((1, old[:20], spare[:40]), (3, old[20:40], spare[40:80])):
        time.sleep(2.0)  # epochs close and ack at rest: nothing in flight at the stop
        cluster.kill_all()
        cluster.start(count)
        cluster.wait_connected()
        before = read_topic(flow.kafka_bootstrap, flow.steps_topic)
        batch = [(m.topic, m.payload) for m in [*copies, *new]]
        publish(flow.mqtt_url, batch)
        sent_ids = {fingerprint(m.topic, m.payload) for m in [*copies, *new]}
        seen_before = {e["id"] for e in before}
        wait_for(
            partial(_chains_ended, flow, seen_before, sent_ids),
            120,
            None,
            f"{len(batch)} chains under {count} process(es)\n{cluster.logs()}",
        )
        cluster.assert_running()
        events = _events_since(flow, seen_before)
        copy_ids = {fingerprint(m.topic, m.payload) for m in copies}
        skipped = {
            e["data"]["message_id"]
            for e in events
            if e["data"]["status"] == "skipped" and e["data"]["reason"] == "duplicate"
        }
        new_ids = {fingerprint(m.topic, m.payload): m.expected_readings for m in new}
        stored = _stored_counts(flow)
        deliveries = _by_process(cluster)
        print(
            f"cluster rescale 2 -> {count}: copies sent={len(copies)} reported duplicate="
            f"{len(skipped & copy_ids)}; new sent={len(new)} stored="
            f"{sum(1 for m, n in new_ids.items() if stored.get(m) == n)}; "
            f"deliveries by process and partition: {deliveries}"
        )
        stored_again = {
            e["data"]["message_id"] for e in events if e["data"]["step"] == "5_medical_stored"
        }
        assert skipped == copy_ids
        assert not stored_again & copy_ids
        assert all(stored.get(m) == expected[m] for m in copy_ids)  # nothing stored twice
        assert all(stored.get(m) == n for m, n in new_ids.items())
        assert all(sum(parts.values()) > 0 for parts in deliveries), deliveries
        expected.update(new_ids)
    assert sum(_stored_counts(flow).values()) == sum(expected.values())
