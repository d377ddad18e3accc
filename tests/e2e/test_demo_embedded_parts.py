"""The demo's embedded parts behave like the real services where vitalflow relies on them.

The store adapter is checked against montydb on disk with the exact write shapes of
`flows/store.py` and `flows/lookup_patient.py`; the broker with a paho client configured like
the flow's MQTT source (MQTT 3.1.1, persistent session, QoS 1, manual acks).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from connectors.embedded_broker import READY_PREFIX
from flows.parent_death import die_with_parent
from sinks.embedded_store import EmbeddedDatabase, open_embedded_database
from sinks.mongo_database import open_database

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedDatabase:
    return open_embedded_database(f"montydb://{tmp_path / 'store'}", "vitalflow")


def latest_vitals_update(
    patient_id: str, kind: str, measured_at: datetime, value: float
) -> UpdateOne:
    """The conditional update `flows/store.py` sends for a patient's latest reading."""
    field = f"last_vitals.{kind}"
    return UpdateOne(
        {
            "_id": patient_id,
            "$or": [{field: {"$exists": False}}, {f"{field}.measured_at": {"$lt": measured_at}}],
        },
        {"$set": {field: {"measured_at": measured_at, "values": {"value": value}}}},
    )


def test_open_database_gives_the_embedded_store_for_a_montydb_url(tmp_path: Path) -> None:
    db = open_database(f"montydb://{tmp_path / 'store'}", "vf")
    assert isinstance(db, EmbeddedDatabase)
    assert db.name == "vf"
    assert db.command("ping") == {"ok": 1.0}


def test_bulk_write_upserts_device_status_then_updates_it(store: EmbeddedDatabase) -> None:
    first = store.device_status.bulk_write(
        [
            UpdateOne(
                {"_id": "ble:D616F9641622"}, {"$set": {"battery": 90, "last_seen": T0}}, upsert=True
            )
        ],
        ordered=False,
    )
    second = store.device_status.bulk_write(
        [UpdateOne({"_id": "ble:D616F9641622"}, {"$set": {"battery": 80}}, upsert=True)],
        ordered=False,
    )
    assert (first.upserted_count, first.matched_count) == (1, 0)
    assert (second.upserted_count, second.matched_count, second.modified_count) == (0, 1, 1)
    assert store["device_status"].find_one({"_id": "ble:D616F9641622"}) == {
        "_id": "ble:D616F9641622",
        "battery": 80,
        "last_seen": T0,
    }


def test_latest_vitals_only_move_forward_in_time(store: EmbeddedDatabase) -> None:
    store.patients.insert_one({"_id": "p1", "hospital_id": "h1"})
    store.patients.bulk_write([latest_vitals_update("p1", "spo2", T0, 97)], ordered=False)
    older = store.patients.bulk_write(
        [latest_vitals_update("p1", "spo2", T0 - timedelta(minutes=5), 91)], ordered=False
    )
    newer = store.patients.bulk_write(
        [
            latest_vitals_update("p1", "spo2", T0 + timedelta(minutes=5), 98),
            latest_vitals_update("p1", "heart_rate", T0, 72),
        ],
        ordered=False,
    )
    assert older.matched_count == 0
    assert newer.matched_count == 2
    patient = store.patients.find_one({"_id": "p1"})
    assert patient is not None
    assert patient["last_vitals"]["spo2"]["values"] == {"value": 98}
    assert patient["last_vitals"]["heart_rate"]["values"] == {"value": 72}
    # The same type back as pymongo with tz_aware=True: comparable with aware datetimes.
    measured_at = patient["last_vitals"]["spo2"]["measured_at"]
    assert measured_at == T0 + timedelta(minutes=5)
    assert measured_at.utcoffset() == timedelta(0)


def test_unordered_insert_many_stores_the_rest_and_reports_duplicates(
    store: EmbeddedDatabase,
) -> None:
    store.observations.insert_many([{"_id": "o2", "kind": "spo2"}], ordered=False)
    with pytest.raises(BulkWriteError) as caught:
        store.observations.insert_many(
            [{"_id": "o1"}, {"_id": "o2"}, {"_id": "o3"}, {"_id": "o3"}], ordered=False
        )
    errors = caught.value.details["writeErrors"]
    assert [(e["index"], e["code"]) for e in errors] == [(1, 11000), (3, 11000)]
    assert all("duplicate key" in e["errmsg"] for e in errors)
    assert caught.value.details["nInserted"] == 2
    assert sorted(d["_id"] for d in store.observations.find()) == ["o1", "o2", "o3"]
    # The first copy is kept, as MongoDB keeps it.
    assert store.observations.find_one({"_id": "o2"}) == {"_id": "o2", "kind": "spo2"}


def test_ordered_insert_many_stops_at_the_first_duplicate(store: EmbeddedDatabase) -> None:
    store.observations.insert_one({"_id": "o2"})
    with pytest.raises(BulkWriteError) as caught:
        store.observations.insert_many([{"_id": "o1"}, {"_id": "o2"}, {"_id": "o3"}])
    assert [e["index"] for e in caught.value.details["writeErrors"]] == [1]
    assert sorted(d["_id"] for d in store.observations.find()) == ["o1", "o2"]


def test_insert_one_of_a_taken_id_raises_pymongos_duplicate_key_error(
    store: EmbeddedDatabase,
) -> None:
    store.devices.insert_one({"_id": "imei:861265061482607", "patient_id": "p1"})
    with pytest.raises(DuplicateKeyError) as caught:
        store.devices.insert_one({"_id": "imei:861265061482607", "patient_id": "p2"})
    assert caught.value.code == 11000


def test_unordered_bulk_write_applies_every_operation_but_the_failing_one(
    store: EmbeddedDatabase,
) -> None:
    with pytest.raises(BulkWriteError) as caught:
        store.devices.bulk_write(
            [
                InsertOne({"_id": "ble:A", "patient_id": "p1"}),
                UpdateOne({"_id": "ble:A"}, {"$set": {"patient_id": "p2"}}),
                InsertOne({"_id": "ble:A"}),
                UpdateOne({"_id": "ble:B"}, {"$set": {"patient_id": "p3"}}, upsert=True),
            ],
            ordered=False,
        )
    details = caught.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(2, 11000)]
    assert (details["nInserted"], details["nModified"], details["nUpserted"]) == (1, 1, 1)
    assert details["upserted"] == [{"index": 3, "_id": "ble:B"}]
    assert {d["_id"]: d["patient_id"] for d in store.devices.find()} == {
        "ble:A": "p2",
        "ble:B": "p3",
    }


def test_lookup_by_id_in_finds_registered_devices_only(store: EmbeddedDatabase) -> None:
    store.devices.insert_many(
        [{"_id": "ble:D616F9641622", "patient_id": "p1"}, {"_id": "imei:1", "patient_id": "p2"}]
    )
    found = list(store["devices"].find({"_id": {"$in": ["ble:D616F9641622", "ble:UNKNOWN"]}}))
    assert found == [{"_id": "ble:D616F9641622", "patient_id": "p1"}]


def test_what_one_process_wrote_another_reads_from_disk(tmp_path: Path) -> None:
    url = f"montydb://{tmp_path / 'store'}"
    open_embedded_database(url, "vitalflow").patients.insert_one({"_id": "p1", "at": T0})
    script = (
        "import sys; from sinks.embedded_store import open_embedded_database as o;"
        f"d = o({url!r}, 'vitalflow').patients.find_one({{'_id': 'p1'}});"
        "print(d['at'].isoformat())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "2026-11-26T10:00:00+00:00"


def test_threads_write_through_one_database_without_interfering(store: EmbeddedDatabase) -> None:
    failures: list[BaseException] = []

    def write(prefix: str) -> None:
        try:
            for i in range(30):
                store.observations.insert_one({"_id": f"{prefix}-{i}"})
                store.device_status.update_one({"_id": prefix}, {"$set": {"n": i}}, upsert=True)
        except BaseException as exc:  # the assertion below reports it
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert store.observations.count_documents({}) == 120
    assert {d["_id"]: d["n"] for d in store.device_status.find()} == {f"t{n}": 29 for n in range(4)}


def start_embedded_broker() -> subprocess.Popen[str]:
    """Start the embedded broker as `vitalflow demo` does: a child process on a free port."""
    return subprocess.Popen(
        [sys.executable, "-m", "connectors.embedded_broker", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,
    )


@pytest.fixture
def broker_url() -> Iterator[str]:
    """An embedded broker started as `vitalflow demo` starts it: a child process on a free port."""
    proc = start_embedded_broker()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith(READY_PREFIX), line
        yield line.removeprefix(READY_PREFIX)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()


def test_embedded_broker_delivers_qos1_to_a_persistent_session_with_manual_acks(
    broker_url: str, unique_id: str
) -> None:
    host, port = broker_url.removeprefix("mqtt://").split(":")
    received: list[tuple[str, bytes, int]] = []
    all_in = threading.Event()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        received.append((message.topic, bytes(message.payload), message.qos))
        client.ack(message.mid, message.qos)
        if len(received) == 10:
            all_in.set()

    # Configured like connectors/mqtt_source.py.
    subscriber = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"vitalflow-test-{unique_id}",
        clean_session=False,
        protocol=mqtt.MQTTv311,
        manual_ack=True,
    )
    subscriber.on_message = on_message
    subscriber.on_subscribe = lambda *_args: subscribed.set()
    subscriber.on_connect = lambda client, *_args: client.subscribe(
        [(f"dusun_pub_{unique_id}", 1), (f"iMEDE_watch_{unique_id}/#", 1)]
    )
    publisher = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"sim-{unique_id}",
        protocol=mqtt.MQTTv311,
    )
    subscriber.connect(host, int(port), keepalive=30)
    subscriber.loop_start()
    publisher.connect(host, int(port), keepalive=30)
    publisher.loop_start()
    try:
        assert subscribed.wait(10)
        topics = [f"dusun_pub_{unique_id}", f"iMEDE_watch_{unique_id}/861265061482607"]
        infos = [publisher.publish(topics[i % 2], f"m{i}".encode(), qos=1) for i in range(10)]
        for info in infos:
            info.wait_for_publish(timeout=10)
        assert all(info.is_published() for info in infos)
        assert all_in.wait(10)
    finally:
        publisher.disconnect()
        subscriber.disconnect()
        publisher.loop_stop()
        subscriber.loop_stop()
    assert sorted(p for _t, p, _q in received) == sorted(f"m{i}".encode() for i in range(10))
    assert {q for _t, _p, q in received} == {1}


def test_embedded_broker_stops_promptly_on_sigint() -> None:
    proc = start_embedded_broker()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(READY_PREFIX)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
