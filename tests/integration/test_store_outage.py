"""The database goes away mid-stream and comes back: nothing lost, nothing doubled, no errors.

A private FerretDB (the binary `deploy/local/install` builds) on a port of its own, stopped
while the flow is storing and started again on the same data. Writes and lookups wait the
outage out with backoff; the source acks nothing meanwhile, so the broker keeps everything.
An outage must not turn readings into step-5 errors or dead letters.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_harness import (
    FlowUnderTest,
    bp_message,
    publish,
    read_topic,
    register_bp_patient,
    wait_for,
)
from pymongo import MongoClient
from test_broker_restart import free_port

pytestmark = pytest.mark.integration

FERRETDB = Path(__file__).resolve().parents[2] / "deploy/local/.cache/ferretdb/ferretdb-vitalflow"


class PrivateFerretDB:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.data = workdir / "ferretdb"
        self.data.mkdir()
        self.log = workdir / "ferretdb.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert FERRETDB.is_file(), f"{FERRETDB} missing: run deploy/local/install ferretdb"
        self.process = subprocess.Popen(
            [str(FERRETDB), "-listen", f"127.0.0.1:{self.port}", "-dir", str(self.data)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        client: MongoClient[dict[str, Any]] = MongoClient(self.url, serverSelectionTimeoutMS=15000)
        try:
            client.admin.command("ping")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=15)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PrivateFerretDB]:
    ferretdb = PrivateFerretDB(tmp_path)
    ferretdb.start()
    yield ferretdb
    ferretdb.stop()


def test_a_database_outage_mid_stream_loses_nothing_and_fails_nothing(
    store: PrivateFerretDB, flow: FlowUnderTest
) -> None:
    flow.mongo_url = store.url
    db = flow.db
    register_bp_patient(db, "outage-patient")
    flow.prepare_session()
    flow.start()
    publish(flow.mqtt_url, [bp_message(n) for n in range(40)])
    wait_for(lambda: db.observations.count_documents({}) >= 80, 60, flow, "the first 40")

    store.stop()
    publish(flow.mqtt_url, [bp_message(n) for n in range(40, 100)])
    time.sleep(8)  # the flow tries, waits and retries meanwhile
    flow.assert_running()
    store.start()

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
