"""Stopping `vitalflow run` on SIGINT or SIGTERM: the source ends and Bytewax returns normally.

Left to itself, Bytewax 0.21 turns a SIGINT into a Rust panic with a backtrace and exit 1
(Bytewax issue 268), and SIGTERM kills the process without a word. While the flow runs,
`SignalStop` makes either signal set an event instead: the MQTT source's partitions see it at
their next batch, ack what is already durable and end, and Bytewax finishes the epoch in
flight and returns. What was received but not acked is redelivered by the broker on the next
start, which de-duplication and deterministic ids make harmless; so when the flow cannot stop
within the grace period (a worker blocked on a store that does not answer) or a second signal
comes, the process ends at once with 128 + the signal number, losing nothing either.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "SignalStop"]

logger = logging.getLogger("vitalflow")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalStop:
    """Once installed, SIGINT and SIGTERM set `requested` instead of interrupting the process."""

    def __init__(self, grace_seconds: float = 10.0) -> None:
        self.requested = threading.Event()
        self.grace_seconds = grace_seconds
        self.signal: signal.Signals | None = None
        self._finished = threading.Event()
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        """Take over SIGINT and SIGTERM (from the main thread), until `restore`."""
        # A panic of Bytewax's runtime would otherwise print a Rust backtrace; a user who asks
        # for one still gets it.
        os.environ.setdefault("RUST_BACKTRACE", "0")
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        """Give SIGINT and SIGTERM back to the handlers they had; the flow has returned."""
        self._finished.set()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            logger.warning(
                "vitalflow run: %s again, exiting now; un-acked messages are redelivered", name
            )
            _exit_now(128 + signum)
        self.signal = signal.Signals(signum)
        logger.info(
            "vitalflow run: %s received, stopping; un-acked messages are redelivered on the "
            "next start",
            name,
        )
        self.requested.set()
        threading.Thread(
            target=self._exit_after_grace, args=(name, 128 + signum), daemon=True
        ).start()

    def _exit_after_grace(self, name: str, code: int) -> None:
        if self._finished.wait(self.grace_seconds):
            return
        logger.warning(
            "vitalflow run: not stopped %.0f s after %s (a store or broker not answering?); "
            "exiting now, un-acked messages are redelivered",
            self.grace_seconds,
            name,
        )
        _exit_now(code)


def _exit_now(code: int) -> None:
    # No interpreter shutdown: Bytewax's threads would be torn down under it and panic.
    sys.stderr.flush()
    os._exit(code)
