"""A reading's LOINC codes, UCUM units and clinical flags: the tables the enrich stage applies.

`CODINGS` is the one table of LOINC codes (per kind, and per value for components); units
come from `flows.devices.measures.MEASURES`, the same table the parsers normalise to, so a
stored unit always says what the number is. Flags come from `Thresholds` (data, loadable
from a file) and, for emergencies, from `EVENT_FLAGS`: an SOS or a fall is always critical.

`enrich_reading` returns the fields an observation document adds to the reading:
`code` (the kind's primary LOINC coding), `codes` (every LOINC coding of the observation as
a whole, the primary one first: for SpO2 both 59408-5 and 2708-6, as the US Core pulse
oximetry profile requires), `components`, `flags`, `severity` (the most severe flag,
"normal" without flags) and `alert` (severity high or critical).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flows.devices.measures import MEASURES
from flows.model import ObservationKind, Reading
from flows.thresholds import Band, Severity, Thresholds

__all__ = ["CODINGS", "EVENT_FLAGS", "LOINC_SYSTEM", "Coding", "KindCoding", "enrich_reading"]

LOINC_SYSTEM = "http://loinc.org"


@dataclass(frozen=True)
class Coding:
    """One LOINC code and its display name."""

    code: str
    display: str


@dataclass(frozen=True)
class KindCoding:
    """The LOINC codes of a kind of reading (primary first) and of each of its values."""

    code: Coding | None
    components: dict[str, str] = field(default_factory=dict)
    also: tuple[Coding, ...] = ()


_HEART_RATE = "8867-4"

CODINGS: dict[ObservationKind, KindCoding] = {
    ObservationKind.BLOOD_PRESSURE: KindCoding(
        Coding("85354-9", "Blood pressure panel with all children optional"),
        {"systolic": "8480-6", "diastolic": "8462-4", "pulse": _HEART_RATE},
    ),
    ObservationKind.HEART_RATE: KindCoding(
        Coding(_HEART_RATE, "Heart rate"), {"heart_rate": _HEART_RATE}
    ),
    ObservationKind.SPO2: KindCoding(
        Coding("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        {"spo2": "2708-6", "pulse": _HEART_RATE},
        also=(Coding("2708-6", "Oxygen saturation in Arterial blood"),),
    ),
    ObservationKind.BODY_TEMPERATURE: KindCoding(
        Coding("8310-5", "Body temperature"), {"temperature": "8310-5"}
    ),
    ObservationKind.BODY_WEIGHT: KindCoding(
        Coding("29463-7", "Body weight"), {"weight": "29463-7"}
    ),
    ObservationKind.BLOOD_GLUCOSE: KindCoding(
        Coding("2339-0", "Glucose [Mass/volume] in Blood"), {"glucose": "2339-0"}
    ),
    ObservationKind.URIC_ACID: KindCoding(
        Coding("14933-6", "Urate [Moles/volume] in Serum or Plasma"), {"uric_acid": "14933-6"}
    ),
    ObservationKind.CHOLESTEROL: KindCoding(
        Coding("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma"),
        {"cholesterol": "14647-2"},
    ),
    ObservationKind.STEPS: KindCoding(
        Coding("41950-7", "Number of steps in 24 hour Measured"), {"steps": "41950-7"}
    ),
    # No LOINC code is used for these: none fits a device's sleep pattern, a position fix
    # or an alarm press closely enough to be worth asserting.
    ObservationKind.SLEEP: KindCoding(None),
    ObservationKind.LOCATION: KindCoding(None),
    ObservationKind.EMERGENCY: KindCoding(None),
}

# An emergency is the highest priority whatever the thresholds say.
EVENT_FLAGS: dict[str, tuple[str, Severity, str]] = {
    "sos": ("sos", Severity.CRITICAL, "SOS: the wearer pressed the emergency button"),
    "fall": ("fall", Severity.CRITICAL, "Fall detected by the watch"),
}
_UNKNOWN_EVENT = ("emergency", Severity.CRITICAL, "Emergency reported by the device")


def _unit(value_name: str) -> str | None:
    measure = MEASURES.get(value_name)
    return measure.unit if measure else None


def _flag(band: Band, number: float) -> dict[str, str]:
    unit = _unit(band.value)
    shown = f"{number:g} {unit}" if unit else f"{number:g}"
    message = f"{band.message}: {band.value} {shown} ({band.describe()})"
    return {"code": band.code, "severity": band.severity.value, "message": message}


def _threshold_flags(
    reading: Reading, thresholds: Thresholds
) -> list[tuple[Severity, dict[str, str]]]:
    """Return one flag per group whose bands the reading's values fall in."""
    flags = []
    for group in thresholds.groups_for(str(reading.kind)):
        best: tuple[Band, float] | None = None
        for band in group.bands:
            number = reading.values.get(band.value)
            if not isinstance(number, int | float) or isinstance(number, bool):
                continue
            if not band.matches(number):
                continue
            if best is None or band.severity.rank > best[0].severity.rank:
                best = (band, number)
        if best is not None:
            flags.append((best[0].severity, _flag(*best)))
    return flags


def _event_flags(reading: Reading) -> list[tuple[Severity, dict[str, str]]]:
    if reading.kind is not ObservationKind.EMERGENCY:
        return []
    event = reading.attributes.get("event")
    known = EVENT_FLAGS.get(event) if isinstance(event, str) else None
    code, severity, message = known or _UNKNOWN_EVENT
    return [(severity, {"code": code, "severity": severity.value, "message": message})]


def enrich_reading(reading: Reading, thresholds: Thresholds) -> dict[str, Any]:
    """Return the codes, units and clinical flags of `reading` under `thresholds`."""
    coding = CODINGS.get(reading.kind, KindCoding(None))
    components = {
        name: {"value": value, "unit": _unit(name), "code": coding.components.get(name)}
        for name, value in reading.values.items()
    }
    flagged = _event_flags(reading) + _threshold_flags(reading, thresholds)
    severity = max((s for s, _ in flagged), key=lambda s: s.rank, default=Severity.NORMAL)
    codes = [
        {"system": LOINC_SYSTEM, "code": c.code, "display": c.display}
        for c in ((coding.code, *coding.also) if coding.code else ())
    ]
    return {
        "code": codes[0] if codes else None,
        "codes": codes,
        "components": components,
        "flags": [flag for _, flag in flagged],
        "severity": severity.value,
        "alert": severity.rank >= Severity.HIGH.rank,
    }
