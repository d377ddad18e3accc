"""Stored observations as FHIR R4 Observations, validated with the `fhir.resources` R4B models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

from flows.codes_and_flags import enrich_reading
from flows.enrich import observation_id
from flows.fhir import (
    fhir_id,
    kinds_for_code,
    observation_id_of,
    searchset_bundle,
    to_fhir_observation,
)
from flows.model import ObservationKind, Reading
from flows.thresholds import Thresholds

MEASURED = datetime(2026, 3, 1, 8, 30, 15, 250000, tzinfo=UTC)


def stored(kind: ObservationKind, values: dict[str, Any], **attributes: Any) -> dict[str, Any]:
    """An observation document in the shape `flows.enrich.enrich_envelope` stores."""
    reading = Reading(kind, values, MEASURED, MEASURED, attributes=attributes)
    return {
        "_id": observation_id("0123456789abcdef0123456789abcdef", 2),
        "patient_id": "P-0001",
        "hospital_id": "H-01",
        "kind": str(kind),
        "device_type": "AVA4",
        "device_id": "08F9E0D1F7B4",
        "sub_device": None,
        "message_id": "0123456789abcdef0123456789abcdef",
        "topic": "dusun_pub",
        "measured_at": MEASURED,
        "device_time": MEASURED,
        "received_at": MEASURED + timedelta(seconds=2),
        "values": values,
        "attributes": attributes,
        **enrich_reading(reading, Thresholds()),
    }


def validated(resource: dict[str, Any]) -> Observation:
    return Observation.model_validate(resource)


def codes(concept: Any) -> list[str]:
    return [coding.code for coding in concept.coding]


def test_spo2_carries_both_loinc_codes_and_a_ucum_percentage() -> None:
    resource = to_fhir_observation(stored(ObservationKind.SPO2, {"spo2": 97, "pulse": 72}))
    assert resource is not None
    observation = validated(resource)
    assert codes(observation.code) == ["59408-5", "2708-6"]
    assert observation.valueQuantity.value == 97
    assert observation.valueQuantity.system == "http://unitsofmeasure.org"
    assert observation.valueQuantity.code == "%"
    assert [codes(c.code) for c in observation.component] == [["8867-4"]]
    assert codes(observation.category[0]) == ["vital-signs"]
    assert codes(observation.interpretation[0]) == ["N"]


def test_spo2_stored_before_codes_existed_still_carries_both_codes() -> None:
    doc = stored(ObservationKind.SPO2, {"spo2": 97})
    del doc["codes"]
    resource = to_fhir_observation(doc)
    assert resource is not None
    assert codes(validated(resource).code) == ["59408-5", "2708-6"]


def test_blood_pressure_is_a_panel_with_components_and_interpretation_from_flags() -> None:
    doc = stored(ObservationKind.BLOOD_PRESSURE, {"systolic": 185, "diastolic": 95, "pulse": 80})
    resource = to_fhir_observation(doc)
    assert resource is not None
    observation = validated(resource)
    assert codes(observation.code) == ["85354-9"]
    assert observation.valueQuantity is None
    components = {codes(c.code)[0]: c.valueQuantity for c in observation.component}
    assert set(components) == {"8480-6", "8462-4", "8867-4"}
    assert components["8480-6"].value == 185
    assert components["8480-6"].code == "mm[Hg]"
    assert components["8867-4"].code == "/min"
    assert [codes(i) for i in observation.interpretation] == [["HH"]]
    assert "Hypertensive crisis" in observation.interpretation[0].text


def test_identity_time_patient_and_device_come_from_the_stored_document() -> None:
    doc = stored(ObservationKind.HEART_RATE, {"heart_rate": 45})
    resource = to_fhir_observation(doc)
    assert resource is not None
    observation = validated(resource)
    assert observation.id == "0123456789abcdef0123456789abcdef-2"
    assert observation_id_of(observation.id) == doc["_id"]
    assert observation.status == "final"
    assert observation.subject.reference == "Patient/P-0001"
    assert resource["effectiveDateTime"] == "2026-03-01T08:30:15.250Z"
    assert resource["issued"] == "2026-03-01T08:30:17.250Z"
    assert observation.device.identifier.value == "AVA4/08F9E0D1F7B4"
    assert [codes(i) for i in observation.interpretation] == [["L"]]


@pytest.mark.parametrize(
    ("kind", "values", "code", "unit", "category"),
    [
        (ObservationKind.BODY_TEMPERATURE, {"temperature": 38.4}, "8310-5", "Cel", "vital-signs"),
        (ObservationKind.BODY_WEIGHT, {"weight": 71.25}, "29463-7", "kg", "vital-signs"),
        (ObservationKind.BLOOD_GLUCOSE, {"glucose": 52}, "2339-0", "mg/dL", "laboratory"),
        (ObservationKind.STEPS, {"steps": 4312}, "41950-7", "{steps}", "activity"),
    ],
)
def test_single_value_kinds_validate(
    kind: ObservationKind, values: dict[str, Any], code: str, unit: str, category: str
) -> None:
    resource = to_fhir_observation(stored(kind, values))
    assert resource is not None
    observation = validated(resource)
    assert codes(observation.code) == [code]
    assert observation.valueQuantity.code == unit
    assert codes(observation.category[0]) == [category]


def test_kinds_without_a_loinc_code_have_no_fhir_form() -> None:
    for kind in (ObservationKind.LOCATION, ObservationKind.SLEEP):
        assert to_fhir_observation(stored(kind, {})) is None
    assert to_fhir_observation(stored(ObservationKind.EMERGENCY, {}, event="sos")) is None


def test_code_search_matches_what_observation_code_carries() -> None:
    assert kinds_for_code("2708-6") == [ObservationKind.SPO2]
    assert kinds_for_code("http://loinc.org|59408-5") == [ObservationKind.SPO2]
    assert kinds_for_code("8867-4") == [ObservationKind.HEART_RATE]
    assert kinds_for_code("8480-6") == []  # a component, not the Observation's code
    assert kinds_for_code("http://snomed.info/sct|8867-4") == []


def test_searchset_bundle_validates() -> None:
    resources = [
        to_fhir_observation(stored(ObservationKind.SPO2, {"spo2": 91})),
        to_fhir_observation(stored(ObservationKind.BLOOD_PRESSURE, {"systolic": 120})),
    ]
    bundle = searchset_bundle(
        [r for r in resources if r is not None],
        "http://testserver/fhir",
        "http://testserver/fhir/Observation?patient=P-0001",
        "http://testserver/fhir/Observation?patient=P-0001&_cursor=x",
        now=MEASURED,
    )
    model = Bundle.model_validate(bundle)
    assert model.type == "searchset"
    assert [link.relation for link in model.link] == ["self", "next"]
    first = resources[0]
    assert first is not None
    assert model.entry[0].fullUrl == f"http://testserver/fhir/Observation/{first['id']}"
    assert fhir_id(observation_id_of(first["id"]) or "") == first["id"]


def test_a_fhir_id_whose_index_is_not_ascii_digits_names_no_observation():
    assert observation_id_of("abc-1") == "abc:1"
    assert observation_id_of("abc-²") is None
    assert observation_id_of("abc-\uff11") is None
