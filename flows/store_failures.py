"""Messages whose writes failed for good, so that de-dup lets their next copy through.

De-dup runs before the store and counts a message as stored once it goes on to be; when its
writes then fail for good (a step-4 or step-5 error, dead-lettered), a later copy must be
processed again, not skipped as a duplicate (DESIGN.md: "unless the first copy never got
stored"). Bytewax has no edge back from the store to de-dup; a device's messages are
de-duplicated and stored on the same worker, so the store tells it here, in this process.

Bounded: past `limit` the oldest are forgotten. Not in the recovery snapshot: a copy arriving
after a restart is skipped as before, and its first delivery's dead letter is where it is kept
(`vitalflow dlq replay`). A copy arriving before its first delivery's writes have ended is
skipped too: nothing is known yet.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["STORE_FAILURES", "StoreFailures"]


class StoreFailures:
    """A bounded, thread-safe set of message ids (the store writes from its own thread)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, message_ids: Iterable[str]) -> None:
        """Remember that these messages' writes failed."""
        with self._lock:
            for message_id in message_ids:
                self._ids[message_id] = None
                self._ids.move_to_end(message_id)
            while len(self._ids) > self._limit:
                self._ids.popitem(last=False)

    def forget(self, message_id: str) -> bool:
        """Return whether this message's writes failed, forgetting it (its copy now goes on)."""
        if not self._ids:  # the common case, without the lock
            return False
        with self._lock:
            if message_id not in self._ids:
                return False
            del self._ids[message_id]
            return True

    def __len__(self) -> int:
        return len(self._ids)


# The flow's own, one per process.
STORE_FAILURES = StoreFailures()
