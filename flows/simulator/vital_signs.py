"""Vital-sign values for the simulator: a mostly stable ward, with rare abnormal episodes.

The values are what a device would measure, before any family shapes them into a payload;
every family draws from one `VitalSigns` over the stream's random generator, so the draws
stay in the order the stream makes them.

Readings scatter around each patient's usual values (`VitalProfile`, mostly inside the
normal bands of `flows.thresholds`) with a measurement's own spread; now and then a reading
falls in an abnormal band. The rates below are per reading and are chosen so that the demo's
traffic (5 msg/s) raises an alert a few times a minute, while every alert the thresholds
know of (each high or critical flag a simulated device can produce) still turns up within
a few thousand readings of its kind. Milder deviations (elevated pressure, mild fever, mild
tachycardia) are more common: they are flagged without being alerts.
"""

from __future__ import annotations

import random

from flows.simulator.device_roster import VitalProfile

__all__ = ["EPISODE_RATES", "VitalSigns"]

# Per reading: the chance that it belongs to each abnormal episode (in the order checked).
EPISODE_RATES: dict[str, float] = {
    "bp_crisis": 0.002,  # > 180 systolic: critical
    "bp_stage_2": 0.010,  # >= 140 / >= 90: an alert (hypertensive patients twice as often)
    "bp_hypotension": 0.003,  # <= 90 systolic: an alert (NEWS2 3)
    "bp_low": 0.02,  # 91-110 systolic: flagged, not an alert (NEWS2 1-2)
    "tachycardia_severe": 0.004,  # > 130 /min: an alert
    "tachycardia": 0.03,  # 91-130 /min: flagged, not an alert
    "bradycardia_severe": 0.0015,  # <= 40 /min: an alert
    "spo2_low_severe": 0.004,  # <= 91 %: an alert (chronic lung disease: 1.5 %)
    "spo2_low": 0.02,  # 92-95 %: flagged, not an alert
    "fever": 0.02,  # 38.1-39.8 degC: flagged, not an alert
    "hypothermia": 0.002,  # <= 35 degC: an alert
    "hypoglycaemia": 0.012,  # 54-69 mg/dL: an alert (diabetic patients three times as often)
    "hypoglycaemia_severe": 0.004,  # < 54 mg/dL: critical
    "hyperglycaemia_severe": 0.03,  # > 250 mg/dL: an alert (diabetic patients only)
}
_R = EPISODE_RATES


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


class VitalSigns:
    """Physiological values around a patient's profile, with abnormal episodes mixed in."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def blood_pressure(self, profile: VitalProfile) -> tuple[int, int, int]:
        """Return systolic, diastolic (mmHg) and pulse (/min)."""
        r = self._rng
        systolic = r.gauss(profile.systolic_mmhg, 4)
        diastolic = r.gauss(profile.diastolic_mmhg, 3)
        episode = r.random()
        surge = _R["bp_stage_2"] * (2 if profile.hypertensive else 1)
        if episode < _R["bp_crisis"]:
            systolic, diastolic = r.uniform(182, 205), r.uniform(95, 118)
        elif (episode := episode - _R["bp_crisis"]) < surge:
            systolic, diastolic = r.uniform(141, 170), r.uniform(80, 100)
        elif (episode := episode - surge) < _R["bp_hypotension"]:
            systolic, diastolic = r.uniform(80, 90), r.uniform(45, 58)
        elif episode - _R["bp_hypotension"] < _R["bp_low"]:
            systolic, diastolic = r.uniform(92, 110), r.uniform(55, 68)
        systolic = _clamp(systolic, 70, 230)
        diastolic = _clamp(diastolic, 40, min(140, systolic - 15))
        pulse = _clamp(r.gauss(profile.heart_rate_bpm, 4), 40, 160)
        return round(systolic), round(diastolic), round(pulse)

    def heart_rate(self, profile: VitalProfile) -> int:
        """Return a heart rate in /min, now and then tachycardic, rarely very slow."""
        r = self._rng
        rate = r.gauss(profile.heart_rate_bpm, 4)
        episode = r.random()
        if episode < _R["tachycardia_severe"]:
            rate = r.uniform(132, 150)
        elif (episode := episode - _R["tachycardia_severe"]) < _R["bradycardia_severe"]:
            rate = r.uniform(34, 40)
        elif episode - _R["bradycardia_severe"] < _R["tachycardia"]:
            rate = r.uniform(92, 125)
        return round(_clamp(rate, 30, 180))

    def spo2(self, profile: VitalProfile) -> int:
        """Return SpO2 in %, with desaturations (more often with chronic lung disease)."""
        r = self._rng
        value = r.gauss(profile.spo2_pct, 0.7)
        severe = _R["spo2_low_severe"] * (4 if profile.chronic_lung_disease else 1)
        episode = r.random()
        if episode < severe:
            value = r.uniform(84, 91)
        elif episode - severe < _R["spo2_low"]:
            value = r.uniform(92, 95)
        return round(_clamp(value, 70, 100))

    def perfusion_index(self) -> int:
        """Return the oximeter's perfusion index, in tenths of a percent as it sends it."""
        return self._rng.randint(8, 150)

    def glucose(self, profile: VitalProfile) -> tuple[int, str]:
        """Return blood glucose in mg/dL and the meal marker."""
        r = self._rng
        marker = r.choice(("Before Meal", "After Meal"))
        value = r.gauss(profile.glucose_mg_dl, 12 if profile.diabetic else 7)
        if marker == "After Meal":
            value += r.uniform(10, 35)
        low = _R["hypoglycaemia"] * (3 if profile.diabetic else 1)
        high = _R["hyperglycaemia_severe"] if profile.diabetic else 0.0
        episode = r.random()
        if episode < _R["hypoglycaemia_severe"]:
            value = r.uniform(40, 53)
        elif (episode := episode - _R["hypoglycaemia_severe"]) < low:
            value = r.uniform(55, 69)
        elif episode - low < high:
            value = r.uniform(255, 340)
        return round(_clamp(value, 30, 500)), marker

    def temperature(self, profile: VitalProfile) -> float:
        """Return body temperature in degC (two decimals), feverish now and then."""
        r = self._rng
        value = r.gauss(profile.body_temperature_c, 0.15)
        episode = r.random()
        if episode < _R["hypothermia"]:
            value = r.uniform(34.6, 35.0)
        elif episode - _R["hypothermia"] < _R["fever"]:
            value = r.uniform(38.1, 39.8)
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
