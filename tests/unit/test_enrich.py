"""Enrichment: LOINC codes and UCUM units per kind, clinical flags at each band boundary."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flows.codes_and_flags import CODINGS, enrich_reading
from flows.devices import ava4, kati, qube
from flows.devices.measures import MEASURES
from flows.model import ObservationKind, Reading
from flows.thresholds import Thresholds

NOW = datetime(2025, 7, 13, 9, 0, tzinfo=UTC)
DEFAULTS = Thresholds()
K = ObservationKind


def reading(
    kind: ObservationKind, values: dict[str, Any], attributes: dict[str, Any] | None = None
) -> Reading:
    return Reading(
        kind=kind, values=values, measured_at=NOW, device_time=None, attributes=attributes or {}
    )


def flags_of(kind: ObservationKind, values: dict[str, Any]) -> list[tuple[str, str]]:
    enriched = enrich_reading(reading(kind, values), DEFAULTS)
    return [(flag["code"], flag["severity"]) for flag in enriched["flags"]]


# Codes and units ------------------------------------------------------------------------


def test_blood_pressure_has_panel_code_and_coded_components_in_mm_hg() -> None:
    enriched = enrich_reading(
        reading(K.BLOOD_PRESSURE, {"systolic": 118, "diastolic": 76, "pulse": 70}), DEFAULTS
    )
    assert enriched["code"] == {
        "system": "http://loinc.org",
        "code": "85354-9",
        "display": "Blood pressure panel with all children optional",
    }
    assert enriched["components"] == {
        "systolic": {"value": 118, "unit": "mm[Hg]", "code": "8480-6"},
        "diastolic": {"value": 76, "unit": "mm[Hg]", "code": "8462-4"},
        "pulse": {"value": 70, "unit": "/min", "code": "8867-4"},
    }
    assert (enriched["flags"], enriched["severity"], enriched["alert"]) == ([], "normal", False)


@pytest.mark.parametrize(
    ("kind", "values", "code", "components"),
    [
        (K.HEART_RATE, {"heart_rate": 72}, "8867-4", {"heart_rate": ("/min", "8867-4")}),
        (
            K.SPO2,
            {"spo2": 97, "pulse": 70, "perfusion_index": 4.3},
            "59408-5",
            {"spo2": ("%", "2708-6"), "pulse": ("/min", "8867-4"), "perfusion_index": ("%", None)},
        ),
        (K.BODY_TEMPERATURE, {"temperature": 36.6}, "8310-5", {"temperature": ("Cel", "8310-5")}),
        (
            K.BODY_WEIGHT,
            {"weight": 79.3, "resistance": 605.9},
            "29463-7",
            {"weight": ("kg", "29463-7"), "resistance": ("Ohm", None)},
        ),
        (K.BLOOD_GLUCOSE, {"glucose": 108}, "2339-0", {"glucose": ("mg/dL", "2339-0")}),
        (K.URIC_ACID, {"uric_acid": 517.5}, "14933-6", {"uric_acid": ("umol/L", "14933-6")}),
        (K.CHOLESTEROL, {"cholesterol": 4.3}, "14647-2", {"cholesterol": ("mmol/L", "14647-2")}),
        (K.STEPS, {"steps": 783}, "41950-7", {"steps": ("{steps}", "41950-7")}),
    ],
)
def test_each_kind_has_its_loinc_code_and_ucum_units(
    kind: ObservationKind,
    values: dict[str, Any],
    code: str,
    components: dict[str, tuple[str, str | None]],
) -> None:
    enriched = enrich_reading(reading(kind, values), DEFAULTS)
    assert enriched["code"]["system"] == "http://loinc.org"
    assert enriched["code"]["code"] == code
    assert {
        name: (c["unit"], c["code"]) for name, c in enriched["components"].items()
    } == components


def test_spo2_observation_carries_both_pulse_oximetry_loinc_codes() -> None:
    # US Core pulse oximetry: Observation.code holds 59408-5 and 2708-6, not only the
    # component of the value.
    enriched = enrich_reading(reading(K.SPO2, {"spo2": 97, "pulse": 70}), DEFAULTS)
    assert enriched["codes"] == [
        {
            "system": "http://loinc.org",
            "code": "59408-5",
            "display": "Oxygen saturation in Arterial blood by Pulse oximetry",
        },
        {
            "system": "http://loinc.org",
            "code": "2708-6",
            "display": "Oxygen saturation in Arterial blood",
        },
    ]
    assert enriched["code"] == enriched["codes"][0]
    assert enriched["components"]["spo2"]["code"] == "2708-6"


@pytest.mark.parametrize("kind", [k for k in K if k is not K.SPO2])
def test_other_kinds_carry_their_one_code_or_none(kind: ObservationKind) -> None:
    enriched = enrich_reading(reading(kind, {}), DEFAULTS)
    assert enriched["codes"] == ([enriched["code"]] if enriched["code"] else [])


@pytest.mark.parametrize("kind", [K.SLEEP, K.LOCATION])
def test_kinds_without_a_loinc_code_have_none(kind: ObservationKind) -> None:
    enriched = enrich_reading(reading(kind, {"duration_minutes": 400}), DEFAULTS)
    assert enriched["code"] is None
    assert enriched["components"] == {
        "duration_minutes": {"value": 400, "unit": "min", "code": None}
    }


def test_location_components_keep_non_numeric_values_without_unit() -> None:
    values = {"latitude": 13.69, "wifi": "[{...}]"}
    components = enrich_reading(reading(K.LOCATION, values), DEFAULTS)["components"]
    assert components == {
        "latitude": {"value": 13.69, "unit": "deg", "code": None},
        "wifi": {"value": "[{...}]", "unit": None, "code": None},
    }


def test_every_kind_has_a_coding_row() -> None:
    assert set(CODINGS) == set(ObservationKind)


def test_every_value_the_parsers_produce_has_a_unit_row() -> None:
    tables = [*ava4.ATTRIBUTES.rows.values(), *qube.ATTRIBUTES.rows.values(), *kati.VITAL_SIGNS]
    for spec in [*tables, kati.STEPS]:
        for value in spec.values:
            assert value.name in MEASURES


# Blood pressure (ACC/AHA 2017 + NEWS2 hypotension) ---------------------------------------


@pytest.mark.parametrize(
    ("systolic", "diastolic", "expected"),
    [
        (119, 79, []),
        (120, 79, [("bp_elevated", "low")]),
        (129, 79, [("bp_elevated", "low")]),
        (130, 79, [("bp_stage_1", "medium")]),
        (119, 80, [("bp_stage_1", "medium")]),
        (139, 89, [("bp_stage_1", "medium")]),
        (140, 70, [("bp_stage_2", "high")]),
        (125, 90, [("bp_stage_2", "high")]),
        (180, 119, [("bp_stage_2", "high")]),
        (180, 120, [("bp_stage_2", "high")]),
        (181, 100, [("bp_hypertensive_crisis", "critical")]),
        (170, 121, [("bp_hypertensive_crisis", "critical")]),
        (111, 70, []),
        (110, 70, [("bp_systolic_low", "low")]),
        (101, 70, [("bp_systolic_low", "low")]),
        (100, 70, [("bp_systolic_low_moderate", "medium")]),
        (91, 60, [("bp_systolic_low_moderate", "medium")]),
        (90, 60, [("bp_hypotension", "high")]),
        (88, 82, [("bp_stage_1", "medium"), ("bp_hypotension", "high")]),
        (105, 82, [("bp_stage_1", "medium"), ("bp_systolic_low", "low")]),
    ],
)
def test_blood_pressure_stage_boundaries(
    systolic: int, diastolic: int, expected: list[tuple[str, str]]
) -> None:
    assert flags_of(K.BLOOD_PRESSURE, {"systolic": systolic, "diastolic": diastolic}) == expected


@pytest.mark.parametrize(
    ("systolic", "news2_score", "severity", "alert"),
    [
        (115, 0, "normal", False),
        (105, 1, "low", False),
        (95, 2, "medium", False),
        (90, 3, "high", True),
        (70, 3, "high", True),
    ],
)
def test_low_systolic_severity_follows_the_news2_score(
    systolic: int, news2_score: int, severity: str, alert: bool
) -> None:
    # NEWS2 (RCP 2017): <= 90 scores 3, 91-100 scores 2, 101-110 scores 1, 111-219 none; a
    # score of 1 is "low", 2 "medium", 3 "high" here, as for the other NEWS2 parameters.
    enriched = enrich_reading(reading(K.BLOOD_PRESSURE, {"systolic": systolic}), DEFAULTS)
    assert (enriched["severity"], enriched["alert"]) == (severity, alert)
    assert len(enriched["flags"]) == (news2_score > 0)


def test_hypertensive_crisis_is_a_critical_alert_with_a_readable_message() -> None:
    enriched = enrich_reading(
        reading(K.BLOOD_PRESSURE, {"systolic": 185, "diastolic": 95}), DEFAULTS
    )
    assert enriched["flags"] == [
        {
            "code": "bp_hypertensive_crisis",
            "severity": "critical",
            "message": "Hypertensive crisis: systolic 185 mm[Hg] (> 180)",
        }
    ]
    assert (enriched["severity"], enriched["alert"]) == ("critical", True)


# NEWS2 bands ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heart_rate", "expected"),
    [
        (40, [("bradycardia_severe", "high")]),
        (41, [("bradycardia", "low")]),
        (50, [("bradycardia", "low")]),
        (51, []),
        (90, []),
        (91, [("tachycardia_mild", "low")]),
        (110, [("tachycardia_mild", "low")]),
        (111, [("tachycardia_moderate", "medium")]),
        (130, [("tachycardia_moderate", "medium")]),
        (131, [("tachycardia_severe", "high")]),
    ],
)
def test_heart_rate_news2_band_boundaries(heart_rate: int, expected: list[tuple[str, str]]) -> None:
    assert flags_of(K.HEART_RATE, {"heart_rate": heart_rate}) == expected


@pytest.mark.parametrize(
    ("spo2", "expected"),
    [
        (85, [("spo2_low_severe", "high")]),
        (91, [("spo2_low_severe", "high")]),
        (92, [("spo2_low_moderate", "medium")]),
        (93, [("spo2_low_moderate", "medium")]),
        (94, [("spo2_low", "low")]),
        (95, [("spo2_low", "low")]),
        (96, []),
        (100, []),
    ],
)
def test_spo2_news2_scale_1_band_boundaries(spo2: int, expected: list[tuple[str, str]]) -> None:
    assert flags_of(K.SPO2, {"spo2": spo2, "pulse": 200}) == expected


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [
        (35.0, [("hypothermia", "high")]),
        (35.1, [("temperature_low", "low")]),
        (36.0, [("temperature_low", "low")]),
        (36.1, []),
        (38.0, []),
        (38.1, [("fever", "low")]),
        (39.0, [("fever", "low")]),
        (39.1, [("fever_high", "medium")]),
    ],
)
def test_temperature_news2_band_boundaries(
    temperature: float, expected: list[tuple[str, str]]
) -> None:
    assert flags_of(K.BODY_TEMPERATURE, {"temperature": temperature}) == expected


# ADA glycaemia --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glucose", "expected"),
    [
        (40, [("hypoglycaemia_level_2", "critical")]),
        (53, [("hypoglycaemia_level_2", "critical")]),
        (54, [("hypoglycaemia_level_1", "high")]),
        (69, [("hypoglycaemia_level_1", "high")]),
        (70, []),
        (180, []),
        (181, [("hyperglycaemia_level_1", "medium")]),
        (250, [("hyperglycaemia_level_1", "medium")]),
        (251, [("hyperglycaemia_level_2", "high")]),
    ],
)
def test_glucose_ada_band_boundaries(glucose: int, expected: list[tuple[str, str]]) -> None:
    assert flags_of(K.BLOOD_GLUCOSE, {"glucose": glucose}) == expected


@pytest.mark.parametrize(
    ("severity", "alert"),
    [("normal", False), ("low", False), ("medium", False), ("high", True), ("critical", True)],
)
def test_alert_is_raised_for_high_and_critical_only(severity: str, alert: bool) -> None:
    glucose = {"normal": 100, "low": None, "medium": 200, "high": 60, "critical": 40}[severity]
    if glucose is None:
        enriched = enrich_reading(reading(K.HEART_RATE, {"heart_rate": 95}), DEFAULTS)
    else:
        enriched = enrich_reading(reading(K.BLOOD_GLUCOSE, {"glucose": glucose}), DEFAULTS)
    assert (enriched["severity"], enriched["alert"]) == (severity, alert)


# Emergencies ----------------------------------------------------------------------------


@pytest.mark.parametrize(("event", "code"), [("sos", "sos"), ("fall", "fall"), ("?", "emergency")])
def test_emergencies_are_critical_alerts(event: str, code: str) -> None:
    enriched = enrich_reading(
        reading(K.EMERGENCY, {"latitude": 13.69, "longitude": 100.7}, {"event": event}), DEFAULTS
    )
    assert [(f["code"], f["severity"]) for f in enriched["flags"]] == [(code, "critical")]
    assert (enriched["severity"], enriched["alert"]) == ("critical", True)
    assert enriched["code"] is None


def test_kinds_without_thresholds_are_normal() -> None:
    for kind, values in [
        (K.STEPS, {"steps": 0}),
        (K.BODY_WEIGHT, {"weight": 300}),
        (K.URIC_ACID, {"uric_acid": 900}),
        (K.LOCATION, {}),
    ]:
        assert enrich_reading(reading(kind, values), DEFAULTS)["severity"] == "normal"


def test_non_numeric_value_is_never_flagged() -> None:
    assert flags_of(K.HEART_RATE, {"heart_rate": "200"}) == []
    assert flags_of(K.HEART_RATE, {"heart_rate": True}) == []


def test_enrichment_is_json_serialisable() -> None:
    enriched = enrich_reading(reading(K.BLOOD_GLUCOSE, {"glucose": 40}), DEFAULTS)
    json.dumps(enriched, allow_nan=False)


# Thresholds as data ---------------------------------------------------------------------


def test_load_without_a_file_gives_the_published_defaults() -> None:
    assert Thresholds.load(None) == Thresholds()


def test_file_replaces_only_the_kinds_it_names(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(
        json.dumps(
            {
                "spo2": [
                    {
                        "name": "copd_target",
                        "bands": [
                            {
                                "value": "spo2",
                                "code": "spo2_below_target",
                                "severity": "medium",
                                "message": "Below the 88-92 % target",
                                "below": 88,
                            }
                        ],
                    }
                ],
                "body_weight": [
                    {
                        "name": "obesity",
                        "bands": [
                            {
                                "value": "weight",
                                "code": "weight_high",
                                "severity": "low",
                                "message": "Weight above 150 kg",
                                "above": 150,
                            }
                        ],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    loaded = Thresholds.load(path)
    assert enrich_reading(reading(K.SPO2, {"spo2": 89}), loaded)["flags"] == []
    assert [f["code"] for f in enrich_reading(reading(K.SPO2, {"spo2": 87}), loaded)["flags"]] == [
        "spo2_below_target"
    ]
    assert enrich_reading(reading(K.BODY_WEIGHT, {"weight": 151}), loaded)["severity"] == "low"
    assert loaded.blood_pressure == Thresholds().blood_pressure


@pytest.mark.parametrize(
    "document",
    [
        {"spo3": []},
        {
            "spo2": [
                {
                    "name": "x",
                    "bands": [{"value": "spo2", "code": "c", "severity": "low", "message": "m"}],
                }
            ]
        },
        {
            "spo2": [
                {
                    "name": "x",
                    "bands": [
                        {
                            "value": "spo2",
                            "code": "c",
                            "severity": "severe",
                            "message": "m",
                            "below": 90,
                        }
                    ],
                }
            ]
        },
    ],
)
def test_invalid_thresholds_file_is_refused(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ValidationError):
        Thresholds.load(path)


def test_missing_thresholds_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        Thresholds.load(tmp_path / "absent.json")
