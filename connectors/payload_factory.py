"""Device payloads shaped as the three families send them, mixed into realistic traffic.

`payload_stream` is pure: from a roster, a random generator and a clock it yields the same
messages every time, each labelled with what the flow ought to make of it (`category`,
`expected_kinds`, `expected_readings`), so tests can check the flow against what was sent.

The shapes follow `shared/payloads/examples.jsonl` and the real capture, warts included:
AVA4 glucose and lipids as strings, float32 noise on thermometers and scales, MACs in either
case, gateways whose clocks run 178 days fast, watches that stamp AP55 batches in local time,
single-quoted pseudo-JSON inside Kati locations, Thai and English names on kiosk readings.
Every person in them is synthetic (see `connectors.device_roster`).

Expected readings follow what `flows.parse` makes of a payload (a unit test holds the two
together): a cuff or oximeter reading is two (`blood_pressure` or `spo2`, and `heart_rate`
from its pulse), a Kati VitalSign five (`heart_rate`, `blood_pressure`, `body_temperature`,
`spo2`, `location`), an AP55 batch four per item (three without `spO2`) and one `location`,
a Kati heartbeat one `steps`, an SOS or fall one `emergency` (its location is context).
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from connectors.device_roster import (
    Ava4Gateway,
    BleDevice,
    CitizenCard,
    Hospital,
    Kiosk,
    KioskDevice,
    Patient,
    Roster,
    VitalProfile,
    Watch,
)
from flows.devices.identifiers import IdKind
from flows.model import ObservationKind

__all__ = [
    "CATEGORIES",
    "DEFECTS",
    "Category",
    "Defect",
    "SimulatedMessage",
    "payload_stream",
    "simulated_clock",
]

Category = Literal["valid", "duplicate", "malformed", "unknown_device", "status", "command"]
CATEGORIES: tuple[Category, ...] = get_args(Category)

Defect = Literal["truncated", "single_quoted", "binary", "not_an_object", "wrong_types", "empty"]
DEFECTS: tuple[Defect, ...] = get_args(Defect)

_DEFECT_WEIGHTS: dict[Defect, float] = {
    "truncated": 0.3,
    "single_quoted": 0.15,
    "binary": 0.15,
    "not_an_object": 0.1,
    "wrong_types": 0.25,
    "empty": 0.05,
}

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

# How often each BLE device of a home gateway takes a reading, relative to the others.
_AVA4_DEVICE_WEIGHTS: dict[ObservationKind, float] = {
    ObservationKind.BLOOD_PRESSURE: 0.30,
    ObservationKind.SPO2: 0.20,
    ObservationKind.BLOOD_GLUCOSE: 0.18,
    ObservationKind.BODY_TEMPERATURE: 0.15,
    ObservationKind.BODY_WEIGHT: 0.09,
    ObservationKind.URIC_ACID: 0.04,
    ObservationKind.CHOLESTEROL: 0.04,
}

# The readings one measurement of a device kind yields: cuffs and oximeters report a pulse,
# stored as a heart-rate reading of its own.
_READINGS_OF: dict[ObservationKind, tuple[ObservationKind, ...]] = {
    ObservationKind.BLOOD_PRESSURE: (ObservationKind.BLOOD_PRESSURE, ObservationKind.HEART_RATE),
    ObservationKind.SPO2: (ObservationKind.SPO2, ObservationKind.HEART_RATE),
}
_KATI_VITAL_KINDS = (
    ObservationKind.HEART_RATE,
    ObservationKind.BLOOD_PRESSURE,
    ObservationKind.BODY_TEMPERATURE,
    ObservationKind.SPO2,
)
_SSIDS = ("ward-3", "home-wifi", "a", "3BB_2.4G", "AIS_FIBRE", "TRUE_5G", "guest")
_KATI_TIME_FORMAT = "%d/%m/%Y %H:%M:%S"
_AP55_LOCAL_OFFSET_S = 7 * 3600
_RECENT_ORIGINALS = 64
_SEEN_LIMIT = 200_000
_UNIQUE_ATTEMPTS = 20


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
class _Draft:
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


@dataclass
class _WatchState:
    battery: float
    steps: int
    day: str


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
            message = traffic.unique(traffic.kati_emergency, sequence, now)
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


def _encode(body: object) -> bytes:
    # Devices send UTF-8 (Thai names on kiosk readings), not \u escapes.
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _float32(value: float) -> float:
    """Return `value` as a float32 device prints it (36.43 -> 36.43000031)."""
    single: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return float(f"{single:.10g}")


def _epoch(moment: datetime, offset_s: int = 0) -> int:
    return int(moment.timestamp()) + offset_s


def _kati_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_KATI_TIME_FORMAT)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


class _Vitals:
    """Physiological values around a patient's profile, with abnormal episodes mixed in."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def blood_pressure(self, profile: VitalProfile) -> tuple[int, int, int]:
        """Return systolic, diastolic (mmHg) and pulse (/min)."""
        r = self._rng
        systolic = r.gauss(profile.systolic_mmhg, 7)
        diastolic = r.gauss(profile.diastolic_mmhg, 5)
        episode = r.random()
        if episode < (0.06 if profile.hypertensive else 0.04):
            systolic += r.uniform(22, 40)
            diastolic += r.uniform(10, 22)
        elif episode > 0.98:
            systolic, diastolic = r.uniform(82, 95), r.uniform(48, 60)
        systolic = _clamp(systolic, 70, 230)
        diastolic = _clamp(diastolic, 40, min(140, systolic - 15))
        pulse = _clamp(r.gauss(profile.heart_rate_bpm, 6), 40, 160)
        return round(systolic), round(diastolic), round(pulse)

    def heart_rate(self, profile: VitalProfile) -> int:
        """Return a heart rate in /min, occasionally tachycardic."""
        r = self._rng
        rate = r.gauss(profile.heart_rate_bpm, 6)
        if r.random() < 0.03:
            rate = r.uniform(110, 140)
        return round(_clamp(rate, 40, 180))

    def spo2(self, profile: VitalProfile) -> int:
        """Return SpO2 in %, with desaturations (more often with chronic lung disease)."""
        r = self._rng
        value = r.gauss(profile.spo2_pct, 1.0)
        if r.random() < (0.3 if profile.chronic_lung_disease else 0.03):
            value = r.uniform(82, 89)
        return round(_clamp(value, 70, 100))

    def perfusion_index(self) -> int:
        """Return the oximeter's perfusion index, in tenths of a percent as it sends it."""
        return self._rng.randint(8, 150)

    def glucose(self, profile: VitalProfile) -> tuple[int, str]:
        """Return blood glucose in mg/dL and the meal marker."""
        r = self._rng
        marker = r.choice(("Before Meal", "After Meal"))
        value = r.gauss(profile.glucose_mg_dl, 15 if profile.diabetic else 8)
        if marker == "After Meal":
            value += r.uniform(10, 40)
        episode = r.random()
        if episode < (0.08 if profile.diabetic else 0.015):
            value = r.uniform(45, 68)
        elif profile.diabetic and episode > 0.9:
            value = r.uniform(250, 380)
        return round(_clamp(value, 30, 500)), marker

    def temperature(self, profile: VitalProfile) -> float:
        """Return body temperature in degC (two decimals), feverish now and then."""
        r = self._rng
        value = r.gauss(profile.body_temperature_c, 0.2)
        if r.random() < 0.05:
            value = r.uniform(38.0, 39.8)
        return round(_clamp(value, 34.5, 42.0), 2)

    def weight(self, profile: VitalProfile) -> tuple[float, float]:
        """Return body weight in kg and the scale's bio-impedance in ohm."""
        r = self._rng
        return round(r.gauss(profile.weight_kg, 0.4), 1), round(r.uniform(450, 700), 1)

    def uric_acid(self, profile: VitalProfile) -> float:
        """Return uric acid in umol/L."""
        return round(_clamp(self._rng.gauss(profile.uric_acid_umol_l, 30), 90, 900), 1)

    def cholesterol(self, profile: VitalProfile) -> float:
        """Return total cholesterol in mmol/L."""
        return round(_clamp(self._rng.gauss(profile.cholesterol_mmol_l, 0.3), 2.0, 12.0), 1)


class _Traffic:
    """Builds the messages of one stream and keeps the state devices carry between them."""

    def __init__(self, roster: Roster, rng: random.Random) -> None:
        self._roster = roster
        self._rng = rng
        self._vitals = _Vitals(rng)
        self._watches: dict[str, _WatchState] = {}
        self._seen = _SeenPayloads()
        self._originals: deque[SimulatedMessage] = deque(maxlen=_RECENT_ORIGINALS)
        self._card_holders = [p for p in roster.patients if p.card is not None]
        self._builders: dict[str, Callable[[datetime], _Draft]] = {
            "ava4_heartbeat": self.ava4_heartbeat,
            "kati_heartbeat": self.kati_heartbeat,
            "kati_location": self.kati_location,
            "ava4_measurement": self.ava4_measurement,
            "kati_vital_sign": self.kati_vital_sign,
            "kati_ap55": self.kati_ap55,
            "kati_sleep": self.kati_sleep,
            "kati_online": self.kati_online,
            "qube_measurement": self.qube_measurement,
            "qube_heartbeat": self.qube_heartbeat,
            "ava4_power_on": self.ava4_power_on,
            "cloud_command": self.cloud_command,
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
        build: Callable[[datetime], _Draft | SimulatedMessage],
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
            message = self._finish(self.kati_location(now), sequence)
            if self._seen.add_if_new(message.topic, message.payload):
                return message

    @staticmethod
    def _finish(built: _Draft | SimulatedMessage, sequence: int) -> SimulatedMessage:
        if isinstance(built, SimulatedMessage):
            return replace(built, sequence=sequence)
        stored = built.category in ("valid", "status")
        return SimulatedMessage(
            topic=built.topic,
            payload=_encode(built.body),
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

    def everyday(self, now: datetime) -> _Draft:
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

    def _patient(self) -> Patient:
        return self._rng.choice(self._roster.patients)

    # AVA4 -------------------------------------------------------------------------------

    def _ava4_status(
        self, gateway: Ava4Gateway, now: datetime, *, power_on: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "from": "ESP32_S3_GW" if power_on else "ESP32_GW",
            "to": "CLOUD",
        }
        if not power_on:
            body["name"] = gateway.name
        body |= {
            "time": _epoch(now, gateway.clock_offset_s),
            "mac": gateway.wire_mac,
            "IMEI": gateway.imei,
            "ICCID": gateway.iccid,
            "type": "reportMsg" if power_on else "HB_Msg",
            "data": {"msg": "Online"},
        }
        return body

    def ava4_heartbeat(self, now: datetime) -> _Draft:
        """Return a gateway heartbeat (`HB_Msg` on `ESP32_BLE_GW_TX`)."""
        return self._ava4_status_draft(now, power_on=False)

    def ava4_power_on(self, now: datetime) -> _Draft:
        """Return a gateway's power-on report (`reportMsg`)."""
        return self._ava4_status_draft(now, power_on=True)

    def _ava4_status_draft(self, now: datetime, *, power_on: bool) -> _Draft:
        patient = self._patient()
        gateway = patient.gateway
        return _Draft(
            topic="ESP32_BLE_GW_TX",
            body=self._ava4_status(gateway, now, power_on=power_on),
            category="status",
            family="AVA4",
            message_kind="reportMsg" if power_on else "HB_Msg",
            device_id=gateway.mac,
            lookup_key=IdKind.GATEWAY.key(gateway.mac),
            patient_id=patient.patient_id,
        )

    def _ble_fields(self, device: BleDevice, profile: VitalProfile) -> dict[str, Any]:
        kind = device.model.kind
        v = self._vitals
        if kind is ObservationKind.BLOOD_PRESSURE:
            systolic, diastolic, pulse = v.blood_pressure(profile)
            return {"bp_high": systolic, "bp_low": diastolic, "PR": pulse}
        if kind is ObservationKind.SPO2:
            pulse = v.heart_rate(profile)
            return {"pulse": pulse, "spo2": v.spo2(profile), "pi": v.perfusion_index()}
        if kind is ObservationKind.BLOOD_GLUCOSE:
            glucose, marker = v.glucose(profile)
            # SPEC.md: behind AVA4 the glucose value is a string.
            return {"scan_rssi": self._rssi(), "blood_glucose": str(glucose), "marker": marker}
        if kind is ObservationKind.BODY_TEMPERATURE:
            return {"temp": _float32(v.temperature(profile)), "mode": "Head"}
        if kind is ObservationKind.BODY_WEIGHT:
            weight, resistance = v.weight(profile)
            return {"weight": _float32(weight), "resistance": _float32(resistance)}
        if kind is ObservationKind.URIC_ACID:
            return {"scan_rssi": self._rssi(), "uric_acid": str(v.uric_acid(profile))}
        return {"scan_rssi": self._rssi(), "cholesterol": str(v.cholesterol(profile))}

    def _rssi(self) -> int:
        return self._rng.randint(-90, -45)

    def _ava4_reading(
        self, gateway: Ava4Gateway, device: BleDevice, profile: VitalProfile, now: datetime
    ) -> tuple[dict[str, Any], int]:
        # One upload now and then carries readings the device stored while out of range.
        count = self._rng.choice((2, 2, 3)) if self._rng.random() < 0.12 else 1
        gaps = sorted((self._rng.randint(60, 900) for _ in range(count - 1)), reverse=True)
        scan_times = [_epoch(now, gateway.clock_offset_s) - g for g in gaps]
        scan_times.append(_epoch(now, gateway.clock_offset_s))
        items = [
            {"scan_time": t, "ble_addr": device.wire_address, **self._ble_fields(device, profile)}
            for t in scan_times
        ]
        body = {
            "from": "BLE",
            "to": "CLOUD",
            "time": _epoch(now, gateway.clock_offset_s),
            "deviceCode": gateway.wire_mac,
            "mac": gateway.wire_mac,
            "type": "reportAttribute",
            "device": device.model.device_name,
            "data": {
                "attribute": device.model.attribute,
                "mac": gateway.wire_mac,
                "value": {"device_list": items},
            },
        }
        return body, count

    def _pick_ble(self, gateway: Ava4Gateway) -> BleDevice:
        weights = [_AVA4_DEVICE_WEIGHTS[d.model.kind] for d in gateway.devices]
        return self._rng.choices(gateway.devices, weights)[0]

    def ava4_measurement(self, now: datetime) -> _Draft:
        """Return a `reportAttribute` on `dusun_pub` from a patient's BLE device."""
        patient = self._patient()
        gateway = patient.gateway
        device = self._pick_ble(gateway)
        body, count = self._ava4_reading(gateway, device, patient.profile, now)
        return _Draft(
            topic="dusun_pub",
            body=body,
            category="valid",
            family="AVA4",
            message_kind=device.model.attribute,
            device_id=gateway.mac,
            lookup_key=IdKind.BLE.key(device.address),
            patient_id=patient.patient_id,
            expected_kinds=_readings_of(device.model.kind) * count,
        )

    def cloud_command(self, now: datetime) -> _Draft:
        """Return a cloud command to a gateway on `dusun_sub` (not device data)."""
        gateway = self._patient().gateway
        body = {
            "data": {
                "arguments": {"attribute": "gateway.status", "value": {}, "mac": gateway.wire_mac},
                "id": self._rng.randbytes(12).hex(),
                "command": "getAttribute",
            },
            "deviceCode": gateway.name,
            "time": _epoch(now),
            "mac": gateway.wire_mac,
            "to": "GATEWAY",
            "from": "CLOUD",
            "type": "cmd",
        }
        return _Draft(
            topic="dusun_sub",
            body=body,
            category="command",
            family="AVA4",
            message_kind="cmd",
            device_id=gateway.mac,
            lookup_key=None,
            patient_id=None,
        )

    # Kati -------------------------------------------------------------------------------

    def _watch_state(self, watch: Watch, now: datetime) -> _WatchState:
        day = now.date().isoformat()
        state = self._watches.get(watch.imei)
        if state is None:
            state = _WatchState(battery=self._rng.uniform(30, 100), steps=0, day=day)
            self._watches[watch.imei] = state
        if state.day != day:
            state.steps, state.day = 0, day
        state.steps += self._rng.randint(0, 160)
        state.battery -= self._rng.uniform(0.0, 0.6)
        if state.battery < 8:
            # Put back on the charger overnight.
            state.battery = self._rng.uniform(90, 100)
        return state

    def _gps(self, latitude: float, longitude: float, *, with_motion: bool) -> dict[str, Any]:
        r = self._rng
        gps: dict[str, Any] = {
            "latitude": round(latitude + r.uniform(-0.0008, 0.0008), 6),
            "longitude": round(longitude + r.uniform(-0.0008, 0.0008), 6),
        }
        if with_motion:
            gps |= {"speed": round(r.choice((0.0, 0.0, r.uniform(0, 1.6))), 2)}
            gps |= {"header": round(r.uniform(0, 360), 2)}
        return gps

    def _wifi_text(self) -> str:
        # SPEC.md: the watch embeds its Wi-Fi scan as single-quoted pseudo-JSON text.
        r = self._rng
        entries = []
        for _ in range(r.randint(1, 4)):
            mac = "-".join(f"{r.randrange(256):02x}" for _ in range(6))
            ssid, rssi = r.choice(_SSIDS), r.randint(40, 120)
            entries.append(f"{{'SSID':'{ssid}','MAC':'{mac}','RSSI':'{rssi}'}}")
        return "[" + ",".join(entries) + "]"

    def _lbs(self, *, with_set_base: bool) -> dict[str, Any]:
        r = self._rng
        lac = str(r.randint(1000, 20000))
        cid = str(r.randint(10_000_000, 199_999_999))
        network = r.choice(("1", "3", "5"))
        lbs: dict[str, Any] = {"MCC": "520", "MNC": network, "LAC": lac, "CID": cid}
        if with_set_base:
            neighbour = int(cid) + r.randint(1, 9)
            lbs["SetBase"] = f"[{{'LAC':'{lac}','CID':'{neighbour}','dbm':'{r.randint(30, 60)}'}}]"
        return lbs

    def _location(self, patient: Patient, *, with_motion: bool = True) -> dict[str, Any]:
        r = self._rng
        hospital = self._roster.hospital(patient.hospital_id)
        at_hospital = r.random() < 0.15
        latitude = hospital.latitude if at_hospital else patient.home_latitude
        longitude = hospital.longitude if at_hospital else patient.home_longitude
        return {
            "GPS": self._gps(latitude, longitude, with_motion=with_motion),
            "WiFi": self._wifi_text(),
            "LBS": self._lbs(with_set_base=with_motion),
        }

    def _kati_draft(
        self,
        patient: Patient,
        suffix: str,
        body: dict[str, Any],
        *,
        category: Category,
        kinds: tuple[ObservationKind, ...] = (),
        watch: Watch | None = None,
    ) -> _Draft:
        imei = (watch or patient.watch).imei
        return _Draft(
            topic=f"iMEDE_watch/{suffix}",
            body=body,
            category=category,
            family="Kati",
            message_kind=suffix,
            device_id=imei,
            lookup_key=IdKind.IMEI.key(imei),
            patient_id=patient.patient_id if category != "unknown_device" else None,
            expected_kinds=kinds,
        )

    def kati_heartbeat(self, now: datetime) -> _Draft:
        """Return a watch heartbeat: battery, signal and the day's step count."""
        patient = self._patient()
        state = self._watch_state(patient.watch, now)
        r = self._rng
        body = {
            "IMEI": patient.watch.imei,
            "signalGSM": r.choice((40, 60, 80, 100, 100)),
            "battery": round(state.battery),
            "satellites": r.choice((0, 0, 0, 3, 4, 7)),
            "workingMode": r.choice((1, 1, 2)),
            "timeStamps": _kati_time(now),
            "step": state.steps,
        }
        return self._kati_draft(
            patient, "hb", body, category="status", kinds=(ObservationKind.STEPS,)
        )

    def kati_location(self, now: datetime, watch: Watch | None = None) -> _Draft:
        """Return a location fix (the real watch sends one a minute, `time` not `timeStamps`)."""
        patient = self._patient()
        body = {
            "time": _kati_time(now),
            "IMEI": (watch or patient.watch).imei,
            "location": self._location(patient),
        }
        return self._kati_draft(
            patient,
            "location",
            body,
            category="unknown_device" if watch else "valid",
            kinds=(ObservationKind.LOCATION,),
            watch=watch,
        )

    def _kati_vitals(self, profile: VitalProfile) -> dict[str, Any]:
        systolic, diastolic, _ = self._vitals.blood_pressure(profile)
        return {
            "heartRate": self._vitals.heart_rate(profile),
            "bloodPressure": {"bp_sys": systolic, "bp_dia": diastolic},
            "bodyTemperature": round(self._vitals.temperature(profile), 1),
            "spO2": self._vitals.spo2(profile),
        }

    def kati_vital_sign(self, now: datetime, watch: Watch | None = None) -> _Draft:
        """Return a `VitalSign` message: heart rate, BP, temperature and SpO2 at once."""
        patient = self._patient()
        state = self._watch_state(watch or patient.watch, now)
        body = {
            "IMEI": (watch or patient.watch).imei,
            **self._kati_vitals(patient.profile),
            "signalGSM": self._rng.choice((60, 80, 100)),
            "battery": round(state.battery),
            "location": self._location(patient, with_motion=False),
            "timeStamps": _kati_time(now),
        }
        return self._kati_draft(
            patient,
            "VitalSign",
            body,
            category="unknown_device" if watch else "valid",
            kinds=(*_KATI_VITAL_KINDS, ObservationKind.LOCATION),
            watch=watch,
        )

    def kati_ap55(self, now: datetime) -> _Draft:
        """Return an `AP55` batch of vitals taken every 5 minutes, oldest first."""
        patient = self._patient()
        watch = patient.watch
        count = self._rng.randint(2, 6)
        offset = _AP55_LOCAL_OFFSET_S if watch.ap55_local_time else 0
        items: list[dict[str, Any]] = []
        kinds: list[ObservationKind] = []
        for index in range(count):
            vitals = self._kati_vitals(patient.profile)
            if self._rng.random() < 0.1:
                # SPEC.md: spO2 is optional in AP55 items.
                del vitals["spO2"]
            taken = _epoch(now, offset) - 300 * (count - 1 - index)
            items.append({"timestamp": taken, **vitals})
            kinds += [
                k for k in _KATI_VITAL_KINDS if k is not ObservationKind.SPO2 or "spO2" in vitals
            ]
        body = {
            "IMEI": watch.imei,
            "location": self._location(patient),
            "timeStamps": _kati_time(now),
            "num_datas": count,
            "data": items,
        }
        kinds.append(ObservationKind.LOCATION)
        return self._kati_draft(patient, "AP55", body, category="valid", kinds=tuple(kinds))

    def kati_sleep(self, now: datetime) -> _Draft:
        """Return a night's `sleepdata`: one digit (0 awake .. 3) per 5-minute slot."""
        patient = self._patient()
        r = self._rng
        start_hour, end_hour = r.choice((21, 22, 23)), r.choice((5, 6, 7))
        slots = (24 - start_hour + end_hour) * 12
        digits: list[str] = []
        level = 0
        for slot in range(slots):
            if slot < r.randint(2, 6) or slot > slots - r.randint(2, 5):
                level = 0
            elif r.random() < 0.15:
                level = r.choices((0, 1, 2, 3), (0.1, 0.5, 0.3, 0.1))[0]
            elif level == 0 and r.random() < 0.5:
                level = 1
            digits.append(str(level))
        body = {
            "IMEI": patient.watch.imei,
            "sleep": {
                "timeStamps": _kati_time(now),
                "time": f"{start_hour:02d}00@{end_hour:02d}00",
                "data": "".join(digits),
                "num": slots,
            },
        }
        return self._kati_draft(
            patient, "sleepdata", body, category="valid", kinds=(ObservationKind.SLEEP,)
        )

    def kati_online(self, now: datetime) -> _Draft:
        """Return an `onlineTrigger` status (online or offline)."""
        del now  # the real message carries no time
        patient = self._patient()
        body = {
            "IMEI": patient.watch.imei,
            "status": self._rng.choices(("online", "offline"), (0.6, 0.4))[0],
        }
        return self._kati_draft(patient, "onlineTrigger", body, category="status")

    def kati_emergency(self, now: datetime) -> _Draft:
        """Return an SOS press or a detected fall, under the topic spellings seen in the field."""
        del now  # the real message carries no time
        patient = self._patient()
        r = self._rng
        if r.random() < 0.65:
            suffix, status = r.choices(("SOS", "sos"), (0.8, 0.2))[0], "SOS"
        else:
            suffix, status = r.choices(("fallDown", "FALLDOWN"), (0.8, 0.2))[0], "FALL DOWN"
        body = {"status": status, "location": self._location(patient), "IMEI": patient.watch.imei}
        return self._kati_draft(
            patient, suffix, body, category="valid", kinds=(ObservationKind.EMERGENCY,)
        )

    # Qube -------------------------------------------------------------------------------

    def qube_heartbeat(self, now: datetime) -> _Draft:
        """Return a kiosk heartbeat (`HB_Msg` on `CM4_BLE_GW_TX`)."""
        kiosk = self._rng.choice(self._roster.hospitals).kiosk
        body = {
            "from": "PI_GW",
            "to": "CLOUD",
            "name": kiosk.name,
            "time": _epoch(now),
            "mac": kiosk.wire_mac,
            "IMEI": kiosk.imei,
            "ICCID": kiosk.iccid,
            "type": "HB_Msg",
            "data": {"msg": "Online"},
        }
        return _Draft(
            topic="CM4_BLE_GW_TX",
            body=body,
            category="status",
            family="Qube",
            message_kind="HB_Msg",
            device_id=kiosk.mac,
            lookup_key=None,
            patient_id=None,
        )

    def _qube_value(self, device: KioskDevice, profile: VitalProfile) -> dict[str, Any]:
        kind = device.model.kind
        v = self._vitals
        # SPEC.md: the kiosk spells fields its own way (`pr`, `Temp`, `Resistance`) and sends
        # glucose as a number.
        if kind is ObservationKind.BLOOD_PRESSURE:
            systolic, diastolic, pulse = v.blood_pressure(profile)
            return {"bp_high": systolic, "bp_low": diastolic, "pr": pulse}
        if kind is ObservationKind.BLOOD_GLUCOSE:
            glucose, marker = v.glucose(profile)
            return {"blood_glucose": glucose, "marker": marker}
        if kind is ObservationKind.BODY_WEIGHT:
            weight, resistance = v.weight(profile)
            return {"weight": weight, "Resistance": resistance}
        if kind is ObservationKind.BODY_TEMPERATURE:
            return {"mode": "Head", "Temp": v.temperature(profile)}
        return {"pulse": v.heart_rate(profile), "spo2": v.spo2(profile), "pi": v.perfusion_index()}

    def _qube_reading(
        self, kiosk: Kiosk, card: CitizenCard, profile: VitalProfile, now: datetime
    ) -> tuple[dict[str, Any], KioskDevice]:
        device = self._rng.choice(kiosk.devices)
        born = card.birth_date
        body = {
            "from": "PI",
            "to": "CLOUD",
            "time": _epoch(now),
            "mac": kiosk.wire_mac,
            "type": "reportAttribute",
            "citiz": card.citizen_id,
            "nameTH": card.name_th,
            "nameEN": card.name_en,
            # SPEC.md: `brith` (sic) is YYYYMMDD in the Buddhist Era.
            "brith": f"{born.year + 543:04d}{born.month:02d}{born.day:02d}",
            "gender": card.gender,
            "data": {
                "attribute": device.model.attribute,
                "ble_mac": device.ble_mac,
                "value": self._qube_value(device, profile),
            },
        }
        return body, device

    def qube_measurement(self, now: datetime) -> _Draft:
        """Return a kiosk reading of a registered patient, identified by citizen ID."""
        if not self._card_holders:
            return self.ava4_measurement(now)
        patient = self._rng.choice(self._card_holders)
        card = patient.card
        if card is None:  # pragma: no cover - _card_holders only holds patients with cards
            return self.ava4_measurement(now)
        kiosk = self._roster.hospital(patient.hospital_id).kiosk
        body, device = self._qube_reading(kiosk, card, patient.profile, now)
        return _Draft(
            topic="CM4_BLE_GW_TX",
            body=body,
            category="valid",
            family="Qube",
            message_kind=device.model.attribute,
            device_id=kiosk.mac,
            lookup_key=IdKind.CITIZEN_ID.key(card.citizen_id),
            patient_id=patient.patient_id,
            expected_kinds=_readings_of(device.model.kind),
        )

    # Unknown devices and malformed payloads ---------------------------------------------

    def unknown_device(self, now: datetime) -> _Draft:
        """Return a well-formed measurement from a device that is not in the registry."""
        r = self._rng
        family = r.choice(("AVA4", "Kati", "Qube"))
        stranger = self._patient()
        if family == "AVA4":
            gateway = r.choice(self._roster.unknown_gateways)
            device = self._pick_ble(gateway)
            body, count = self._ava4_reading(gateway, device, stranger.profile, now)
            return _Draft(
                topic="dusun_pub",
                body=body,
                category="unknown_device",
                family="AVA4",
                message_kind=device.model.attribute,
                device_id=gateway.mac,
                lookup_key=IdKind.BLE.key(device.address),
                patient_id=None,
                expected_kinds=_readings_of(device.model.kind) * count,
            )
        if family == "Kati":
            watch = r.choice(self._roster.unknown_watches)
            if r.random() < 0.5:
                return self.kati_vital_sign(now, watch=watch)
            return self.kati_location(now, watch=watch)
        hospital: Hospital = r.choice(self._roster.hospitals)
        card = r.choice(self._roster.unknown_cards)
        body, kiosk_device = self._qube_reading(hospital.kiosk, card, stranger.profile, now)
        return _Draft(
            topic="CM4_BLE_GW_TX",
            body=body,
            category="unknown_device",
            family="Qube",
            message_kind=kiosk_device.model.attribute,
            device_id=hospital.kiosk.mac,
            lookup_key=IdKind.CITIZEN_ID.key(card.citizen_id),
            patient_id=None,
            expected_kinds=_readings_of(kiosk_device.model.kind),
        )

    def malformed(self, now: datetime) -> SimulatedMessage:
        """Return a measurement damaged the ways broken firmware and links damage messages."""
        r = self._rng
        base = r.choice((self.ava4_measurement, self.kati_vital_sign, self.qube_measurement))(now)
        defect: Defect = r.choices(list(_DEFECT_WEIGHTS), list(_DEFECT_WEIGHTS.values()))[0]
        encoded = _encode(base.body)
        if defect == "truncated":
            # Any proper prefix of a JSON object is invalid JSON: the closing brace is missing.
            payload = encoded[: r.randint(1, len(encoded) - 1)]
        elif defect == "single_quoted":
            payload = repr(base.body).encode("utf-8")
        elif defect == "binary":
            # A continuation byte cannot start UTF-8 text, so this is never valid JSON.
            payload = bytes([r.randrange(0x80, 0xC0)]) + r.randbytes(r.randint(8, 120))
        elif defect == "not_an_object":
            payload = r.choice(
                (b"null", b"[]", b'"Online"', str(_epoch(now)).encode(), _encode([base.topic, 1]))
            )
        elif defect == "wrong_types":
            payload = _encode(_with_wrong_types(base))
        else:
            payload = b""
        return SimulatedMessage(
            topic=base.topic,
            payload=payload,
            category="malformed",
            expected_readings=0,
            family=base.family,
            message_kind=base.message_kind,
            expected_kinds=(),
            defect=defect,
        )


def _readings_of(kind: ObservationKind) -> tuple[ObservationKind, ...]:
    return _READINGS_OF.get(kind, (kind,))


def _with_wrong_types(base: _Draft) -> dict[str, Any]:
    """Return `base`'s body with its identity and readings in types no parser can use."""
    body = dict(base.body)
    if base.family == "AVA4":
        body["mac"] = 12_345_678
        body["deviceCode"] = True
        body["data"] = {"attribute": 42, "mac": None, "value": {"device_list": 2}}
    elif base.family == "Kati":
        body["IMEI"] = [body["IMEI"]]
        body["heartRate"] = "fast"
        body["bloodPressure"] = "high"
        body["spO2"] = True
        body["bodyTemperature"] = {"value": 36.6}
    else:
        body["mac"] = 0
        body["citiz"] = False
        body["data"] = f"{body['data']['attribute']}:error"
    return body
