"""The normalised values a reading can hold: UCUM unit, rounding precision, plausible range.

One row per value name, shared by every device family, so a systolic pressure has the same
unit and the same limits whether an AVA4 cuff or a Kati watch measured it. The family tables
(`ava4.py`, `qube.py`, `kati.py`) only say which payload fields hold which value.

The ranges are hard plausibility limits, not clinical ones: a value outside them cannot be a
real measurement (a unit mix-up, a sensor error, a placeholder) and makes the message a
step-2 error. They are deliberately wide so that a dangerous but real value (SpO2 of 60 %,
glucose of 30 mg/dL) is always stored and flagged, never dropped. Bounds are inclusive.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MEASURES", "Measure"]


@dataclass(frozen=True)
class Measure:
    """How one normalised value is expressed and which numbers are plausible for it."""

    unit: str | None
    precision: int
    low: float
    high: float


MEASURES: dict[str, Measure] = {
    "systolic": Measure("mm[Hg]", 0, 40, 300),
    "diastolic": Measure("mm[Hg]", 0, 20, 200),
    "pulse": Measure("/min", 0, 20, 300),
    "heart_rate": Measure("/min", 0, 20, 300),
    "spo2": Measure("%", 0, 20, 100),
    # Oximeters send the perfusion index times ten (43 = 4.3 %); the tables scale it.
    "perfusion_index": Measure("%", 1, 0, 30),
    # Two decimals turn float32 noise (36.43000031) back into what the device displayed.
    "temperature": Measure("Cel", 2, 20, 45),
    "weight": Measure("kg", 2, 1, 400),
    "resistance": Measure("Ohm", 1, 0, 5000),
    "glucose": Measure("mg/dL", 0, 10, 1000),
    "uric_acid": Measure("umol/L", 1, 30, 2000),
    "cholesterol": Measure("mmol/L", 2, 0.5, 30),
    "steps": Measure("{steps}", 0, 0, 200_000),
    "duration_minutes": Measure("min", 0, 0, 2880),
    "level_0_minutes": Measure("min", 0, 0, 2880),
    "level_1_minutes": Measure("min", 0, 0, 2880),
    "level_2_minutes": Measure("min", 0, 0, 2880),
    "level_3_minutes": Measure("min", 0, 0, 2880),
    "latitude": Measure("deg", 6, -90, 90),
    "longitude": Measure("deg", 6, -180, 180),
    # The watch documents no unit for its GPS speed.
    "speed": Measure(None, 2, 0, 1000),
    "heading": Measure("deg", 2, 0, 360),
}
