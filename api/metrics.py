"""Prometheus metrics of one API process, in a registry of its own (no process-wide globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ApiMetrics"]


class ApiMetrics:
    """The counters and gauges /metrics exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_consumed = Counter(
            "vitalflow_api_events_consumed",
            "Records read from the steps topic by the live consumer",
            registry=self.registry,
        )
        self.events_invalid = Counter(
            "vitalflow_api_events_invalid",
            "Records of the steps topic that are not readable step events (never sent)",
            registry=self.registry,
        )
        self.events_sent = Counter(
            "vitalflow_api_events_sent",
            "Step event frames written to SSE clients",
            registry=self.registry,
        )
        self.step_events = Counter(
            "vitalflow_api_step_events",
            "Step events read, by step, status and device type",
            ["step", "status", "device_type"],
            registry=self.registry,
        )
        self.clients_connected = Gauge(
            "vitalflow_api_clients_connected",
            "Open SSE streams",
            registry=self.registry,
        )
        self.clients_dropped = Counter(
            "vitalflow_api_clients_dropped",
            "SSE streams ended by the server, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "vitalflow_api_consumer_lag",
            "Records in the steps topic not yet read by the live consumer, by partition",
            ["partition"],
            registry=self.registry,
        )
        self.feed_up = Gauge(
            "vitalflow_api_feed_up",
            "1 when the event feed (Kafka or the embedded log) answers, else 0",
            registry=self.registry,
        )
        self.event_age = Histogram(
            "vitalflow_api_event_age_seconds",
            "Time from an event's write to the steps topic to its fan-out to clients",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.resets = Counter(
            "vitalflow_api_resets",
            "Resumes from a position Kafka no longer holds (answered with a reset frame)",
            registry=self.registry,
        )

    def render(self) -> bytes:
        """Render every metric in the Prometheus text format."""
        return generate_latest(self.registry)
