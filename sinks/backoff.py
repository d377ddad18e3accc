"""Retrying a write to a store that is briefly unavailable, instead of losing or crashing.

The source acks nothing until the epoch is durable, so waiting here is safe: the broker keeps
the messages, and the dataflow resumes where it stood once the store answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["call_with_backoff"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def call_with_backoff(
    call: Callable[[], T],
    what: str,
    transient: tuple[type[BaseException], ...],
    *,
    max_delay: float = 30.0,
) -> T:
    """Call `call` until it stops raising one of `transient`, sleeping 0.5 s doubling to max."""
    delay = 0.5
    while True:
        try:
            return call()
        except transient as exc:
            logger.warning("%s failed (%s); retrying in %.1f s", what, type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
