"""One device's de-dup window: its recent message ids in first-seen order, kept encoded.

Why encoded: Bytewax snapshots the whole state of every device that got a message during an
epoch, at every epoch's end, into the recovery store. Once the flow has run for a TTL a
device's window holds all its ids of the last `VITALFLOW_DEDUP_TTL_SECONDS` (600 s): at
1,000 msg/s over 1,500 devices ~400 ids each, and ~730 devices a second get a message. Kept
as a dict, each snapshot pickled ~49 bytes an id (19.6 KB a window, 50 us) and recovery cost
the flow 0.14-0.21 ms of CPU per message (`tests/bench/bench_dedup_snapshots.py`, about as
much as the rest of the flow's Python). Here each id also has a fixed 25-byte record in a
buffer, updated as ids come and go, so a snapshot is one copy of bytes.

A record is the id's 16 bytes, when it was first seen (whole POSIX seconds: a resumed entry
may expire up to a second early), deliveries numbered so far and whether one was stored.
Message ids are 32 hex digits (`flows.model.fingerprint`); any other id is kept by a digest
of it, so after a resume it is not recognised again (a copy would then be processed again,
which stores nothing twice). A removed entry leaves a zeroed record (no deliveries), dropped
from the buffer once it reaches the front.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Mapping

__all__ = ["DedupWindow", "Entry"]

logger = logging.getLogger(__name__)

# first seen (POSIX seconds), deliveries numbered so far, whether one of them was stored.
Entry = tuple[float, int, bool]

_RECORD = struct.Struct("<16sIIB")
_SIZE = _RECORD.size
_TOMBSTONE = bytes(_SIZE)
_MAX_U32 = 0xFFFFFFFF
# Snapshots start with this; a dict snapshot is from a release that kept windows as dicts.
_FORMAT = b"\x01dedup-window\x01"


class DedupWindow:
    """Message ids -> `Entry`, in first-seen order, with a snapshot that is one bytes copy."""

    __slots__ = ("_dead", "_entries", "_first", "_records")

    def __init__(self) -> None:
        # id -> (first seen, deliveries, stored, position of its record); first-seen order.
        self._entries: dict[str, tuple[float, int, bool, int]] = {}
        self._records = bytearray()
        # Records before `_dead` bytes are dropped entries not yet cut from the buffer; the
        # record of position p starts at (p - _first) * size.
        self._dead = 0
        self._first = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, message_id: str) -> Entry | None:
        """Return what the window holds about `message_id`, if anything."""
        found = self._entries.get(message_id)
        return None if found is None else found[:3]

    def put(self, message_id: str, first_seen: float, deliveries: int, stored: bool) -> None:
        """Add `message_id` at the end, or update it where it is."""
        record = _RECORD.pack(
            _id_bytes(message_id),
            min(max(int(first_seen), 0), _MAX_U32),
            min(deliveries, _MAX_U32),
            stored,
        )
        known = self._entries.get(message_id)
        if known is None:
            position = self._first + len(self._records) // _SIZE
            self._records += record
        else:
            position = known[3]
            start = (position - self._first) * _SIZE
            self._records[start : start + _SIZE] = record
        self._entries[message_id] = (first_seen, deliveries, stored, position)

    def remove(self, message_id: str) -> None:
        """Forget `message_id` (it must be in the window)."""
        position = self._entries.pop(message_id)[3]
        start = (position - self._first) * _SIZE
        self._records[start : start + _SIZE] = _TOMBSTONE
        self._cut()

    def oldest(self) -> tuple[str, float] | None:
        """Return the first-seen id and when it was first seen, if any."""
        for message_id, found in self._entries.items():
            return message_id, found[0]
        return None

    def drop_oldest(self, count: int = 1) -> None:
        """Forget the `count` ids first seen the longest ago."""
        for _ in range(min(count, len(self._entries))):
            del self._entries[next(iter(self._entries))]
        self._cut()

    def expire(self, horizon: float) -> int:
        """Drop the ids first seen at or before `horizon`, from the front; return how many."""
        expired = 0
        for found in self._entries.values():
            if found[0] > horizon:
                break
            expired += 1
        self.drop_oldest(expired)
        return expired

    def snapshot(self) -> bytes:
        """Return the window as `restore` reads it: its live records, in order."""
        return _FORMAT + self._records[self._dead :]

    @classmethod
    def restore(cls, state: bytes | Mapping[str, tuple[float, ...]] | None) -> DedupWindow:
        """Return the window a snapshot holds: this format's, or an older release's dict."""
        window = cls()
        if state is None:
            return window
        if isinstance(state, Mapping):
            for message_id, entry in state.items():
                # Entries from before the stored flag were all of stored messages.
                stored = bool(entry[2]) if len(entry) > 2 else True
                window.put(message_id, float(entry[0]), int(entry[1]), stored)
            return window
        data = bytes(state)
        if not data.startswith(_FORMAT):
            logger.error("de-dup window snapshot of unknown format ignored (%d bytes)", len(data))
            return window
        body = memoryview(data)[len(_FORMAT) :]
        whole = len(body) - len(body) % _SIZE
        if whole != len(body):
            logger.error(
                "de-dup window snapshot cut short: its last %d bytes ignored", len(body) - whole
            )
        for raw_id, first_seen, deliveries, stored in _RECORD.iter_unpack(body[:whole]):
            if deliveries:  # not a removed entry's record
                window.put(raw_id.hex(), float(first_seen), deliveries, bool(stored))
        return window

    def _cut(self) -> None:
        """Forget the records of dropped entries before the first live one."""
        if not self._entries:
            self._first += len(self._records) // _SIZE
            self._records.clear()
            self._dead = 0
            return
        first_live = next(iter(self._entries.values()))[3]
        self._dead = (first_live - self._first) * _SIZE
        # Cutting moves the rest of the buffer: only once the dead part is half of it.
        if self._dead * 2 >= len(self._records):
            del self._records[: self._dead]
            self._first = first_live
            self._dead = 0


def _id_bytes(message_id: str) -> bytes:
    if len(message_id) == 32:
        try:
            return bytes.fromhex(message_id)
        except ValueError:
            pass
    return hashlib.blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
