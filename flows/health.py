"""The flow process's Prometheus metrics and liveness, on one HTTP port (`--metrics-port`).

`GET /metrics` is the Prometheus text format of this process's registry: the flow's counters
(`flows.flow_metrics`), the MQTT source's, the store's and Kafka writer's retries and waits.
`GET /healthz` answers 200 while every MQTT partition of this process was polled by its
worker within the stall limit (so the worker is turning, busy or idle), and 503 once one was
not (a worker stuck in a call that never returns): what a Kubernetes liveness probe restarts.
A process of a cluster that runs no MQTT partition has nothing to watch and answers 200.
Both answers carry the details as JSON. Bytewax's own per-step timings come from its
dataflow API instead (`BYTEWAX_DATAFLOW_API_ENABLED=true`, port 3030).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from connectors.mqtt_source import source_activity

__all__ = ["liveness", "serve_health"]

logger = logging.getLogger(__name__)


def liveness(stall_seconds: float) -> tuple[bool, dict[str, object]]:
    """Return whether this process is alive, and why, from its source partitions' polls."""
    now = time.monotonic()
    partitions = {
        name: {"polled_seconds_ago": round(now - polled, 3), "connected": connected}
        for name, (polled, connected) in source_activity().items()
    }
    stalled = [n for n, p in partitions.items() if p["polled_seconds_ago"] > stall_seconds]
    return not stalled, {"stalled": stalled, "partitions": partitions}


def serve_health(port: int, stall_seconds: float, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on `port` from a daemon thread; return the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
            elif self.path.split("?")[0] == "/healthz":
                alive, details = liveness(stall_seconds)
                body = json.dumps({"alive": alive, **details}).encode()
                self._answer(200 if alive else 503, "application/json", body)
            else:
                self._answer(404, "text/plain", b"not found\n")

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # a probe every few seconds is not worth a log line

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="vitalflow-health", daemon=True).start()
    logger.info("vitalflow run: metrics on :%d/metrics, liveness on :%d/healthz", port, port)
    return server
