"""The vitalflow dataflow, top to bottom.

    MQTT -> receive (1) -> parse (2) -> look up patient (3) -> de-duplicate (2: duplicate)
         -> enrich -> store (4, 5) -> step events -> Kafka `vitalflow.steps`
                                                      -> dead letters -> Kafka `vitalflow.dlq`
                                                      -> alerts -> Kafka `vitalflow.alerts`

De-duplication runs after the lookup on purpose: a copy is a duplicate only if an earlier
delivery went on to be stored, so a copy of a message whose first delivery ended in an error
(unknown device, malformed payload) is processed again. A dead-letter replay arrives under the
replay prefix (`flows.replay_topic`) and is never taken for a duplicate. A duplicate is still
reported at step 2 and nothing of it is stored.

Nothing connects or reads the environment at import: `vitalflow run` builds the flow from the
settings the CLI read once (flags over environment), and Bytewax's own runner calls the
`flow()` factory, `python -m bytewax.run flows.pipeline:flow`, which reads the environment
then. The runner's flags decide recovery and the epoch interval, not VITALFLOW_* (README).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink
from pymongo.database import Database

from connectors.mqtt_source import MqttMessage, MqttSource
from flows.alerts import alert_records
from flows.dead_letters import dead_letters
from flows.deduplicate import dedup_builder, dedup_key
from flows.device_clock import ClockRule
from flows.enrich import enrich_envelope
from flows.lookup_patient import PatientLookup
from flows.parse import parse_envelope
from flows.receive import receive
from flows.settings import Settings
from flows.step_events import step_events
from flows.store import ObservationStore
from flows.store_pipeline import PipelinedStore, WorkerKey
from flows.thresholds import Thresholds
from sinks.kafka_writer import CLOUDEVENTS_JSON, PLAIN_JSON
from sinks.mongo_database import open_database
from sinks.record_sink import Record, RecordSink, RecordWriter
from sinks.record_writers import TopicSpec, open_record_writer

__all__ = ["build_flow", "event_topics", "flow"]

KeyedRecord = tuple[str, Record]


def build_flow(
    settings: Settings,
    *,
    source: Source[MqttMessage] | None = None,
    steps_sink: Sink[KeyedRecord] | None = None,
    dlq_sink: Sink[KeyedRecord] | None = None,
    alerts_sink: Sink[KeyedRecord] | None = None,
    database: Callable[[], Database[dict[str, Any]]] | None = None,
    stop: threading.Event | None = None,
) -> Dataflow:
    """Return the dataflow configured by `settings`; nothing connects until it runs.

    `source`, the sinks and `database` replace the MQTT source, the Kafka (or embedded log)
    sinks and the MongoDB connection, for tests that run the whole flow in process. Setting
    `stop` ends the MQTT source, and with it the flow, cleanly (`flows.stopping`).
    """
    # The store's writes overlap the next batch only where a crash cannot lose what that
    # holds over an epoch's end (its recovery snapshot), and only on a MongoDB server: the
    # demo's embedded store, and what tests pass as `database`, are not made for a writer on
    # a thread of its own beside the lookups. `flows.store_pipeline` says why it is safe.
    # The same goes for the registry's whole copy, read beside the worker.
    on_a_server = database is None and not settings.mongo_url.startswith("montydb://")
    overlap = settings.store_overlap and settings.recovery_dir is not None and on_a_server
    if database is None:
        database = partial(
            open_database,
            settings.mongo_url,
            settings.mongo_db,
            timeout_seconds=settings.mongo_timeout_seconds,
        )
    flow = Dataflow("vitalflow")

    deliveries = op.input("mqtt", flow, source or _mqtt_source(settings, stop))
    received = op.map(
        "receive", deliveries, partial(receive, replay_prefix=settings.mqtt_replay_prefix)
    )
    parsed = op.map(
        "parse", received, partial(parse_envelope, clock=ClockRule.from_settings(settings))
    )
    found = op.flat_map_batch(
        "lookup_patient",
        parsed,
        PatientLookup(
            database,
            settings.lookup_cache_ttl_seconds,
            settings.lookup_negative_ttl_seconds,
            # Read on a thread of its own beside the worker's lookups: a server only, as above.
            settings.lookup_preload_max if on_a_server else 0,
        ),
    )
    keyed = op.key_on("by_device", found, dedup_key)
    unique = op.stateful(
        "deduplicate",
        keyed,
        dedup_builder(timedelta(seconds=settings.dedup_ttl_seconds), settings.dedup_max_per_device),
    )
    enriched = op.map(
        "enrich",
        op.key_rm("unkey", unique),
        partial(enrich_envelope, thresholds=Thresholds.load(settings.thresholds_file)),
    )
    # The store keeps every message on the worker it is on: a device's messages are already
    # on one worker (the de-dup step is keyed by device), the overlapped store's one key per
    # worker routes to that worker (`flows.store_pipeline`), and the writes that can meet
    # across workers, a patient's `last_vitals`, are conditional statements the server
    # applies atomically.
    # With recovery the store is one stateful step, its writes overlapped or inline: a
    # snapshot taken with the overlap on is read on a resume with it off.
    if settings.recovery_dir is not None:
        keyed = op.key_on("store_key", enriched, WorkerKey())
        writes = PipelinedStore(
            partial(ObservationStore, database), settings.store_in_flight, overlap=overlap
        )
        stored = op.key_rm("store_unkey", op.stateful_batch("store", keyed, writes))
    else:
        stored = op.flat_map_batch("store", enriched, ObservationStore(database))

    events = op.flat_map("step_events", stored, step_events)
    op.output("steps_out", events, steps_sink or _record_sink(settings, settings.steps_topic))
    letters = op.flat_map("dead_letters", stored, dead_letters)
    op.output("dlq_out", letters, dlq_sink or _record_sink(settings, settings.dlq_topic))
    alerts = op.flat_map("alerts", stored, alert_records)
    op.output("alerts_out", alerts, alerts_sink or _record_sink(settings, settings.alerts_topic))
    return flow


def flow() -> Dataflow:
    """Bytewax's runner entry point: the flow configured by the environment and `.env`.

    The store does not overlap the next batch here: the runner's own flags decide whether
    recovery is on, and without it what the overlap holds over an epoch's end is not safe.
    """
    return build_flow(Settings().model_copy(update={"store_overlap": False}))


def _record_sink(settings: Settings, topic: str) -> RecordSink:
    # As many writers as MQTT partitions, spread over the processes like them: every process
    # writes to Kafka, and a record goes to the writer its key hashes to. The count must not
    # follow the cluster size: recovery remembers each writer, and a resume that does not
    # list one it remembers stops the flow.
    return RecordSink(
        topic,
        partial(_record_writer, settings),
        parts=settings.mqtt_partitions,
        process_id=settings.this_process,
        processes=settings.processes,
    )


def event_topics(settings: Settings) -> dict[str, TopicSpec]:
    """Return the topics the flow writes, with their partitions and record formats."""
    # Step events and alerts are CloudEvents; dead letters are plain JSON records (README).
    return {
        settings.steps_topic: TopicSpec(settings.steps_partitions, CLOUDEVENTS_JSON),
        settings.dlq_topic: TopicSpec(1, PLAIN_JSON),
        settings.alerts_topic: TopicSpec(1, CLOUDEVENTS_JSON),
    }


def _record_writer(settings: Settings) -> RecordWriter:
    return open_record_writer(
        settings.event_log_url,
        settings.kafka_bootstrap,
        event_topics(settings),
        settings.kafka_compression,
    )


def _mqtt_source(settings: Settings, stop: threading.Event | None) -> MqttSource:
    return MqttSource(
        settings.mqtt_url,
        settings.subscriptions,
        qos=settings.mqtt_qos,
        client_id=settings.mqtt_client_id,
        partitions=settings.mqtt_partitions,
        share_group=settings.mqtt_share_group,
        inbox_size=settings.mqtt_inbox_size,
        batch_size=settings.mqtt_batch_size,
        busy_poll_ms=settings.mqtt_busy_poll_ms,
        inbox_bytes=settings.mqtt_inbox_bytes,
        ca_file=settings.mqtt_ca_file,
        stop=stop,
        process_id=settings.this_process,
        processes=settings.processes,
    )
