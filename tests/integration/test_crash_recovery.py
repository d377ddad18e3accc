"""Crash test: kill -9 the flow mid-stream, restart it, and nothing is lost or doubled.

The MQTT source acks a message only once its epoch is durable, so everything the dead flow
had not finished is redelivered by the broker to the same persistent session; Bytewax
recovery restores the de-dup state and deterministic `_id`s make any re-written observation
a no-op. The figures (sent, stored, lost, doubled, re-processed) are printed for the record.
"""

from __future__ import annotations

import threading
import time

from pipeline_harness import (
    FlowUnderTest,
    bp_message,
    publish,
    read_topic,
    register_bp_patient,
    wait_for,
)

MESSAGES = 1500
RATE = 300.0


def test_kill_9_mid_stream_loses_nothing_and_doubles_nothing(flow: FlowUnderTest) -> None:
    db = flow.db
    register_bp_patient(db, "crash-patient")
    messages = [bp_message(n) for n in range(MESSAGES)]
    expected_docs = 2 * MESSAGES  # each BP reading also gives a heart-rate observation

    flow.prepare_session()
    flow.start()
    publisher = threading.Thread(target=publish, args=(flow.mqtt_url, messages, RATE))
    publisher.start()

    wait_for(lambda: db.observations.count_documents({}) >= 300, 60, flow, "storing to begin")
    flow.kill()
    stored_at_crash = db.observations.count_documents({})
    time.sleep(1.0)
    flow.start()
    publisher.join(timeout=60)

    wait_for(
        lambda: db.observations.count_documents({}) >= expected_docs,
        120,
        flow,
        f"{expected_docs} observations after the restart",
    )
    time.sleep(3.0)  # a few more epochs: anything doubled would show up now

    docs = list(db.observations.find({}, {"message_id": 1}))
    stored_messages = len({d["message_id"] for d in docs})
    events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
    stored_events = [e for e in events if e["data"]["step"] == "5_medical_stored"]
    reprocessed = len(stored_events) - len({e["data"]["message_id"] for e in stored_events})
    duplicates_skipped = sum(1 for e in events if e["data"]["reason"] == "duplicate")
    print(
        f"\ncrash test: sent={MESSAGES} messages ({expected_docs} observations), "
        f"stored_at_crash={stored_at_crash} observations, stored={stored_messages} messages "
        f"({len(docs)} observations), lost={MESSAGES - stored_messages}, "
        f"doubled={len(docs) - expected_docs}, re-processed after restart={reprocessed}, "
        f"redeliveries skipped as duplicates={duplicates_skipped}"
    )
    assert stored_messages == MESSAGES
    assert len(docs) == expected_docs
    assert stored_at_crash < expected_docs, "the kill came too late to test anything"


def test_a_message_is_acked_only_once_its_epoch_is_durable(flow: FlowUnderTest) -> None:
    db = flow.db
    register_bp_patient(db, "ack-patient")
    flow.epoch_interval = 30.0  # far longer than the test: the first epoch never closes
    flow.prepare_session()
    flow.start()
    messages = [bp_message(n) for n in range(40)]
    publish(flow.mqtt_url, messages)
    wait_for(lambda: db.observations.count_documents({}) >= 80, 60, flow, "all 40 stored")
    flow.kill()

    # Stored but not yet acked: the broker hands every one of them to the session again.
    redelivered = flow.redelivered_after_kill()
    assert sorted(redelivered) == sorted(payload for _, payload in messages)


def test_a_message_is_acked_once_its_epoch_has_closed(flow: FlowUnderTest) -> None:
    db = flow.db
    register_bp_patient(db, "ack-patient")
    flow.prepare_session()
    flow.start()
    publish(flow.mqtt_url, [bp_message(n) for n in range(40)])
    wait_for(lambda: db.observations.count_documents({}) >= 80, 60, flow, "all 40 stored")
    time.sleep(4 * flow.epoch_interval + 1)  # a few epochs close; the next batch acks them
    flow.kill()
    assert flow.redelivered_after_kill() == []
