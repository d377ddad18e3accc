"""Retrying a write to a store that is briefly unavailable, instead of losing or crashing.

The source acks nothing until the epoch is durable, so waiting here is safe: the broker keeps
the messages, and the dataflow resumes where it stood once the store answers again. Every
attempt runs inside `waiting_on`, so one that hangs is reported while it hangs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import Counter

from sinks.waiting import waiting_on

__all__ = ["RETRIES", "call_with_backoff"]

logger = logging.getLogger(__name__)

RETRIES = Counter(
    "vitalflow_retries",
    "Calls to a store or broker retried after a transient failure",
    ["operation"],
)

T = TypeVar("T")


def call_with_backoff(
    call: Callable[[], T],
    what: str,
    transient: tuple[type[BaseException], ...],
    *,
    server: str = "the store",
    max_delay: float = 30.0,
) -> T:
    """Call `call` until it stops raising one of `transient`, sleeping 0.5 s doubling to max."""
    delay = 0.5
    while True:
        try:
            with waiting_on(what, server):
                return call()
        except transient as exc:
            RETRIES.labels(what).inc()
            logger.warning(
                "%s on %s failed (%s: %s); retrying in %.1f s",
                what,
                server,
                type(exc).__name__,
                _short(exc),
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, max_delay)


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."
