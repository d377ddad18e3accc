"""Saying, while it lasts, that a call to a store or broker is taking long.

A blocking call (a MongoDB bulk write, a Kafka flush) that hangs stalls the flow's worker and
with it every message behind it. Bounded timeouts end such a call eventually; until then the
operator should not be left guessing: inside `waiting_on`, a call that has waited
`warn_after` seconds is logged with its name, its server and how long it has waited, again
every `every` seconds while it waits, and the wait is visible in a gauge.

One watcher thread serves every call: entering and leaving costs a dict update, so the
common fast call pays next to nothing.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

__all__ = ["SLOW_CALLS", "WAITING_SECONDS", "waiting_on"]

logger = logging.getLogger(__name__)

SLOW_CALLS = Counter(
    "vitalflow_slow_calls",
    "Calls to a store or broker still waiting after the warning threshold",
    ["operation"],
)
WAITING_SECONDS = Gauge(
    "vitalflow_waiting_seconds",
    "How long the slow call in progress has waited, by operation (0 when none)",
    ["operation"],
)

_TICK = 0.5


@dataclass
class _Call:
    operation: str
    server: str
    started: float
    warn_after: float
    every: float
    next_warning: float
    warned: bool = False


_calls: dict[int, _Call] = {}
_ids = itertools.count()
_lock = threading.Lock()
_watcher: threading.Thread | None = None


def _watch() -> None:
    while True:
        time.sleep(_TICK)
        now = time.monotonic()
        with _lock:
            due = [c for c in _calls.values() if now >= c.next_warning]
            for call in due:
                call.next_warning = now + call.every
        for call in due:
            waited = now - call.started
            if not call.warned:
                call.warned = True
                SLOW_CALLS.labels(call.operation).inc()
            WAITING_SECONDS.labels(call.operation).set(waited)
            logger.warning(
                "%s on %s: still waiting after %.1f s", call.operation, call.server, waited
            )


def _ensure_watcher() -> None:
    global _watcher
    if _watcher is None or not _watcher.is_alive():
        _watcher = threading.Thread(target=_watch, name="vitalflow-waiting", daemon=True)
        _watcher.start()


@contextmanager
def waiting_on(
    operation: str, server: str, *, warn_after: float = 5.0, every: float = 5.0
) -> Iterator[None]:
    """Warn every `every` s once the enclosed call has waited `warn_after` s."""
    now = time.monotonic()
    call = _Call(operation, server, now, warn_after, every, now + warn_after)
    key = next(_ids)
    with _lock:
        _ensure_watcher()
        _calls[key] = call
    try:
        yield
    finally:
        with _lock:
            del _calls[key]
        if call.warned:
            WAITING_SECONDS.labels(operation).set(0)
            logger.warning(
                "%s on %s: done after %.1f s", operation, server, time.monotonic() - call.started
            )
