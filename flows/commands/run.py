"""`vitalflow run`: the dataflow against the configured services, until interrupted.

The flow is built from the settings the CLI read once (flags over environment), so nothing
here reads the environment; recovery, workers and the epoch interval come from them too.
SIGINT and SIGTERM stop it cleanly (`flows.stopping`): exit status 0, or 128 + the signal
number when it could not stop within the grace period.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from flows.garbage_collection import tune_garbage_collection
from flows.health import serve_health
from flows.pipeline import build_flow, event_topics
from flows.settings import Settings, without_password
from flows.stopping import SignalStop
from flows.thread_switching import set_switch_interval
from sinks.mongo_database import check_database
from sinks.record_sink import local_parts
from sinks.record_writers import SQLITE_PREFIX, open_writers_ahead

__all__ = ["recovery_config", "run_dataflow"]

logger = logging.getLogger("vitalflow")

# How long a flow that ended waits for the start-up store check before the process exits.
_STORE_CHECK_GRACE_SECONDS = 2.0


def recovery_config(settings: Settings) -> RecoveryConfig | None:
    """Return the recovery configuration of `settings`, creating the partitions on first use.

    Only process 0 ever creates partitions, all of them, in its own directory: Bytewax needs
    the cluster as a whole to hold every partition, not each process, and process 0 is in
    every cluster size, so state written by N processes resumes under any other count
    without moving files. Other processes use what their directory holds (nothing on a
    volume of their own; the same files when the directory is shared). Creating partitions
    anywhere else could give the cluster two different copies of one partition.
    """
    directory = settings.recovery_dir
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    if settings.this_process == 0 and not any(directory.glob("part-*.sqlite3")):
        count = settings.recovery_partitions or settings.processes * settings.workers
        init_db_dir(directory, count)
        logger.info("vitalflow run: created %d recovery partitions in %s", count, directory)
    return RecoveryConfig(directory)


def run_dataflow(settings: Settings) -> int:
    """Run the dataflow in this process until it ends or is interrupted; return the exit code."""
    stop = SignalStop()
    try:
        dataflow = build_flow(settings, stop=stop.requested)
    except ValueError as exc:
        # A setting of the right type but unusable (an MQTT URL that is not one, say).
        logger.error("vitalflow run: invalid configuration: %s", exc)
        return 2
    if (settings.process_id is None) != (not settings.cluster_addresses) or (
        settings.this_process >= settings.processes
    ):
        logger.error(
            "vitalflow run: invalid configuration: a cluster process needs both --process-id "
            "and --addresses, the id below the number of addresses (got %s and %r)",
            settings.process_id,
            settings.addresses,
        )
        return 2
    if settings.processes > 1:
        logger.info(
            "vitalflow run: process %d of a %d-process cluster (%s), %d worker(s) each",
            settings.this_process,
            settings.processes,
            ";".join(settings.cluster_addresses),
            settings.workers,
        )
    recovery = recovery_config(settings)
    if settings.metrics_port is not None:
        serve_health(settings.metrics_port, settings.health_stall_seconds)
    logger.info(
        "vitalflow run: mqtt %s topics %s -> mongo %s db %s, events %s (recovery: %s)",
        without_password(settings.mqtt_url),
        ",".join(settings.subscriptions),
        without_password(settings.mongo_url),
        settings.mongo_db,
        settings.event_log_url or f"kafka {settings.kafka_bootstrap}",
        settings.recovery_dir or "off",
    )
    # A store that is away is said at once, not when the first message needs it.
    store_check = threading.Thread(
        target=check_database,
        args=(settings.mongo_url, settings.mongo_db),
        kwargs={"timeout_seconds": settings.mongo_timeout_seconds},
        name="vitalflow-store-check",
        daemon=True,
    )
    store_check.start()
    if not (settings.event_log_url or "").startswith(SQLITE_PREFIX):
        # Likewise Kafka, and the sinks' writers are opened now rather than when their first
        # records come: one per topic for each event-writer partition of this process.
        topics = event_topics(settings)
        parts = local_parts(settings.mqtt_partitions, settings.this_process, settings.processes)
        open_writers_ahead(
            settings.kafka_bootstrap,
            topics,
            len(topics) * len(parts),
            settings.kafka_compression,
        )
    tune_garbage_collection()
    set_switch_interval(settings.switch_interval_ms)
    stop.install()
    try:
        cli_main(
            dataflow,
            workers_per_process=settings.workers,
            epoch_interval=timedelta(seconds=settings.epoch_interval_seconds),
            recovery_config=recovery,
            process_id=settings.process_id,
            addresses=settings.cluster_addresses or None,
        )
    except KeyboardInterrupt:
        # Safe at any point: un-acked messages are redelivered on the next start.
        logger.info("vitalflow run: interrupted; un-acked messages will be redelivered")
        return 130
    finally:
        stop.restore()
        # A flow that ends at once (a stop at start) must not leave the interpreter while the
        # check's client is still starting its monitors: pymongo then prints a traceback at
        # exit (seen once in CI). Its ping takes milliseconds on a server that answers.
        store_check.join(timeout=_STORE_CHECK_GRACE_SECONDS)
    if stop.signal is not None:
        # The designed stop: documented as exit status 0 (README, "Stopping").
        logger.info("vitalflow run: stopped after %s", stop.signal.name)
    return 0
