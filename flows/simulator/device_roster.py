"""The demo world that `vitalflow seed` registers and `vitalflow simulate` plays: who has what.

Hospitals, patients and their devices derive from an integer seed. Patient *i* depends only on
the seed and on the patients before it, so the roster of 5 patients is the first 5 of the
roster of 12: simulating fewer patients than were seeded never sends unregistered traffic by
accident, and re-seeding with more patients keeps the earlier ones unchanged.

Everyone is synthetic ("Demo Patient 001", "Mr.#Demo##Patient001"). Citizen IDs carry a valid
mod-11 check digit and IMEIs a valid Luhn digit, so they look like the real thing to
validation; MACs use the vendor prefixes seen in SPEC.md's examples. Each roster also holds
devices that are deliberately left out of the registry, for the unknown-device traffic.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from flows.devices.identifiers import (
    IdKind,
    normalise_citizen_id,
    normalise_imei,
    normalise_mac,
)
from flows.model import ObservationKind

__all__ = [
    "AVA4_DEVICE_MODELS",
    "DEFAULT_PATIENTS",
    "DEFAULT_SEED",
    "QUBE_DEVICE_MODELS",
    "Ava4Gateway",
    "BleDevice",
    "CitizenCard",
    "DeviceModel",
    "Hospital",
    "Kiosk",
    "KioskDevice",
    "Patient",
    "RegistryEntry",
    "Roster",
    "VitalProfile",
    "Watch",
    "citizen_id_check_digit",
    "is_valid_citizen_id",
    "luhn_check_digit",
    "normalise_registry_key",
    "registry_key",
    "roster",
]

DEFAULT_SEED = 7
DEFAULT_PATIENTS = 12

_HOSPITAL_LETTERS = "abc"
# Sites in and around Bangkok, where the real deployments are; patients live within ~5 km.
_HOSPITAL_SITES = ((13.691643, 100.70656), (13.756331, 100.501762), (13.819917, 100.560012))
_GATEWAY_OUIS = ("DC:DA:0C", "08:F9:E0", "80:65:99", "74:4D:BD", "08:B6:1F")
_KIOSK_OUIS = ("e4:5f:01", "dc:a6:32")
_KATI_TAC = "86126506"
_GATEWAY_TACS = ("86833403", "86151804")
_KIOSK_TAC = "86739507"
# The real capture's gateways run 178 days (and a bit) fast.
_FAST_GATEWAY_OFFSET_S = 178 * 86_400 + 3_723
_UNKNOWN_DEVICES_PER_FAMILY = 3


@dataclass(frozen=True)
class DeviceModel:
    """A kind of BLE device as one family reports it: `data.attribute` and its vendor prefix."""

    attribute: str
    kind: ObservationKind
    device_name: str
    ble_prefix: str


# AVA4 spellings from SPEC.md; the glucometer and BP attributes alternate between patients.
AVA4_DEVICE_MODELS: dict[str, DeviceModel] = {
    model.attribute: model
    for model in (
        DeviceModel("BP_BIOLIGTH", ObservationKind.BLOOD_PRESSURE, "WBP BIOLIGHT", "D616F9"),
        DeviceModel("BLE_BPG", ObservationKind.BLOOD_PRESSURE, "WBP BIOLIGHT", "C12488"),
        DeviceModel("WBP BIOLIGHT", ObservationKind.BLOOD_PRESSURE, "WBP BIOLIGHT", "D616F8"),
        DeviceModel("Oximeter JUMPER", ObservationKind.SPO2, "Oximeter Jumper", "FF2304"),
        DeviceModel("Contour_Elite", ObservationKind.BLOOD_GLUCOSE, "SUGA Contour", "806FB0"),
        DeviceModel("AccuChek_Instant", ObservationKind.BLOOD_GLUCOSE, "SUGA AccuCheck", "60E85B"),
        DeviceModel("IR_TEMO_JUMPER", ObservationKind.BODY_TEMPERATURE, "TEMO Jumper", "FF2301"),
        DeviceModel("BodyScale_JUMPER", ObservationKind.BODY_WEIGHT, "JUMPER SCALE", "A0779E"),
        DeviceModel("MGSS_REF_UA", ObservationKind.URIC_ACID, "Uric REF_UA", "0035FE"),
        DeviceModel("MGSS_REF_CHOL", ObservationKind.CHOLESTEROL, "Cholesterol REF_CHOL", "0035FF"),
    )
}

QUBE_DEVICE_MODELS: dict[str, DeviceModel] = {
    model.attribute: model
    for model in (
        DeviceModel("WBP_JUMPER", ObservationKind.BLOOD_PRESSURE, "WBP Jumper", "FF2209"),
        DeviceModel("CONTOUR", ObservationKind.BLOOD_GLUCOSE, "Contour", "005FBF"),
        DeviceModel("BodyScale_JUMPER", ObservationKind.BODY_WEIGHT, "Jumper Scale", "A0779E"),
        DeviceModel("TEMO_Jumper", ObservationKind.BODY_TEMPERATURE, "TEMO Jumper", "FF2301"),
        DeviceModel("Oximeter_JUMPER", ObservationKind.SPO2, "Oximeter Jumper", "402E71"),
    )
}


@dataclass(frozen=True)
class BleDevice:
    """A BLE sub-device behind an AVA4 gateway. `address` is normalised (12 upper-case hex)."""

    address: str
    wire_address: str
    model: DeviceModel


@dataclass(frozen=True)
class Ava4Gateway:
    """A home AVA4 gateway; `clock_offset_s` is how far its clock runs ahead of UTC."""

    mac: str
    wire_mac: str
    name: str
    imei: str
    iccid: str
    clock_offset_s: int
    devices: tuple[BleDevice, ...]


@dataclass(frozen=True)
class Watch:
    """A Kati watch; `ap55_local_time` means its AP55 batches stamp UTC+7 as if it were UTC."""

    imei: str
    ap55_local_time: bool


@dataclass(frozen=True)
class CitizenCard:
    """What a Qube kiosk's card reader reads: synthetic, but shaped like a Thai ID card.

    The personal fields stay out of `repr()` so that a logged roster shows none of them.
    """

    citizen_id: str = field(repr=False)
    title_th: str
    title_en: str
    name_th: str = field(repr=False)
    name_en: str = field(repr=False)
    birth_date: date = field(repr=False)
    gender: str


@dataclass(frozen=True)
class KioskDevice:
    """A BLE device attached to a Qube kiosk; `ble_mac` as sent (upper case with colons)."""

    ble_mac: str
    model: DeviceModel


@dataclass(frozen=True)
class Kiosk:
    """A Qube-Vital kiosk in a hospital, shared by its patients (so not in the registry)."""

    mac: str
    wire_mac: str
    name: str
    imei: str
    iccid: str
    devices: tuple[KioskDevice, ...]


@dataclass(frozen=True)
class Hospital:
    """A demo hospital with its kiosk."""

    hospital_id: str
    name: str
    latitude: float
    longitude: float
    kiosk: Kiosk


@dataclass(frozen=True)
class VitalProfile:
    """A patient's usual values, and the conditions that push some readings out of range."""

    systolic_mmhg: float
    diastolic_mmhg: float
    heart_rate_bpm: float
    spo2_pct: float
    glucose_mg_dl: float
    body_temperature_c: float
    weight_kg: float
    uric_acid_umol_l: float
    cholesterol_mmol_l: float
    hypertensive: bool
    diabetic: bool
    chronic_lung_disease: bool


@dataclass(frozen=True)
class Patient:
    """A demo patient, the devices that are theirs, and where they live."""

    patient_id: str
    hospital_id: str
    display_name: str
    gateway: Ava4Gateway
    watch: Watch
    card: CitizenCard | None
    home_latitude: float
    home_longitude: float
    profile: VitalProfile


@dataclass(frozen=True)
class RegistryEntry:
    """One identifier -> patient mapping, as a `devices` document describes it."""

    key: str
    id_kind: IdKind
    device_id: str
    patient_id: str
    device_type: str
    kind: ObservationKind | None


@dataclass(frozen=True)
class Roster:
    """Everything `seed` registers and `simulate` sends as, plus devices nobody registered."""

    seed: int
    hospitals: tuple[Hospital, ...]
    patients: tuple[Patient, ...]
    unknown_gateways: tuple[Ava4Gateway, ...]
    unknown_watches: tuple[Watch, ...]
    unknown_cards: tuple[CitizenCard, ...]

    def hospital(self, hospital_id: str) -> Hospital:
        """Return the hospital with id `hospital_id`."""
        for hospital in self.hospitals:
            if hospital.hospital_id == hospital_id:
                return hospital
        msg = f"no hospital {hospital_id!r} in this roster"
        raise KeyError(msg)

    def registry_entries(self) -> list[RegistryEntry]:
        """Return every identifier the registry should map to a patient, in roster order."""
        entries: list[RegistryEntry] = []
        for patient in self.patients:
            pid = patient.patient_id
            gateway = patient.gateway
            entries.append(
                RegistryEntry(
                    IdKind.GATEWAY.key(gateway.mac), IdKind.GATEWAY, gateway.mac, pid, "AVA4", None
                )
            )
            entries.extend(
                RegistryEntry(
                    IdKind.BLE.key(ble.address),
                    IdKind.BLE,
                    ble.address,
                    pid,
                    "AVA4",
                    ble.model.kind,
                )
                for ble in gateway.devices
            )
            imei = patient.watch.imei
            entries.append(
                RegistryEntry(IdKind.IMEI.key(imei), IdKind.IMEI, imei, pid, "Kati", None)
            )
            if patient.card is not None:
                cid = patient.card.citizen_id
                entries.append(
                    RegistryEntry(
                        IdKind.CITIZEN_ID.key(cid), IdKind.CITIZEN_ID, cid, pid, "Qube", None
                    )
                )
        return entries

    def unknown_keys(self) -> set[str]:
        """Return the registry keys of the devices deliberately left unregistered."""
        keys = {IdKind.GATEWAY.key(g.mac) for g in self.unknown_gateways}
        keys |= {IdKind.BLE.key(b.address) for g in self.unknown_gateways for b in g.devices}
        keys |= {IdKind.IMEI.key(w.imei) for w in self.unknown_watches}
        keys |= {IdKind.CITIZEN_ID.key(c.citizen_id) for c in self.unknown_cards}
        return keys


def citizen_id_check_digit(first_twelve: str) -> int:
    """Return the mod-11 check digit of a Thai citizen ID's first 12 digits."""
    if len(first_twelve) != 12 or not _ascii_digits(first_twelve):
        msg = f"expected 12 digits, got {len(first_twelve)} characters"
        raise ValueError(msg)
    total = sum(int(digit) * (13 - position) for position, digit in enumerate(first_twelve))
    return (11 - total % 11) % 10


def is_valid_citizen_id(citizen_id: str) -> bool:
    """Return True when `citizen_id` is 13 digits whose last one is the mod-11 check digit."""
    if len(citizen_id) != 13 or not _ascii_digits(citizen_id):
        return False
    return citizen_id_check_digit(citizen_id[:12]) == int(citizen_id[12])


def luhn_check_digit(digits: str) -> int:
    """Return the Luhn check digit to append to `digits` (the IMEI's 15th digit)."""
    if not _ascii_digits(digits):
        msg = "Luhn check digit needs digits only"
        raise ValueError(msg)
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return (10 - total % 10) % 10


def _ascii_digits(text: str) -> bool:
    # `isdigit` alone also takes "²" and "①", which `int` refuses.
    return text.isascii() and text.isdigit()


def normalise_registry_key(key: str) -> str:
    """Return `key` (`<id_kind>:<id>`, the id in any spelling) with its id normalised.

    `"ble:d6:16:f9:64:16:22"` becomes `"ble:D616F9641622"`; a key that names no known id kind
    or whose id is not usable raises ValueError.
    """
    kind_text, separator, raw = key.partition(":")
    if not separator:
        msg = f"registry key must look like <id_kind>:<id>, got {key!r}"
        raise ValueError(msg)
    return registry_key(kind_text, raw)


def registry_key(id_kind: IdKind | str, raw_id: str) -> str:
    """Return the registry key `<id_kind>:<normalised id>` for an id in any spelling."""
    try:
        kind = IdKind(id_kind)
    except ValueError:
        msg = f"unknown id kind {id_kind!r}; expected one of {[k.value for k in IdKind]}"
        raise ValueError(msg) from None
    if kind in (IdKind.BLE, IdKind.GATEWAY):
        normalised = normalise_mac(raw_id)
    elif kind is IdKind.IMEI:
        normalised = normalise_imei(raw_id)
    else:
        normalised = normalise_citizen_id(raw_id)
    if normalised is None:
        # The id itself may be personal (a citizen ID): say what is wrong, not what it was.
        msg = f"not a usable {kind.value} identifier ({len(raw_id)} characters)"
        raise ValueError(msg)
    return kind.key(normalised)


class _IdentifierPool:
    """Draws identifiers that no earlier device of the roster already has."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def _claim(self, rng: random.Random, draw: Callable[[random.Random], str]) -> str:
        while True:
            candidate = draw(rng)
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate

    def mac(self, rng: random.Random, prefix: str) -> str:
        """Return a normalised MAC (12 upper-case hex digits) that starts with `prefix`."""
        head = prefix.replace(":", "").upper()
        tail_bytes = (12 - len(head)) // 2
        return self._claim(
            rng, lambda r: head + "".join(f"{r.randrange(256):02X}" for _ in range(tail_bytes))
        )

    def imei(self, rng: random.Random, tac: str) -> str:
        """Return a 15-digit IMEI with the type allocation code `tac` and a Luhn digit."""

        def draw(r: random.Random) -> str:
            body = tac + "".join(str(r.randrange(10)) for _ in range(14 - len(tac)))
            return body + str(luhn_check_digit(body))

        return self._claim(rng, draw)

    def citizen_id(self, rng: random.Random) -> str:
        """Return a 13-digit citizen ID with a valid check digit (first digit 1-8, as issued)."""

        def draw(r: random.Random) -> str:
            body = str(r.randint(1, 8)) + "".join(str(r.randrange(10)) for _ in range(11))
            return body + str(citizen_id_check_digit(body))

        return self._claim(rng, draw)


def _colon_mac(mac: str, *, lower: bool = False) -> str:
    text = ":".join(mac[i : i + 2] for i in range(0, 12, 2))
    return text.lower() if lower else text


def _iccid(rng: random.Random) -> str:
    return "89660322401127" + "".join(str(rng.randrange(10)) for _ in range(5))


def _ble_device(rng: random.Random, pool: _IdentifierPool, model: DeviceModel) -> BleDevice:
    address = pool.mac(rng, model.ble_prefix)
    # SPEC.md: `ble_addr` arrives in either case; most firmware sends lower case.
    wire = address.lower() if rng.random() < 0.7 else address
    return BleDevice(address=address, wire_address=wire, model=model)


def _gateway(
    rng: random.Random,
    pool: _IdentifierPool,
    name: str,
    *,
    with_lipid_meters: bool,
    fast_clock: bool,
) -> Ava4Gateway:
    mac = pool.mac(rng, rng.choice(_GATEWAY_OUIS))
    models = AVA4_DEVICE_MODELS
    attributes = [
        rng.choice(("BP_BIOLIGTH", "BP_BIOLIGTH", "BLE_BPG", "WBP BIOLIGHT")),
        "Oximeter JUMPER",
        rng.choice(("Contour_Elite", "AccuChek_Instant")),
        "IR_TEMO_JUMPER",
        "BodyScale_JUMPER",
    ]
    if with_lipid_meters:
        attributes += ["MGSS_REF_UA", "MGSS_REF_CHOL"]
    return Ava4Gateway(
        mac=mac,
        # SPEC.md: gateway MACs are usually upper case, sometimes lower.
        wire_mac=_colon_mac(mac, lower=rng.random() < 0.2),
        name=name,
        imei=pool.imei(rng, rng.choice(_GATEWAY_TACS)),
        iccid=_iccid(rng),
        clock_offset_s=_FAST_GATEWAY_OFFSET_S if fast_clock else 0,
        devices=tuple(_ble_device(rng, pool, models[a]) for a in attributes),
    )


def _card(rng: random.Random, pool: _IdentifierPool, number: int) -> CitizenCard:
    gender = rng.choice(("1", "2"))
    if gender == "1":
        title_th, title_en = "นาย", "Mr."
    else:
        title_th, title_en = rng.choice((("นาง", "Mrs."), ("นางสาว", "Ms.")))
    birth = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 60))
    return CitizenCard(
        citizen_id=pool.citizen_id(rng),
        title_th=title_th,
        title_en=title_en,
        # "Demo"/"สาธิต" and "Patient"/"ผู้ป่วย": no reader can take these for real people.
        name_th=f"{title_th}#สาธิต##ผู้ป่วย{number:03d}",
        name_en=f"{title_en}#Demo##Patient{number:03d}",
        birth_date=birth,
        gender=gender,
    )


def _profile(rng: random.Random) -> VitalProfile:
    hypertensive = rng.random() < 0.35
    diabetic = rng.random() < 0.3
    lungs = rng.random() < 0.15
    # Usual values of a stable ward: treated hypertension sits in stage 1, treated diabetes
    # a little high, chronic lung disease just below the normal SpO2 band; the simulator's
    # episodes (flows.simulator.vital_signs) make the alerts.
    return VitalProfile(
        systolic_mmhg=rng.gauss(128, 2) if hypertensive else rng.gauss(116, 4),
        diastolic_mmhg=rng.gauss(80, 2) if hypertensive else rng.gauss(72, 3),
        heart_rate_bpm=rng.uniform(60, 84),
        spo2_pct=rng.uniform(93.5, 95) if lungs else rng.uniform(96, 98.5),
        glucose_mg_dl=rng.gauss(145, 10) if diabetic else rng.gauss(96, 6),
        body_temperature_c=rng.uniform(36.3, 36.9),
        weight_kg=rng.uniform(45, 98),
        uric_acid_umol_l=rng.uniform(240, 480),
        cholesterol_mmol_l=rng.uniform(3.8, 6.6),
        hypertensive=hypertensive,
        diabetic=diabetic,
        chronic_lung_disease=lungs,
    )


def _kiosk(rng: random.Random, pool: _IdentifierPool, letter: str) -> Kiosk:
    mac = pool.mac(rng, rng.choice(_KIOSK_OUIS))
    devices = tuple(
        KioskDevice(ble_mac=_colon_mac(pool.mac(rng, model.ble_prefix)), model=model)
        for model in QUBE_DEVICE_MODELS.values()
    )
    return Kiosk(
        mac=mac,
        # SPEC.md: the kiosk reports its own MAC in lower case.
        wire_mac=_colon_mac(mac, lower=True),
        name=f"Vital Box Demo-{letter.upper()}#1",
        imei=pool.imei(rng, _KIOSK_TAC),
        iccid=_iccid(rng),
        devices=devices,
    )


def roster(seed: int = DEFAULT_SEED, patients: int = DEFAULT_PATIENTS) -> Roster:
    """Return the demo roster: up to 3 hospitals, `patients` patients, unregistered extras.

    Every patient has an AVA4 gateway with a BP cuff, an oximeter, a glucometer, a thermometer
    and a scale (every third patient also a uric acid and a cholesterol meter) and a Kati
    watch; every other patient, the first included, is known to the kiosks by citizen ID.
    A quarter of the gateways run 178 days fast and half the watches stamp AP55 batches in
    local time, as the real devices do.
    """
    if patients < 1:
        msg = f"a roster needs at least one patient, got {patients}"
        raise ValueError(msg)
    pool = _IdentifierPool()
    hospital_count = min(len(_HOSPITAL_LETTERS), patients)
    hospitals = []
    for index in range(hospital_count):
        letter = _HOSPITAL_LETTERS[index]
        rng = random.Random(f"{seed}:hospital:{index}")
        latitude, longitude = _HOSPITAL_SITES[index]
        hospitals.append(
            Hospital(
                hospital_id=f"demo-hospital-{letter}",
                name=f"Demo Hospital {letter.upper()}",
                latitude=latitude,
                longitude=longitude,
                kiosk=_kiosk(rng, pool, letter),
            )
        )
    members = []
    for index in range(patients):
        number = index + 1
        # A generator per patient keeps patient i independent of how many follow it.
        rng = random.Random(f"{seed}:patient:{index}")
        hospital = hospitals[index % len(_HOSPITAL_LETTERS) % hospital_count]
        members.append(
            Patient(
                patient_id=f"demo-p-{number:03d}",
                hospital_id=hospital.hospital_id,
                display_name=f"Demo Patient {number:03d}",
                gateway=_gateway(
                    rng,
                    pool,
                    f"AVA4 Demo {number:03d}",
                    with_lipid_meters=index % 3 == 0,
                    fast_clock=index % 4 == 3,
                ),
                watch=Watch(imei=pool.imei(rng, _KATI_TAC), ap55_local_time=index % 2 == 1),
                card=_card(rng, pool, number) if index % 2 == 0 else None,
                home_latitude=hospital.latitude + rng.uniform(-0.045, 0.045),
                home_longitude=hospital.longitude + rng.uniform(-0.045, 0.045),
                profile=_profile(rng),
            )
        )
    rng = random.Random(f"{seed}:unregistered")
    count = _UNKNOWN_DEVICES_PER_FAMILY
    return Roster(
        seed=seed,
        hospitals=tuple(hospitals),
        patients=tuple(members),
        unknown_gateways=tuple(
            _gateway(rng, pool, f"AVA4 Unregistered {n}", with_lipid_meters=False, fast_clock=False)
            for n in range(1, count + 1)
        ),
        unknown_watches=tuple(
            Watch(imei=pool.imei(rng, _KATI_TAC), ap55_local_time=False) for _ in range(count)
        ),
        unknown_cards=tuple(_card(rng, pool, 900 + n) for n in range(1, count + 1)),
    )
