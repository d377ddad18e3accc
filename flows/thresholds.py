"""Clinical thresholds: which values raise which flag, at which severity. Data, not code.

Each observation kind has a list of `FlagGroup`s. A group is one clinical question (what
hypertension stage is this? is the SpO2 low?) answered by bands on the reading's values;
when several bands of a group match, only the most severe is raised (a systolic of 185 is a
hypertensive crisis, not also stage 2). Groups are independent: a reading raises at most one
flag per group (88/82 mmHg is both stage 1 hypertension and hypotension).

Published defaults:

- Blood pressure: ACC/AHA 2017 (Whelton et al., Hypertension 2018;71:e13). Elevated
  120-129 systolic with diastolic < 80; stage 1 130-139 or 80-89; stage 2 >= 140 or >= 90;
  hypertensive crisis > 180 and/or > 120. Low systolic: the NEWS2 bands, <= 90 (score 3,
  hypotension), 91-100 (score 2) and 101-110 (score 1).
- Heart rate, SpO2 (scale 1), temperature: NEWS2 (Royal College of Physicians, 2017) bands;
  a NEWS2 score of 1 is severity "low", 2 "medium", 3 "high".
- Blood glucose: ADA Standards of Care (section 6): level 1 hypoglycaemia < 70 mg/dL,
  level 2 < 54 mg/dL; hyperglycaemia > 180 and > 250 mg/dL (time-in-range thresholds).

Severities: normal < low < medium < high < critical; "high" and "critical" are alerts.
A JSON file (`settings.thresholds_file`) may replace the groups of any kind; kinds it does
not name keep their defaults. Unknown keys are refused so a typo cannot silently disable
a flag.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Band", "FlagGroup", "Severity", "Thresholds"]


class Severity(StrEnum):
    """How urgent a flag (or a reading) is, in increasing order."""

    NORMAL = "normal"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Position in the order normal < low < medium < high < critical."""
        return _SEVERITY_RANKS[self]


# Looked up several times a reading: iterating an enum each time cost ~2.5 us.
_SEVERITY_RANKS = {severity: rank for rank, severity in enumerate(Severity)}


class Band(BaseModel):
    """A range of one value that raises a flag. Every bound given must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str
    code: str
    severity: Severity
    message: str
    above: float | None = None
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _has_a_bound(self) -> Band:
        if all(b is None for b in (self.above, self.at_least, self.below, self.at_most)):
            msg = f"band {self.code!r} has no bound (above, at_least, below or at_most)"
            raise ValueError(msg)
        return self

    def matches(self, number: float) -> bool:
        """Return True when `number` lies in this band."""
        return (
            (self.above is None or number > self.above)
            and (self.at_least is None or number >= self.at_least)
            and (self.below is None or number < self.below)
            and (self.at_most is None or number <= self.at_most)
        )

    def describe(self) -> str:
        """Return the band's bounds as text, e.g. "> 180" or ">= 130 and < 140"."""
        parts = [
            f"{sign} {bound:g}"
            for sign, bound in (
                (">", self.above),
                (">=", self.at_least),
                ("<", self.below),
                ("<=", self.at_most),
            )
            if bound is not None
        ]
        return " and ".join(parts)


class FlagGroup(BaseModel):
    """One clinical question about a reading; the most severe matching band answers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    bands: list[Band]


def _band(value: str, code: str, severity: Severity, message: str, **bounds: float) -> Band:
    return Band(value=value, code=code, severity=severity, message=message, **bounds)


_S = Severity

_BLOOD_PRESSURE = [
    FlagGroup(
        name="acc_aha_2017_stage",
        bands=[
            _band(
                "systolic", "bp_hypertensive_crisis", _S.CRITICAL, "Hypertensive crisis", above=180
            ),
            _band(
                "diastolic", "bp_hypertensive_crisis", _S.CRITICAL, "Hypertensive crisis", above=120
            ),
            _band("systolic", "bp_stage_2", _S.HIGH, "Stage 2 hypertension", at_least=140),
            _band("diastolic", "bp_stage_2", _S.HIGH, "Stage 2 hypertension", at_least=90),
            _band("systolic", "bp_stage_1", _S.MEDIUM, "Stage 1 hypertension", at_least=130),
            _band("diastolic", "bp_stage_1", _S.MEDIUM, "Stage 1 hypertension", at_least=80),
            _band("systolic", "bp_elevated", _S.LOW, "Elevated blood pressure", at_least=120),
        ],
    ),
    FlagGroup(
        name="news2_low_systolic",
        bands=[
            _band("systolic", "bp_hypotension", _S.HIGH, "Hypotension", at_most=90),
            _band("systolic", "bp_systolic_low_moderate", _S.MEDIUM, "Low systolic", at_most=100),
            _band("systolic", "bp_systolic_low", _S.LOW, "Slightly low systolic", at_most=110),
        ],
    ),
]
_HEART_RATE = [
    FlagGroup(
        name="news2_pulse",
        bands=[
            _band("heart_rate", "bradycardia_severe", _S.HIGH, "Severe bradycardia", at_most=40),
            _band("heart_rate", "bradycardia", _S.LOW, "Bradycardia", at_most=50),
            _band("heart_rate", "tachycardia_severe", _S.HIGH, "Severe tachycardia", above=130),
            _band("heart_rate", "tachycardia_moderate", _S.MEDIUM, "Tachycardia", above=110),
            _band("heart_rate", "tachycardia_mild", _S.LOW, "Mild tachycardia", above=90),
        ],
    )
]
_SPO2 = [
    FlagGroup(
        name="news2_spo2_scale_1",
        bands=[
            _band("spo2", "spo2_low_severe", _S.HIGH, "Severely low SpO2", at_most=91),
            _band("spo2", "spo2_low_moderate", _S.MEDIUM, "Low SpO2", at_most=93),
            _band("spo2", "spo2_low", _S.LOW, "Slightly low SpO2", at_most=95),
        ],
    )
]
_BODY_TEMPERATURE = [
    FlagGroup(
        name="news2_temperature",
        bands=[
            _band("temperature", "hypothermia", _S.HIGH, "Hypothermia", at_most=35.0),
            _band("temperature", "temperature_low", _S.LOW, "Low temperature", at_most=36.0),
            _band("temperature", "fever_high", _S.MEDIUM, "High fever", above=39.0),
            _band("temperature", "fever", _S.LOW, "Fever", above=38.0),
        ],
    )
]
_BLOOD_GLUCOSE = [
    FlagGroup(
        name="ada_glycaemia",
        bands=[
            _band(
                "glucose", "hypoglycaemia_level_2", _S.CRITICAL, "Level 2 hypoglycaemia", below=54
            ),
            _band("glucose", "hypoglycaemia_level_1", _S.HIGH, "Level 1 hypoglycaemia", below=70),
            _band(
                "glucose", "hyperglycaemia_level_2", _S.HIGH, "Level 2 hyperglycaemia", above=250
            ),
            _band(
                "glucose", "hyperglycaemia_level_1", _S.MEDIUM, "Level 1 hyperglycaemia", above=180
            ),
        ],
    )
]


class Thresholds(BaseModel):
    """The flag groups of every observation kind; defaults are the published ones above."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    blood_pressure: list[FlagGroup] = Field(default_factory=lambda: list(_BLOOD_PRESSURE))
    heart_rate: list[FlagGroup] = Field(default_factory=lambda: list(_HEART_RATE))
    spo2: list[FlagGroup] = Field(default_factory=lambda: list(_SPO2))
    body_temperature: list[FlagGroup] = Field(default_factory=lambda: list(_BODY_TEMPERATURE))
    blood_glucose: list[FlagGroup] = Field(default_factory=lambda: list(_BLOOD_GLUCOSE))
    body_weight: list[FlagGroup] = Field(default_factory=list)
    uric_acid: list[FlagGroup] = Field(default_factory=list)
    cholesterol: list[FlagGroup] = Field(default_factory=list)
    steps: list[FlagGroup] = Field(default_factory=list)
    sleep: list[FlagGroup] = Field(default_factory=list)

    def groups_for(self, kind: str) -> list[FlagGroup]:
        """Return the flag groups of observation kind `kind` (none for unknown kinds)."""
        groups = getattr(self, kind, None) if kind in type(self).model_fields else None
        return groups if isinstance(groups, list) else []

    @classmethod
    def load(cls, path: Path | str | None) -> Thresholds:
        """Return the defaults, with the kinds named in the JSON file at `path` replaced.

        Raises `OSError` if the file cannot be read and `pydantic.ValidationError` if it
        is not a valid thresholds document: a bad file must stop start-up, not be ignored.
        """
        if path is None:
            return cls()
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
