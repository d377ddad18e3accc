"""Kati watch traffic: heartbeats, location fixes, vitals, AP55 batches, sleep, SOS and falls.

The shapes follow `shared/payloads/examples.jsonl` and the real capture, warts included:
watches that stamp AP55 batches in local time, single-quoted pseudo-JSON inside locations,
SOS and fall topics spelled more than one way. A VitalSign yields five readings
(`heart_rate`, `blood_pressure`, `body_temperature`, `spo2`, `location`), an AP55 batch four
per item (three without `spO2`) and one `location`, a heartbeat one `steps`, an SOS or fall
one `emergency` (its location is context).

Each watch carries its battery and the day's step count from one message to the next.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flows.devices.identifiers import IdKind
from flows.model import ObservationKind
from flows.simulator.device_roster import Patient, Roster, VitalProfile, Watch
from flows.simulator.simulated_message import Category, MessageDraft, epoch_seconds
from flows.simulator.vital_signs import VitalSigns

__all__ = ["KatiMessages"]

_KATI_VITAL_KINDS = (
    ObservationKind.HEART_RATE,
    ObservationKind.BLOOD_PRESSURE,
    ObservationKind.BODY_TEMPERATURE,
    ObservationKind.SPO2,
)
_SSIDS = ("ward-3", "home-wifi", "a", "3BB_2.4G", "AIS_FIBRE", "TRUE_5G", "guest")
_KATI_TIME_FORMAT = "%d/%m/%Y %H:%M:%S"
_AP55_LOCAL_OFFSET_S = 7 * 3600


@dataclass
class _WatchState:
    battery: float
    steps: int
    day: str


def _kati_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_KATI_TIME_FORMAT)


class KatiMessages:
    """Builds the messages of the roster's Kati watches and keeps each watch's state."""

    def __init__(self, roster: Roster, rng: random.Random, vitals: VitalSigns) -> None:
        self._roster = roster
        self._rng = rng
        self._vitals = vitals
        self._watches: dict[str, _WatchState] = {}

    def _patient(self) -> Patient:
        return self._rng.choice(self._roster.patients)

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

    def _draft(
        self,
        patient: Patient,
        suffix: str,
        body: dict[str, Any],
        *,
        category: Category,
        kinds: tuple[ObservationKind, ...] = (),
        watch: Watch | None = None,
    ) -> MessageDraft:
        imei = (watch or patient.watch).imei
        return MessageDraft(
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

    def heartbeat(self, now: datetime) -> MessageDraft:
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
        return self._draft(patient, "hb", body, category="status", kinds=(ObservationKind.STEPS,))

    def location(self, now: datetime, watch: Watch | None = None) -> MessageDraft:
        """Return a location fix (the real watch sends one a minute, `time` not `timeStamps`)."""
        patient = self._patient()
        body = {
            "time": _kati_time(now),
            "IMEI": (watch or patient.watch).imei,
            "location": self._location(patient),
        }
        return self._draft(
            patient,
            "location",
            body,
            category="unknown_device" if watch else "valid",
            kinds=(ObservationKind.LOCATION,),
            watch=watch,
        )

    def _vitals_fields(self, profile: VitalProfile) -> dict[str, Any]:
        systolic, diastolic, _ = self._vitals.blood_pressure(profile)
        return {
            "heartRate": self._vitals.heart_rate(profile),
            "bloodPressure": {"bp_sys": systolic, "bp_dia": diastolic},
            "bodyTemperature": round(self._vitals.temperature(profile), 1),
            "spO2": self._vitals.spo2(profile),
        }

    def vital_sign(self, now: datetime, watch: Watch | None = None) -> MessageDraft:
        """Return a `VitalSign` message: heart rate, BP, temperature and SpO2 at once."""
        patient = self._patient()
        state = self._watch_state(watch or patient.watch, now)
        body = {
            "IMEI": (watch or patient.watch).imei,
            **self._vitals_fields(patient.profile),
            "signalGSM": self._rng.choice((60, 80, 100)),
            "battery": round(state.battery),
            "location": self._location(patient, with_motion=False),
            "timeStamps": _kati_time(now),
        }
        return self._draft(
            patient,
            "VitalSign",
            body,
            category="unknown_device" if watch else "valid",
            kinds=(*_KATI_VITAL_KINDS, ObservationKind.LOCATION),
            watch=watch,
        )

    def unknown_watch_message(self, now: datetime) -> MessageDraft:
        """Return a well-formed VitalSign or location fix from a watch not in the registry."""
        watch = self._rng.choice(self._roster.unknown_watches)
        if self._rng.random() < 0.5:
            return self.vital_sign(now, watch=watch)
        return self.location(now, watch=watch)

    def ap55(self, now: datetime) -> MessageDraft:
        """Return an `AP55` batch of vitals taken every 5 minutes, oldest first."""
        patient = self._patient()
        watch = patient.watch
        count = self._rng.randint(2, 6)
        offset = _AP55_LOCAL_OFFSET_S if watch.ap55_local_time else 0
        items: list[dict[str, Any]] = []
        kinds: list[ObservationKind] = []
        for index in range(count):
            vitals = self._vitals_fields(patient.profile)
            if self._rng.random() < 0.1:
                # SPEC.md: spO2 is optional in AP55 items.
                del vitals["spO2"]
            taken = epoch_seconds(now, offset) - 300 * (count - 1 - index)
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
        return self._draft(patient, "AP55", body, category="valid", kinds=tuple(kinds))

    def sleep(self, now: datetime) -> MessageDraft:
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
        return self._draft(
            patient, "sleepdata", body, category="valid", kinds=(ObservationKind.SLEEP,)
        )

    def online(self, now: datetime) -> MessageDraft:
        """Return an `onlineTrigger` status (online or offline)."""
        del now  # the real message carries no time
        patient = self._patient()
        body = {
            "IMEI": patient.watch.imei,
            "status": self._rng.choices(("online", "offline"), (0.6, 0.4))[0],
        }
        return self._draft(patient, "onlineTrigger", body, category="status")

    def emergency(self, now: datetime) -> MessageDraft:
        """Return an SOS press or a detected fall, under the topic spellings seen in the field."""
        del now  # the real message carries no time
        patient = self._patient()
        r = self._rng
        if r.random() < 0.65:
            suffix, status = r.choices(("SOS", "sos"), (0.8, 0.2))[0], "SOS"
        else:
            suffix, status = r.choices(("fallDown", "FALLDOWN"), (0.8, 0.2))[0], "FALL DOWN"
        body = {"status": status, "location": self._location(patient), "IMEI": patient.watch.imei}
        return self._draft(
            patient, suffix, body, category="valid", kinds=(ObservationKind.EMERGENCY,)
        )
