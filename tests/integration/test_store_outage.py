"""The database goes away mid-stream and comes back: nothing lost, nothing doubled, no errors.

A private mongo-java-server (the program `deploy/local/up` runs as the `mongo` service) on a
port of its own, stopped while the flow is storing and started again on the same H2 file.
Writes and lookups wait the outage out with backoff; the source acks nothing meanwhile, so the
broker keeps everything. An outage must not turn readings into step-5 errors or dead letters.
"""

from __future__ import annotations

import signal
import time

import pytest
from pipeline_harness import (
    FlowUnderTest,
    bp_message,
    publish,
    read_topic,
    register_bp_patient,
    wait_for,
)
from private_mongo import PrivateMongoServer

pytestmark = pytest.mark.integration


def test_a_database_outage_mid_stream_loses_nothing_and_fails_nothing(
    private_mongo: PrivateMongoServer, flow: FlowUnderTest
) -> None:
    flow.mongo_url = private_mongo.url
    db = flow.db
    register_bp_patient(db, "outage-patient")
    flow.prepare_session()
    flow.start()
    publish(flow.mqtt_url, [bp_message(n) for n in range(40)])
    wait_for(lambda: db.observations.count_documents({}) >= 80, 60, flow, "the first 40")

    private_mongo.stop()
    publish(flow.mqtt_url, [bp_message(n) for n in range(40, 100)])
    time.sleep(8)  # the flow tries, waits and retries meanwhile
    flow.assert_running()
    private_mongo.start()

    wait_for(lambda: db.observations.count_documents({}) >= 200, 120, flow, "all 100")
    time.sleep(2)
    assert db.observations.count_documents({}) == 200
    assert len(db.observations.distinct("message_id")) == 100
    events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
    assert [e["data"]["step"] for e in events if e["data"]["status"] == "error"] == []
    stored = [e for e in events if e["data"]["step"] == "5_medical_stored"]
    assert len({e["data"]["message_id"] for e in stored}) == 100
    assert read_topic(flow.kafka_bootstrap, flow.dlq_topic) == []
    assert "failed (" in flow.logs(), "the outage was not noticed"


def test_a_store_that_stops_answering_is_reported_while_it_hangs_and_nothing_is_lost(
    private_mongo: PrivateMongoServer, flow: FlowUnderTest
) -> None:
    # SIGSTOP keeps the server's sockets open but answers nothing: the way a wedged server
    # looks to a client. The flow must say so while it waits, then carry on.
    flow.mongo_url = private_mongo.url
    flow.extra_env["VITALFLOW_MONGO_TIMEOUT_SECONDS"] = "8"
    db = flow.db
    register_bp_patient(db, "hung-patient")
    flow.prepare_session()
    flow.start()
    publish(flow.mqtt_url, [bp_message(n) for n in range(20)])
    wait_for(lambda: db.observations.count_documents({}) >= 40, 60, flow, "the first 20")

    assert private_mongo.process is not None
    private_mongo.process.send_signal(signal.SIGSTOP)
    try:
        publish(flow.mqtt_url, [bp_message(n) for n in range(20, 60)])
        wait_for(lambda: "still waiting after" in flow.logs(), 30, flow, "a hung-call warning")
        flow.assert_running()
    finally:
        private_mongo.process.send_signal(signal.SIGCONT)

    wait_for(lambda: db.observations.count_documents({}) >= 120, 120, flow, "all 60")
    time.sleep(2)
    assert db.observations.count_documents({}) == 120
    logs = flow.logs()
    warning = next(line for line in logs.splitlines() if "still waiting after" in line)
    assert f"127.0.0.1:{private_mongo.port}" in warning, warning
    events = read_topic(flow.kafka_bootstrap, flow.steps_topic)
    assert [e["data"]["step"] for e in events if e["data"]["status"] == "error"] == []
