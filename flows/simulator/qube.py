"""Qube-Vital kiosk traffic: kiosk heartbeats and readings identified by citizen ID card.

The shapes follow `shared/payloads/examples.jsonl` and the real capture, warts included:
the kiosk's own field spellings, glucose as a number, Thai and English names and a Buddhist-Era
birth date from the card on every reading. A cuff or oximeter reading yields two readings
(`blood_pressure` or `spo2`, and `heart_rate` from its pulse), any other one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flows.devices.identifiers import IdKind
from flows.model import ObservationKind
from flows.simulator.device_roster import (
    CitizenCard,
    Hospital,
    Kiosk,
    KioskDevice,
    Patient,
    Roster,
    VitalProfile,
)
from flows.simulator.simulated_message import MessageDraft, epoch_seconds, readings_of
from flows.simulator.vital_signs import VitalSigns

__all__ = ["QubeMessages"]


class QubeMessages:
    """Builds the messages of the roster's hospital kiosks.

    `fallback` builds a measurement in place of a kiosk reading when the roster has no patient
    with a citizen card to read.
    """

    def __init__(
        self,
        roster: Roster,
        rng: random.Random,
        vitals: VitalSigns,
        *,
        fallback: Callable[[datetime], MessageDraft],
    ) -> None:
        self._roster = roster
        self._rng = rng
        self._vitals = vitals
        self._fallback = fallback
        self._card_holders = [p for p in roster.patients if p.card is not None]

    def heartbeat(self, now: datetime) -> MessageDraft:
        """Return a kiosk heartbeat (`HB_Msg` on `CM4_BLE_GW_TX`)."""
        kiosk = self._rng.choice(self._roster.hospitals).kiosk
        body = {
            "from": "PI_GW",
            "to": "CLOUD",
            "name": kiosk.name,
            "time": epoch_seconds(now),
            "mac": kiosk.wire_mac,
            "IMEI": kiosk.imei,
            "ICCID": kiosk.iccid,
            "type": "HB_Msg",
            "data": {"msg": "Online"},
        }
        return MessageDraft(
            topic="CM4_BLE_GW_TX",
            body=body,
            category="status",
            family="Qube",
            message_kind="HB_Msg",
            device_id=kiosk.mac,
            lookup_key=None,
            patient_id=None,
        )

    def _value(self, device: KioskDevice, profile: VitalProfile) -> dict[str, Any]:
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

    def _reading(
        self, kiosk: Kiosk, card: CitizenCard, profile: VitalProfile, now: datetime
    ) -> tuple[dict[str, Any], KioskDevice]:
        device = self._rng.choice(kiosk.devices)
        born = card.birth_date
        body = {
            "from": "PI",
            "to": "CLOUD",
            "time": epoch_seconds(now),
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
                "value": self._value(device, profile),
            },
        }
        return body, device

    def measurement(self, now: datetime) -> MessageDraft:
        """Return a kiosk reading of a registered patient, identified by citizen ID."""
        if not self._card_holders:
            return self._fallback(now)
        patient = self._rng.choice(self._card_holders)
        card = patient.card
        if card is None:  # pragma: no cover - _card_holders only holds patients with cards
            return self._fallback(now)
        kiosk = self._roster.hospital(patient.hospital_id).kiosk
        return self._measurement(kiosk, card, patient, patient.profile, now)

    def unknown_card_measurement(self, stranger: Patient, now: datetime) -> MessageDraft:
        """Return a well-formed kiosk reading, of `stranger`'s vitals, from an unknown card."""
        hospital: Hospital = self._rng.choice(self._roster.hospitals)
        card = self._rng.choice(self._roster.unknown_cards)
        return self._measurement(hospital.kiosk, card, None, stranger.profile, now)

    def _measurement(
        self,
        kiosk: Kiosk,
        card: CitizenCard,
        patient: Patient | None,
        profile: VitalProfile,
        now: datetime,
    ) -> MessageDraft:
        # `patient` None: the card is not registered, so the flow cannot know whose it is.
        body, device = self._reading(kiosk, card, profile, now)
        return MessageDraft(
            topic="CM4_BLE_GW_TX",
            body=body,
            category="valid" if patient is not None else "unknown_device",
            family="Qube",
            message_kind=device.model.attribute,
            device_id=kiosk.mac,
            lookup_key=IdKind.CITIZEN_ID.key(card.citizen_id),
            patient_id=patient.patient_id if patient is not None else None,
            expected_kinds=readings_of(device.model.kind),
        )
