"""The MQTT source's inbox: a FIFO bounded by message count and by payload bytes.

paho's network thread puts what it receives; the partition takes it out in `next_batch`. A
full inbox blocks the putter, which stops paho reading its socket, so TCP back-pressure reaches
the broker (which keeps the messages) instead of memory growing. Counting messages alone let
150 messages of 5 MB take the flow to 912 MB while Kafka was away; the byte bound stops that.
An empty inbox always takes one message, however large, or such a message would block forever.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["MqttInbox"]

T = TypeVar("T")


class MqttInbox(Generic[T]):
    """Holds at most `max_items` items and, unless only one, at most `max_bytes` bytes."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._changed = threading.Condition()

    def put(self, item: T, size: int) -> None:
        """Append `item` of `size` bytes, blocking while there is no room for it."""
        with self._changed:
            while self._items and (
                len(self._items) >= self._max_items or self._bytes + size > self._max_bytes
            ):
                self._changed.wait()
            self._items.append((item, size))
            self._bytes += size

    def get_nowait(self) -> T:
        """Remove and return the oldest item; raise `queue.Empty` when there is none."""
        with self._changed:
            if not self._items:
                raise queue.Empty
            item, size = self._items.popleft()
            self._bytes -= size
            self._changed.notify_all()
            return item

    def empty(self) -> bool:
        """Whether nothing is waiting."""
        return not self._items

    @property
    def nbytes(self) -> int:
        """The bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
