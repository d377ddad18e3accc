"""Smoke tests: each local service is real and behaves as the pipeline relies on.

Every name is unique per run, so the tests pass again against the same long-lived services.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pymongo
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from pymongo.errors import BulkWriteError, DuplicateKeyError

TIMEOUT_S = 30


def _mqtt_client(
    services, client_id: str, *, clean_session: bool, manual_ack: bool = False
) -> tuple[mqtt.Client, dict]:
    """Connect a paho 2.x client (MQTT 3.1.1, network loop in a thread) and wait for CONNACK."""
    url = urlsplit(services.mqtt_url)
    state: dict = {
        "connected": threading.Event(),
        "subscribed": threading.Event(),
        "session_present": None,
        "messages": [],
        "lock": threading.Lock(),
    }

    def on_connect(client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        state["session_present"] = flags.session_present
        state["rc"] = reason_code
        state["connected"].set()

    def on_subscribe(client, userdata, mid, reason_codes, properties):  # type: ignore[no-untyped-def]
        state["granted"] = reason_codes
        state["subscribed"].set()

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        with state["lock"]:
            state["messages"].append((msg.topic, msg.payload, msg.qos))
            state.setdefault("mids", []).append(msg.mid)

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=30)
    client.loop_start()
    assert state["connected"].wait(TIMEOUT_S), "no CONNACK"
    assert not state["rc"].is_failure, state["rc"]
    return client, state


def _stop(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def test_mqtt_persistent_session_gets_messages_sent_while_offline(services, unique_id):
    topic = f"vitalflow/test/{unique_id}"
    subscriber_id = f"vf-test-sub-{unique_id}"

    # 1. A persistent session subscribes at QoS 1, then goes away.
    sub, state = _mqtt_client(services, subscriber_id, clean_session=False)
    assert state["session_present"] is False  # a brand-new session
    result, _ = sub.subscribe(topic, qos=1)
    assert result == mqtt.MQTT_ERR_SUCCESS
    assert state["subscribed"].wait(TIMEOUT_S), "no SUBACK"
    assert [rc.value for rc in state["granted"]] == [1]  # granted QoS 1
    # One message while online: the subscription works.
    pub, _ = _mqtt_client(services, f"vf-test-pub-{unique_id}", clean_session=True)
    pub.publish(topic, b"probe", qos=1).wait_for_publish(TIMEOUT_S)
    deadline = time.monotonic() + TIMEOUT_S
    while not state["messages"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state["messages"] == [(topic, b"probe", 1)]
    _stop(sub)

    # 2. Messages published while the subscriber is offline are queued by the broker.
    sent = [f"offline-{i}".encode() for i in range(50)]
    for payload in sent:
        info = pub.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT_S)
        assert info.is_published()
    _stop(pub)

    # 3. Reconnecting with the same client id resumes the session and gets them all, in order.
    sub2, state2 = _mqtt_client(services, subscriber_id, clean_session=False)
    try:
        assert state2["session_present"] is True
        deadline = time.monotonic() + TIMEOUT_S
        while len(state2["messages"]) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [m[1] for m in state2["messages"]] == sent
        assert {m[2] for m in state2["messages"]} == {1}
    finally:
        _stop(sub2)
        # Drop the session so the broker keeps nothing for this test.
        cleanup, _ = _mqtt_client(services, subscriber_id, clean_session=True)
        _stop(cleanup)


def test_mosquitto_lets_a_client_hold_many_unacked_messages(services, unique_id):
    """vitalflow acks only after storing: the broker must not stop at 20 in-flight messages."""
    topic = f"vitalflow/test/{unique_id}/inflight"
    sub, state = _mqtt_client(
        services, f"vf-test-inflight-{unique_id}", clean_session=True, manual_ack=True
    )
    pub, _ = _mqtt_client(services, f"vf-test-pub-{unique_id}", clean_session=True)
    try:
        sub.subscribe(topic, qos=1)
        assert state["subscribed"].wait(TIMEOUT_S), "no SUBACK"
        sent = [f"held-{i}".encode() for i in range(200)]
        for payload in sent:
            pub.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT_S)
        deadline = time.monotonic() + TIMEOUT_S
        while len(state["messages"]) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        # None acknowledged yet, and still all of them arrived (the default limit is 20).
        assert [m[1] for m in state["messages"]] == sent
        for mid in state["mids"]:
            sub.ack(mid, 1)
    finally:
        _stop(pub)
        _stop(sub)


def test_kafka_topic_produce_consume(services, unique_id):
    topic = f"vitalflow.test.smoke-{unique_id}"
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap, client_id="vf-test")
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=3, replication_factor=1)])
        # Metadata reaches every listener shortly after the controller commits the topic.
        deadline = time.monotonic() + TIMEOUT_S
        while topic not in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert topic in admin.list_topics()

        producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
        sent = [(f"device-{i % 4}".encode(), f"value-{i}".encode()) for i in range(30)]
        futures = [producer.send(topic, key=k, value=v) for k, v in sent]
        producer.flush(TIMEOUT_S)
        partition_of = {}
        for (key, _), future in zip(sent, futures, strict=True):
            meta = future.get(timeout=TIMEOUT_S)
            partition_of.setdefault(key, meta.partition)
            assert partition_of[key] == meta.partition  # a key always lands in one partition
        producer.close()

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=services.kafka_bootstrap,
            group_id=f"vf-test-{unique_id}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=1000,
        )
        received: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(received) < len(sent) and time.monotonic() < deadline:
            received.extend((r.key, r.value) for r in consumer)
        consumer.close()

        assert sorted(received) == sorted(sent)
        for key in partition_of:  # order is kept per key (per partition)
            assert [v for k, v in received if k == key] == [v for k, v in sent if k == key]
    finally:
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()


def test_mongo_insert_find_upsert_duplicate(services, unique_id):
    client: pymongo.MongoClient = pymongo.MongoClient(
        services.mongo_url, serverSelectionTimeoutMS=TIMEOUT_S * 1000
    )
    db_name = f"vf_test_{unique_id}"
    try:
        coll = client[db_name]["smoke"]
        coll.insert_one({"_id": "a", "n": 1, "tags": ["x"]})
        assert coll.find_one({"_id": "a"}) == {"_id": "a", "n": 1, "tags": ["x"]}

        result = coll.update_one({"_id": "b"}, {"$set": {"n": 2}}, upsert=True)
        assert result.upserted_id == "b"
        result = coll.update_one({"_id": "b"}, {"$set": {"n": 3, "k.v": "w"}}, upsert=True)
        assert result.matched_count == 1 and result.upserted_id is None
        assert coll.find_one({"_id": "b"}) == {"_id": "b", "n": 3, "k": {"v": "w"}}
        assert sorted(d["_id"] for d in coll.find({"n": {"$gte": 1}})) == ["a", "b"]

        with pytest.raises(DuplicateKeyError) as dup:
            coll.insert_one({"_id": "a", "n": 9})
        assert dup.value.code == 11000
        assert coll.find_one({"_id": "a"})["n"] == 1

        # Unordered bulk inserts report each duplicate and still insert the rest.
        with pytest.raises(BulkWriteError) as bulk:
            coll.insert_many([{"_id": "a"}, {"_id": "c"}, {"_id": "b"}], ordered=False)
        errors = bulk.value.details["writeErrors"]
        assert sorted(e["index"] for e in errors) == [0, 2]
        assert {e["code"] for e in errors} == {11000}
        assert coll.count_documents({}) == 3
    finally:
        client.drop_database(db_name)
        client.close()
