"""Device payloads shaped as the three families send them, mixed into realistic traffic.

`payload_stream` is pure: from a roster, a random generator and a clock it yields the same
messages every time, each labelled with what the flow ought to make of it (`category`,
`expected_kinds`, `expected_readings`), so tests can check the flow against what was sent.

The shapes follow `shared/payloads/examples.jsonl` and the real capture, warts included:
AVA4 glucose and lipids as strings, float32 noise on thermometers and scales, MACs in either
case, gateways whose clocks run 178 days fast, watches that stamp AP55 batches in local time,
single-quoted pseudo-JSON inside Kati locations, Thai and English names on kiosk readings.
Every person in them is synthetic (see `flows.simulator.device_roster`).

Expected readings follow what `flows.devices.parse_payload` makes of a payload (a unit test holds
the two together): a cuff or oximeter reading is two (`blood_pressure` or `spo2`, and `heart_rate`
from its pulse), a Kati VitalSign five (`heart_rate`, `blood_pressure`, `body_temperature`, `spo2`,
`location`), an AP55 batch four per item (three without `spO2`) and one `location`, a Kati heartbeat
one `steps`, an SOS or fall one `emergency` (its location is context).

This module owns the mix: how often each kind of message is sent, the quotas for duplicates,
malformed, unknown-device and SOS messages, and that no new message repeats an old one. Each
family's messages are built in `flows.simulator.ava4`, `flows.simulator.kati` and
`flows.simulator.qube`, their values drawn by `flows.simulator.vital_signs`; damaged payloads
come from `flows.simulator.malformed_payloads`.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from flows.simulator.ava4 import Ava4Messages
from flows.simulator.device_roster import Roster
from flows.simulator.kati import KatiMessages
from flows.simulator.malformed_payloads import damaged_message
from flows.simulator.qube import QubeMessages
from flows.simulator.simulated_message import (
    CATEGORIES,
    DEFECTS,
    Category,
    Defect,
    MessageDraft,
    SimulatedMessage,
    encode_body,
)
from flows.simulator.vital_signs import VitalSigns

__all__ = [
    "CATEGORIES",
    "DEFECTS",
    "Category",
    "Defect",
    "SimulatedMessage",
    "payload_stream",
    "simulated_clock",
]

# The everyday mix once duplicates, malformed, unknown-device and SOS messages are set apart:
# heartbeats and locations dominate as in the real capture; measurements are a minority.
_TRAFFIC_MIX: dict[str, float] = {
    "ava4_heartbeat": 0.17,
    "kati_heartbeat": 0.17,
    "kati_location": 0.15,
    "ava4_measurement": 0.20,
    "kati_vital_sign": 0.08,
    "kati_ap55": 0.03,
    "kati_sleep": 0.02,
    "kati_online": 0.02,
    "qube_measurement": 0.09,
    "qube_heartbeat": 0.04,
    "ava4_power_on": 0.01,
    "cloud_command": 0.02,
}
_RECENT_ORIGINALS = 64
_SEEN_LIMIT = 200_000
_UNIQUE_ATTEMPTS = 20


class _Quota:
    """Spreads a fraction evenly but not periodically: counts stay within ~1 of fraction x n."""

    def __init__(self, fraction: float, rng: random.Random) -> None:
        self.fraction = fraction
        self.owed = 0.0
        self._rng = rng
        self._threshold = rng.uniform(0.5, 1.5)

    def accrue(self) -> None:
        self.owed += self.fraction

    @property
    def due(self) -> bool:
        return self.fraction > 0 and self.owed >= self._threshold

    def spend(self) -> None:
        self.owed -= 1.0
        self._threshold = self._rng.uniform(0.5, 1.5)


class _SeenPayloads:
    """Digests of recently sent (topic, payload) pairs, so no new message repeats an old one."""

    def __init__(self, limit: int = _SEEN_LIMIT) -> None:
        self._order: deque[bytes] = deque()
        self._digests: set[bytes] = set()
        self._limit = limit

    @staticmethod
    def _digest(topic: str, payload: bytes) -> bytes:
        return hashlib.blake2b(topic.encode() + b"\x00" + payload, digest_size=16).digest()

    def add_if_new(self, topic: str, payload: bytes) -> bool:
        digest = self._digest(topic, payload)
        if digest in self._digests:
            return False
        self._digests.add(digest)
        self._order.append(digest)
        if len(self._order) > self._limit:
            self._digests.discard(self._order.popleft())
        return True


def simulated_clock(start: datetime, interval_s: float) -> Callable[[], datetime]:
    """Return a clock that reads `start` first and `interval_s` later at each further call."""
    if start.tzinfo is None:
        msg = "simulated_clock needs a timezone-aware start"
        raise ValueError(msg)
    ticks = 0

    def now() -> datetime:
        nonlocal ticks
        moment = start + timedelta(seconds=interval_s * ticks)
        ticks += 1
        return moment

    return now


def payload_stream(
    roster: Roster,
    rng: random.Random,
    *,
    duplicate_fraction: float = 0.05,
    malformed_fraction: float = 0.02,
    unknown_fraction: float = 0.03,
    sos_fraction: float = 0.005,
    clock: Callable[[], datetime] | None = None,
) -> Iterator[SimulatedMessage]:
    """Yield simulated device messages forever; the caller decides when to stop.

    `clock` is read once per message for device times (default: a simulated clock starting
    now and advancing 0.1 s a message). The fractions are of all messages; what remains is
    everyday traffic (heartbeats, locations, measurements, status, commands).
    """
    fractions = {
        "duplicate_fraction": duplicate_fraction,
        "malformed_fraction": malformed_fraction,
        "unknown_fraction": unknown_fraction,
        "sos_fraction": sos_fraction,
    }
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            msg = f"{name} must be between 0 and 1, got {value}"
            raise ValueError(msg)
    if sum(fractions.values()) > 1.0:
        msg = "the duplicate, malformed, unknown and SOS fractions add up to more than 1"
        raise ValueError(msg)
    traffic = _Traffic(roster, rng)
    read_clock = clock or simulated_clock(datetime.now(UTC).replace(microsecond=0), 0.1)
    quotas = {
        "sos": _Quota(sos_fraction, rng),
        "malformed": _Quota(malformed_fraction, rng),
        "unknown": _Quota(unknown_fraction, rng),
        "duplicate": _Quota(duplicate_fraction, rng),
    }
    sequence = 0
    while True:
        now = read_clock()
        for quota in quotas.values():
            quota.accrue()
        message: SimulatedMessage | None = None
        if quotas["sos"].due:
            quotas["sos"].spend()
            message = traffic.unique(traffic.emergency, sequence, now)
        elif quotas["malformed"].due:
            quotas["malformed"].spend()
            message = traffic.unique(traffic.malformed, sequence, now)
        elif quotas["unknown"].due:
            quotas["unknown"].spend()
            message = traffic.unique(traffic.unknown_device, sequence, now)
        elif quotas["duplicate"].due and traffic.has_originals:
            quotas["duplicate"].spend()
            message = traffic.duplicate(sequence)
        if message is None:
            message = traffic.unique(traffic.everyday, sequence, now)
        traffic.remember(message)
        yield message
        sequence += 1


class _Traffic:
    """Mixes the families' messages into one stream and keeps what the stream remembers."""

    def __init__(self, roster: Roster, rng: random.Random) -> None:
        self._roster = roster
        self._rng = rng
        vitals = VitalSigns(rng)
        self._ava4 = Ava4Messages(roster, rng, vitals)
        self._kati = KatiMessages(roster, rng, vitals)
        self._qube = QubeMessages(roster, rng, vitals, fallback=self._ava4.measurement)
        self._seen = _SeenPayloads()
        self._originals: deque[SimulatedMessage] = deque(maxlen=_RECENT_ORIGINALS)
        self._builders: dict[str, Callable[[datetime], MessageDraft]] = {
            "ava4_heartbeat": self._ava4.heartbeat,
            "kati_heartbeat": self._kati.heartbeat,
            "kati_location": self._kati.location,
            "ava4_measurement": self._ava4.measurement,
            "kati_vital_sign": self._kati.vital_sign,
            "kati_ap55": self._kati.ap55,
            "kati_sleep": self._kati.sleep,
            "kati_online": self._kati.online,
            "qube_measurement": self._qube.measurement,
            "qube_heartbeat": self._qube.heartbeat,
            "ava4_power_on": self._ava4.power_on,
            "cloud_command": self._ava4.cloud_command,
        }
        self._mix_names = list(_TRAFFIC_MIX)
        self._mix_weights = list(_TRAFFIC_MIX.values())

    @property
    def has_originals(self) -> bool:
        return bool(self._originals)

    def remember(self, message: SimulatedMessage) -> None:
        # Only messages whose first copy gets stored are re-sent: the flow records de-dup
        # state for those, so each duplicate has one well-defined expected outcome (skipped).
        if message.category in ("valid", "status"):
            self._originals.append(message)

    def unique(
        self,
        build: Callable[[datetime], MessageDraft | SimulatedMessage],
        sequence: int,
        now: datetime,
    ) -> SimulatedMessage:
        """Return a message from `build` whose bytes were not sent before.

        An accidental repeat (the same heartbeat twice in one second) would be a duplicate
        that nobody labelled as one, so it is built again instead.
        """
        for _ in range(_UNIQUE_ATTEMPTS):
            message = self._finish(build(now), sequence)
            if self._seen.add_if_new(message.topic, message.payload):
                return message
        # A fix with fresh random coordinates is new bytes for all practical purposes.
        while True:
            message = self._finish(self._kati.location(now), sequence)
            if self._seen.add_if_new(message.topic, message.payload):
                return message

    @staticmethod
    def _finish(built: MessageDraft | SimulatedMessage, sequence: int) -> SimulatedMessage:
        if isinstance(built, SimulatedMessage):
            return replace(built, sequence=sequence)
        stored = built.category in ("valid", "status")
        return SimulatedMessage(
            topic=built.topic,
            payload=encode_body(built.body),
            category=built.category,
            expected_readings=len(built.expected_kinds) if stored else 0,
            family=built.family,
            message_kind=built.message_kind,
            sequence=sequence,
            device_id=built.device_id,
            lookup_key=built.lookup_key,
            patient_id=built.patient_id,
            expected_kinds=built.expected_kinds,
        )

    def everyday(self, now: datetime) -> MessageDraft:
        """Return a message of the everyday mix."""
        name = self._rng.choices(self._mix_names, self._mix_weights)[0]
        return self._builders[name](now)

    def duplicate(self, sequence: int) -> SimulatedMessage:
        """Return a byte-identical copy of a recent valid or status message."""
        original = self._rng.choice(self._originals)
        return replace(
            original,
            category="duplicate",
            expected_readings=0,
            sequence=sequence,
            duplicate_of=original.sequence,
        )

    def emergency(self, now: datetime) -> MessageDraft:
        """Return an SOS press or a detected fall from a patient's watch."""
        return self._kati.emergency(now)

    def unknown_device(self, now: datetime) -> MessageDraft:
        """Return a well-formed measurement from a device that is not in the registry."""
        family = self._rng.choice(("AVA4", "Kati", "Qube"))
        # Drawn for every family, though a watch message picks its own patient: dropping the
        # draw would shift every random value after it and change the stream.
        stranger = self._rng.choice(self._roster.patients)
        if family == "AVA4":
            return self._ava4.unknown_gateway_measurement(stranger, now)
        if family == "Kati":
            return self._kati.unknown_watch_message(now)
        return self._qube.unknown_card_measurement(stranger, now)

    def malformed(self, now: datetime) -> SimulatedMessage:
        """Return a measurement damaged the ways broken firmware and links damage messages."""
        build = self._rng.choice(
            (self._ava4.measurement, self._kati.vital_sign, self._qube.measurement)
        )
        return damaged_message(build(now), self._rng, now)
