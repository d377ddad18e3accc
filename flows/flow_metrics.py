"""The flow's own Prometheus metrics, counted where the flow decides what a message became.

Each process of a cluster counts its own share and serves it on its metrics port
(`flows.health`); the sum over processes is the cluster's. The source's, store's and Kafka
writer's metrics live next to them (`connectors.mqtt_source`, `sinks.backoff`, `sinks.waiting`,
`sinks.kafka_writer`) and are served from the same registry.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["CLOCK_CLAMPS", "DEAD_LETTERS", "DEDUP_DEVICES", "DEDUP_ENTRIES", "STEP_OUTCOMES"]

STEP_OUTCOMES = Counter(
    "vitalflow_step_outcomes",
    "Step outcomes reported as step events, by step, status and device type",
    ["step", "status", "device_type"],
)
DEAD_LETTERS = Counter("vitalflow_dead_letters", "Dead letters written, by error code", ["code"])
CLOCK_CLAMPS = Counter(
    "vitalflow_device_clock_clamps",
    "Readings whose device time was not used as is: `ahead` (later than received, within the "
    "allowed skew, clamped to the receive time) or `implausible` (receive time used instead)",
    ["reason"],
)
DEDUP_ENTRIES = Gauge(
    "vitalflow_dedup_entries", "Message ids held by the de-dup state of this process's workers"
)
DEDUP_DEVICES = Gauge(
    "vitalflow_dedup_devices", "Devices with de-dup state on this process's workers"
)
