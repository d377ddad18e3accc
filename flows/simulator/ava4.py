"""AVA4 home-gateway traffic: gateway status, BLE device readings and cloud commands.

The shapes follow `shared/payloads/examples.jsonl` and the real capture, warts included:
glucose, uric acid and cholesterol as strings, float32 noise on thermometers and scales, MACs
in either case, gateways whose clocks run 178 days fast (`Ava4Gateway.clock_offset_s`).
A cuff or oximeter reading yields two readings (`blood_pressure` or `spo2`, and
`heart_rate` from its pulse); an upload of stored readings yields that many times more.
"""

from __future__ import annotations

import random
import struct
from datetime import datetime
from typing import Any

from flows.devices.identifiers import IdKind
from flows.model import ObservationKind
from flows.simulator.device_roster import Ava4Gateway, BleDevice, Patient, Roster, VitalProfile
from flows.simulator.simulated_message import MessageDraft, epoch_seconds, readings_of
from flows.simulator.vital_signs import VitalSigns

__all__ = ["Ava4Messages"]

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


def _float32(value: float) -> float:
    """Return `value` as a float32 device prints it (36.43 -> 36.43000031)."""
    single: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return float(f"{single:.10g}")


class Ava4Messages:
    """Builds the messages of the roster's AVA4 gateways and the BLE devices behind them."""

    def __init__(self, roster: Roster, rng: random.Random, vitals: VitalSigns) -> None:
        self._roster = roster
        self._rng = rng
        self._vitals = vitals

    def _patient(self) -> Patient:
        return self._rng.choice(self._roster.patients)

    def _status(self, gateway: Ava4Gateway, now: datetime, *, power_on: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "from": "ESP32_S3_GW" if power_on else "ESP32_GW",
            "to": "CLOUD",
        }
        if not power_on:
            body["name"] = gateway.name
        body |= {
            "time": epoch_seconds(now, gateway.clock_offset_s),
            "mac": gateway.wire_mac,
            "IMEI": gateway.imei,
            "ICCID": gateway.iccid,
            "type": "reportMsg" if power_on else "HB_Msg",
            "data": {"msg": "Online"},
        }
        return body

    def heartbeat(self, now: datetime) -> MessageDraft:
        """Return a gateway heartbeat (`HB_Msg` on `ESP32_BLE_GW_TX`)."""
        return self._status_draft(now, power_on=False)

    def power_on(self, now: datetime) -> MessageDraft:
        """Return a gateway's power-on report (`reportMsg`)."""
        return self._status_draft(now, power_on=True)

    def _status_draft(self, now: datetime, *, power_on: bool) -> MessageDraft:
        patient = self._patient()
        gateway = patient.gateway
        return MessageDraft(
            topic="ESP32_BLE_GW_TX",
            body=self._status(gateway, now, power_on=power_on),
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

    def _reading(
        self, gateway: Ava4Gateway, device: BleDevice, profile: VitalProfile, now: datetime
    ) -> tuple[dict[str, Any], int]:
        # One upload now and then carries readings the device stored while out of range.
        count = self._rng.choice((2, 2, 3)) if self._rng.random() < 0.12 else 1
        gaps = sorted((self._rng.randint(60, 900) for _ in range(count - 1)), reverse=True)
        scan_times = [epoch_seconds(now, gateway.clock_offset_s) - g for g in gaps]
        scan_times.append(epoch_seconds(now, gateway.clock_offset_s))
        items = [
            {"scan_time": t, "ble_addr": device.wire_address, **self._ble_fields(device, profile)}
            for t in scan_times
        ]
        body = {
            "from": "BLE",
            "to": "CLOUD",
            "time": epoch_seconds(now, gateway.clock_offset_s),
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

    def measurement(self, now: datetime) -> MessageDraft:
        """Return a `reportAttribute` on `dusun_pub` from a patient's BLE device."""
        patient = self._patient()
        gateway = patient.gateway
        return self._measurement(gateway, self._pick_ble(gateway), patient, patient.profile, now)

    def unknown_gateway_measurement(self, stranger: Patient, now: datetime) -> MessageDraft:
        """Return a well-formed measurement, of `stranger`'s vitals, from an unknown gateway."""
        gateway = self._rng.choice(self._roster.unknown_gateways)
        return self._measurement(gateway, self._pick_ble(gateway), None, stranger.profile, now)

    def _measurement(
        self,
        gateway: Ava4Gateway,
        device: BleDevice,
        patient: Patient | None,
        profile: VitalProfile,
        now: datetime,
    ) -> MessageDraft:
        # `patient` None: the gateway is not registered, so the flow cannot know whose it is.
        body, count = self._reading(gateway, device, profile, now)
        return MessageDraft(
            topic="dusun_pub",
            body=body,
            category="valid" if patient is not None else "unknown_device",
            family="AVA4",
            message_kind=device.model.attribute,
            device_id=gateway.mac,
            lookup_key=IdKind.BLE.key(device.address),
            patient_id=patient.patient_id if patient is not None else None,
            expected_kinds=readings_of(device.model.kind) * count,
        )

    def cloud_command(self, now: datetime) -> MessageDraft:
        """Return a cloud command to a gateway on `dusun_sub` (not device data)."""
        gateway = self._patient().gateway
        body = {
            "data": {
                "arguments": {"attribute": "gateway.status", "value": {}, "mac": gateway.wire_mac},
                "id": self._rng.randbytes(12).hex(),
                "command": "getAttribute",
            },
            "deviceCode": gateway.name,
            "time": epoch_seconds(now),
            "mac": gateway.wire_mac,
            "to": "GATEWAY",
            "from": "CLOUD",
            "type": "cmd",
        }
        return MessageDraft(
            topic="dusun_sub",
            body=body,
            category="command",
            family="AVA4",
            message_kind="cmd",
            device_id=gateway.mac,
            lookup_key=None,
            patient_id=None,
        )
