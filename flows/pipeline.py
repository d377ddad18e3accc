"""The vitalflow dataflow, top to bottom.

    MQTT -> receive (1) -> parse (2) -> look up patient (3) -> de-duplicate (2: duplicate)
         -> enrich -> route by patient -> store (4, 5) -> step events -> Kafka `vitalflow.steps`
                                                      -> dead letters -> Kafka `vitalflow.dlq`

De-duplication runs after the lookup on purpose: a copy is a duplicate only if an earlier
delivery went on to be stored, so a copy of a message whose first delivery ended in an error
(unknown device, malformed payload) is processed again. A dead-letter replay arrives under the
replay prefix (`flows.replay_topic`) and is never taken for a duplicate. A duplicate is still
reported at step 2 and nothing of it is stored.

`python -m bytewax.run flows.pipeline:flow` runs it with the configuration of the environment.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from connectors.mqtt_source import MqttSource
from flows.dead_letters import dead_letters
from flows.deduplicate import dedup_builder, device_key
from flows.device_clock import ClockRule
from flows.lookup_patient import PatientLookup
from flows.model import Envelope
from flows.observations import enrich_envelope
from flows.parse_message import parse_envelope
from flows.receive import receive
from flows.settings import Settings
from flows.step_events import step_events
from flows.store import ObservationStore, store_key
from flows.thresholds import Thresholds
from sinks.event_logs import open_record_writer
from sinks.mongo_database import open_database
from sinks.record_sink import RecordSink

__all__ = ["build_flow", "flow"]


def build_flow(settings: Settings) -> Dataflow:
    """Return the dataflow configured by `settings`; nothing connects until it runs."""
    database = partial(open_database, settings)
    writer = partial(open_record_writer, settings)
    flow = Dataflow("vitalflow")

    deliveries = op.input(
        "mqtt",
        flow,
        MqttSource(
            settings.mqtt_url,
            settings.subscriptions,
            qos=settings.mqtt_qos,
            client_id=settings.mqtt_client_id,
            partitions=settings.mqtt_partitions,
            share_group=settings.mqtt_share_group,
            inbox_size=settings.mqtt_inbox_size,
            inbox_bytes=settings.mqtt_inbox_bytes,
            ca_file=settings.mqtt_ca_file,
        ),
    )
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
            database, settings.lookup_cache_ttl_seconds, settings.lookup_negative_ttl_seconds
        ),
    )
    keyed = op.key_on("by_device", found, device_key)
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
    # FerretDB applies concurrent updates of one document without isolation (measured: four
    # clients setting different fields of the same documents lost one in 9 of 50), so the
    # writes for a patient, or for a device without one, are all made by one worker.
    routed = op.key_rm(
        "unkey_writer",
        op.stateful_map("route_to_writer", op.key_on("by_writer", enriched, store_key), _no_state),
    )
    stored = op.flat_map_batch("store", routed, ObservationStore(database))

    events = op.flat_map("step_events", stored, step_events)
    op.output("steps_out", events, RecordSink(settings.steps_topic, writer))
    letters = op.flat_map("dead_letters", stored, dead_letters)
    op.output("dlq_out", letters, RecordSink(settings.dlq_topic, writer))
    return flow


def _no_state(_state: None, envelope: Envelope) -> tuple[None, Envelope]:
    # Only the routing by key is wanted: no state is kept, so nothing is snapshotted.
    return None, envelope


flow = build_flow(Settings())
