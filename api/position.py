"""Resume positions: how far a stream has got in the steps topic, carried in every SSE `id:`.

A position is a vector holding, for each partition of the topic, the offset of the next record
to read there. Its text form lists `<partition>-<offset>` pairs joined by dots, in partition
order: `0-15.1-20.2-7` means "from offset 15 of partition 0, 20 of partition 1, 7 of
partition 2". The `id:` of a frame is the position just after everything the stream has
delivered or filtered out up to that frame, so a client resuming with it (`Last-Event-ID`)
gets exactly the events that follow, whichever API process serves it, as long as Kafka still
holds them. Offsets are Kafka's own, so a position outlives any API process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_PARTITIONS", "Position", "PositionError"]

MAX_PARTITIONS = 1024
_MAX_TEXT = 16 * MAX_PARTITIONS
_PAIR = re.compile(r"([0-9]{1,5})-([0-9]{1,19})")


class PositionError(ValueError):
    """A resume position that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class Position:
    """The next offset to read in each partition, indexed by partition number."""

    offsets: tuple[int, ...]

    @classmethod
    def zeros(cls, partitions: int) -> Position:
        """Return the position before the first record of every partition."""
        return cls((0,) * partitions)

    @classmethod
    def decode(cls, text: str) -> Position:
        """Parse the text form; partitions left out start from offset 0."""
        if not text or len(text) > _MAX_TEXT:
            msg = "a position is a non-empty list of <partition>-<offset> pairs"
            raise PositionError(msg)
        found: dict[int, int] = {}
        for part in text.split("."):
            match = _PAIR.fullmatch(part)
            if match is None:
                msg = f"not a <partition>-<offset> pair: {part[:40]!r}"
                raise PositionError(msg)
            partition, offset = int(match[1]), int(match[2])
            if partition >= MAX_PARTITIONS or partition in found:
                msg = f"partition {partition} is out of range or repeated"
                raise PositionError(msg)
            found[partition] = offset
        offsets = [0] * (max(found) + 1)
        for partition, offset in found.items():
            offsets[partition] = offset
        return cls(tuple(offsets))

    def encode(self) -> str:
        """Return the text form, as used in SSE ids and `last_event_id`."""
        return ".".join(f"{partition}-{offset}" for partition, offset in enumerate(self.offsets))

    def __str__(self) -> str:
        return self.encode()

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, partition: int) -> int:
        return self.offsets[partition]

    def advanced(self, partition: int, offset: int) -> Position:
        """Return the position after reading the record at `offset` of `partition`."""
        offsets = list(self.offsets)
        offsets[partition] = max(offsets[partition], offset + 1)
        return Position(tuple(offsets))

    def with_offset(self, partition: int, offset: int) -> Position:
        """Return the position with one partition moved to `offset`, either way."""
        offsets = list(self.offsets)
        offsets[partition] = offset
        return Position(tuple(offsets))

    def merged(self, other: Position) -> Position:
        """Return the partition-wise furthest of two positions of the same topic."""
        if self.offsets == other.offsets:
            return self
        return Position(tuple(map(max, self.offsets, other.offsets)))

    def covers(self, other: Position) -> bool:
        """Tell whether this position is at or past `other` in every partition."""
        return all(mine >= theirs for mine, theirs in zip(self.offsets, other.offsets, strict=True))

    def resized(self, partitions: int) -> Position:
        """Fit the position to a topic of `partitions` partitions (new ones start at 0)."""
        if partitions <= len(self.offsets):
            return Position(self.offsets[:partitions])
        return Position(self.offsets + (0,) * (partitions - len(self.offsets)))
