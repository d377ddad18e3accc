"""Vital-sign values for the simulator: around each patient's profile, abnormal now and then.

The values are what a device would measure, before any family shapes them into a payload;
every family draws from one `VitalSigns` over the stream's random generator, so the draws
stay in the order the stream makes them.
"""

from __future__ import annotations

import random

from connectors.device_roster import VitalProfile

__all__ = ["VitalSigns"]


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


class VitalSigns:
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
