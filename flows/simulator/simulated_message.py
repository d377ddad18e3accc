"""What a simulated message is, before and after encoding, and the labels it carries.

`MessageDraft` is what a family's builder returns (`flows.simulator.ava4`,
`flows.simulator.kati`, `flows.simulator.qube`): a JSON body plus what the flow ought
to make of it. `flows.simulator.payload_factory` numbers and encodes drafts into the
`SimulatedMessage`s it streams. The encoding and the device-time helpers live here because
every family and the malformed-payload builder share them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from flows.model import ObservationKind

__all__ = [
    "CATEGORIES",
    "DEFECTS",
    "Category",
    "Defect",
    "MessageDraft",
    "SimulatedMessage",
    "encode_body",
    "epoch_seconds",
    "readings_of",
]

Category = Literal["valid", "duplicate", "malformed", "unknown_device", "status", "command"]
CATEGORIES: tuple[Category, ...] = get_args(Category)

Defect = Literal["truncated", "single_quoted", "binary", "not_an_object", "wrong_types", "empty"]
DEFECTS: tuple[Defect, ...] = get_args(Defect)

# The readings one measurement of a device kind yields: cuffs and oximeters report a pulse,
# stored as a heart-rate reading of its own.
_READINGS_OF: dict[ObservationKind, tuple[ObservationKind, ...]] = {
    ObservationKind.BLOOD_PRESSURE: (ObservationKind.BLOOD_PRESSURE, ObservationKind.HEART_RATE),
    ObservationKind.SPO2: (ObservationKind.SPO2, ObservationKind.HEART_RATE),
}


@dataclass(frozen=True)
class SimulatedMessage:
    """One message the simulator sends, and what the flow should make of it.

    `expected_kinds` lists the readings the payload carries (one entry per reading);
    `expected_readings` is how many observations the flow should store for this delivery:
    all of them for `valid` and `status` messages, none for the other categories.
    `payload` and `lookup_key` can hold (synthetic) personal data and stay out of `repr()`.
    """

    topic: str
    payload: bytes = field(repr=False)
    category: Category
    expected_readings: int
    family: str
    message_kind: str
    sequence: int = 0
    device_id: str | None = None
    lookup_key: str | None = field(default=None, repr=False)
    patient_id: str | None = None
    expected_kinds: tuple[ObservationKind, ...] = ()
    defect: Defect | None = None
    duplicate_of: int | None = None


@dataclass(frozen=True)
class MessageDraft:
    """A message before encoding: its JSON body and labels."""

    topic: str
    body: dict[str, Any]
    category: Category
    family: str
    message_kind: str
    device_id: str | None
    lookup_key: str | None
    patient_id: str | None
    expected_kinds: tuple[ObservationKind, ...] = ()


def encode_body(body: object) -> bytes:
    """Return `body` as the JSON bytes a device sends."""
    # Devices send UTF-8 (Thai names on kiosk readings), not \u escapes.
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def epoch_seconds(moment: datetime, offset_s: int = 0) -> int:
    """Return `moment` as a device's epoch seconds, its clock `offset_s` off."""
    return int(moment.timestamp()) + offset_s


def readings_of(kind: ObservationKind) -> tuple[ObservationKind, ...]:
    """Return the readings one measurement of a device of `kind` yields."""
    return _READINGS_OF.get(kind, (kind,))
