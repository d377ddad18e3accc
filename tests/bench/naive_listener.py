"""The baseline: a per-message MQTT listener written the way simple systems do it.

paho's `on_message` callback does everything for one message before the next: parse it, find its
device in `devices`, update the patient, insert each observation, and send one step event per stage
to Kafka, flushed at once (five round trips to Kafka per stored message, one or more to MongoDB per
stage). The parsing and enrichment are vitalflow's own (`flows.devices.parse_payload`,
`flows.codes_and_flags`), so the difference measured is the plumbing, not the device tables. No
de-duplication: a repeated copy finds its observations already stored (same `_id`).

Run by `bench_pipeline.py --baseline naive` in a process of its own; it connects to the
persistent session the benchmark prepared (same client id), so it finds every message the
benchmark queued, and exits once it has handled `--expect` of them, writing its timings as
JSON to `--result`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import paho.mqtt.client as mqtt
from kafka import KafkaProducer
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from connectors.mqtt_source import MqttTarget
from flows.codes_and_flags import enrich_reading
from flows.device_clock import ClockRule
from flows.devices.parse_payload import parse_payload
from flows.model import ParseError, fingerprint
from flows.settings import DEFAULT_TOPICS, Settings
from flows.thresholds import Thresholds


class NaiveListener:
    """One message at a time, every write and every event sent on its own."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.db = MongoClient(args.mongo_url, tz_aware=True)[args.db]
        self.producer = KafkaProducer(bootstrap_servers=args.kafka, acks="all")
        self.topic = args.topic
        self.expect = args.expect
        self.clock = ClockRule.from_settings(Settings())
        self.thresholds = Thresholds.load(None)
        self.handled = 0
        self.stored = 0
        self.first_at: float | None = None
        self.last_at = 0.0

    def send_step(self, message_id: str, step: str, status: str, data: dict[str, Any]) -> None:
        event = {
            "id": f"{message_id}/{step}",
            "time": datetime.now(UTC).isoformat(),
            "data": {"message_id": message_id, "step": step, "status": status, **data},
        }
        self.producer.send(self.topic, json.dumps(event, default=str).encode())
        self.producer.flush()

    def on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.first_at = self.first_at or time.time()
        self.handle(message.topic, bytes(message.payload))
        self.handled += 1
        self.last_at = time.time()
        if self.handled >= self.expect:
            _c.disconnect()

    def handle(self, topic: str, payload: bytes) -> None:
        message_id = fingerprint(topic, payload)
        now = datetime.now(UTC)
        self.send_step(message_id, "1_mqtt_received", "success", {"topic": topic})
        try:
            parsed = parse_payload(topic, payload, now, self.clock)
        except ParseError as exc:
            self.send_step(message_id, "2_payload_parsed", "error", {"error": str(exc)})
            return
        if not parsed.readings:
            self.send_step(message_id, "2_payload_parsed", "skipped", {})
            return
        self.send_step(message_id, "2_payload_parsed", "success", {"payload": parsed.payload})
        device = self.db.devices.find_one({"_id": {"$in": parsed.lookup_keys}})
        if device is None:
            self.send_step(message_id, "3_patient_lookup", "error", {"error": "unknown device"})
            return
        patient_id = device["patient_id"]
        self.send_step(message_id, "3_patient_lookup", "success", {"patient_id": patient_id})
        documents = []
        for index, reading in enumerate(parsed.readings):
            documents.append(
                {
                    "_id": f"{message_id}:{index}",
                    "patient_id": patient_id,
                    "kind": str(reading.kind),
                    "message_id": message_id,
                    "measured_at": reading.measured_at,
                    "received_at": now,
                    "values": reading.values,
                    **enrich_reading(reading, self.thresholds),
                }
            )
        self.db.patients.update_one(
            {"_id": patient_id},
            {"$set": {f"last_vitals.{d['kind']}": d["values"] for d in documents}},
        )
        self.send_step(message_id, "4_patient_updated", "success", {"patient_id": patient_id})
        for document in documents:
            try:
                self.db.observations.insert_one(document)
                self.stored += 1
            except DuplicateKeyError:
                pass
        self.send_step(message_id, "5_medical_stored", "success", {"count": len(documents)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mqtt-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--mongo-url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--kafka", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()

    listener = NaiveListener(args)
    target = MqttTarget.from_url(args.mqtt_url)
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )
    client.on_message = listener.on_message
    started = time.time()
    client.connect(target.host, target.port)
    client.subscribe([(t, 1) for t in DEFAULT_TOPICS.split(",")])
    client.loop_forever()
    listener.producer.close()
    args.result.write_text(
        json.dumps(
            {
                "handled": listener.handled,
                "stored": listener.stored,
                "started": started,
                "first_at": listener.first_at,
                "last_at": listener.last_at,
            }
        )
    )


if __name__ == "__main__":
    main()
