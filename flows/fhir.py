"""Stored observations as FHIR R4 `Observation` resources (and searchset `Bundle`s).

The mapping is a table per kind (`FHIR_KINDS`): which stored value is the `valueQuantity`
(none for the blood-pressure panel, whose values are all components) and the category.
Everything else comes from the stored document as it is: the LOINC codes (`codes`: for SpO2
both 59408-5 and 2708-6), the UCUM units of
`components`, `measured_at` as `effectiveDateTime`, `received_at` as `issued`, the device,
the patient, and an `interpretation` per clinical flag. The resource id is the observation's
deterministic `_id` (with `:` spelled `-`, the one character FHIR ids do not allow), so a
receiver upserts rather than duplicates.

Kinds without a LOINC code (sleep, location, emergency) have no FHIR form here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flows.codes_and_flags import CODINGS, LOINC_SYSTEM
from flows.model import ObservationKind

__all__ = [
    "FHIR_KINDS",
    "FhirKind",
    "fhir_id",
    "kinds_for_code",
    "observation_id_of",
    "searchset_bundle",
    "to_fhir_observation",
]

UCUM_SYSTEM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DEVICE_SYSTEM = "urn:vitalflow:device"

Document = dict[str, Any]


@dataclass(frozen=True)
class FhirKind:
    """How one kind of reading becomes an Observation."""

    category: str
    value: str | None  # the stored value that is `valueQuantity`; None for a panel


FHIR_KINDS: dict[ObservationKind, FhirKind] = {
    ObservationKind.BLOOD_PRESSURE: FhirKind("vital-signs", None),
    ObservationKind.HEART_RATE: FhirKind("vital-signs", "heart_rate"),
    ObservationKind.SPO2: FhirKind("vital-signs", "spo2"),
    ObservationKind.BODY_TEMPERATURE: FhirKind("vital-signs", "temperature"),
    ObservationKind.BODY_WEIGHT: FhirKind("vital-signs", "weight"),
    ObservationKind.BLOOD_GLUCOSE: FhirKind("laboratory", "glucose"),
    ObservationKind.URIC_ACID: FhirKind("laboratory", "uric_acid"),
    ObservationKind.CHOLESTEROL: FhirKind("laboratory", "cholesterol"),
    ObservationKind.STEPS: FhirKind("activity", "steps"),
}

_CATEGORY_DISPLAY = {
    "vital-signs": "Vital Signs",
    "laboratory": "Laboratory",
    "activity": "Activity",
}

# Which way a flag points; the severity decides between H/L and the critical HH/LL.
_FLAG_DIRECTION = {
    "bp_hypertensive_crisis": "H",
    "bp_stage_2": "H",
    "bp_stage_1": "H",
    "bp_elevated": "H",
    "bp_hypotension": "L",
    "bp_systolic_low_moderate": "L",
    "bp_systolic_low": "L",
    "bradycardia_severe": "L",
    "bradycardia": "L",
    "tachycardia_severe": "H",
    "tachycardia_moderate": "H",
    "tachycardia_mild": "H",
    "spo2_low_severe": "L",
    "spo2_low_moderate": "L",
    "spo2_low": "L",
    "hypothermia": "L",
    "temperature_low": "L",
    "fever_high": "H",
    "fever": "H",
    "hypoglycaemia_level_2": "L",
    "hypoglycaemia_level_1": "L",
    "hyperglycaemia_level_2": "H",
    "hyperglycaemia_level_1": "H",
}
_INTERPRETATION_DISPLAY = {
    "N": "Normal",
    "H": "High",
    "L": "Low",
    "HH": "Critical high",
    "LL": "Critical low",
    "A": "Abnormal",
    "AA": "Critical abnormal",
}


def fhir_id(observation_id: str) -> str:
    """Return the FHIR resource id of an observation `_id` (`<message id>:<index>`)."""
    return observation_id.replace(":", "-")


def observation_id_of(resource_id: str) -> str | None:
    """Return the observation `_id` a FHIR id names, or None if it cannot name one."""
    message_id, sep, index = resource_id.rpartition("-")
    if not sep or not message_id or not (index.isascii() and index.isdigit()):
        return None
    return f"{message_id}:{index}"


def kinds_for_code(code: str) -> list[ObservationKind]:
    """Return the kinds whose Observation.code carries `code` (`system|code` or bare code)."""
    system, sep, bare = code.rpartition("|")
    if sep and system and system != LOINC_SYSTEM:
        return []
    found = []
    for kind in FHIR_KINDS:
        coding = CODINGS[kind]
        codes = {c.code for c in (coding.code, *coding.also) if c is not None}
        if bare in codes:
            found.append(kind)
    return found


def _instant(moment: datetime) -> str:
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _quantity(component: Document) -> Document:
    quantity: Document = {"value": component["value"]}
    unit = component.get("unit")
    if unit:
        quantity.update(unit=unit, system=UCUM_SYSTEM, code=unit)
    return quantity


def _loinc(code: str, display: str | None = None) -> Document:
    coding = {"system": LOINC_SYSTEM, "code": code}
    if display:
        coding["display"] = display
    return coding


def _interpretation(flags: list[Document]) -> list[Document]:
    if not flags:
        return [_interpretation_concept("N", None)]
    concepts = []
    for flag in flags:
        direction = _FLAG_DIRECTION.get(str(flag.get("code")))
        critical = flag.get("severity") == "critical"
        symbol = (direction or "A") * (2 if critical else 1)
        concepts.append(_interpretation_concept(symbol, flag.get("message")))
    return concepts


def _interpretation_concept(symbol: str, text: str | None) -> Document:
    concept: Document = {
        "coding": [
            {
                "system": INTERPRETATION_SYSTEM,
                "code": symbol,
                "display": _INTERPRETATION_DISPLAY[symbol],
            }
        ]
    }
    if text:
        concept["text"] = text
    return concept


def to_fhir_observation(doc: Document) -> Document | None:
    """Return the FHIR R4 Observation (as JSON) of a stored observation, None if it has none."""
    try:
        kind = ObservationKind(str(doc.get("kind")))
    except ValueError:
        return None
    fhir_kind = FHIR_KINDS.get(kind)
    stored_code = doc.get("code")
    if fhir_kind is None or not isinstance(stored_code, dict):
        return None
    components: Document = doc.get("components") or {}
    primary = components.get(fhir_kind.value) if fhir_kind.value else None
    # `codes` holds every coding of the observation (SpO2: 59408-5 and 2708-6); documents
    # stored before it existed have only `code`, and their primary value's code says the rest.
    stored_codes = doc.get("codes")
    if not stored_codes:
        stored_codes = [stored_code]
        if primary and primary.get("code") and primary["code"] != stored_code.get("code"):
            stored_codes.append({"code": primary["code"]})
    codings = [_loinc(c["code"], c.get("display")) for c in stored_codes if c.get("code")]
    device_type, device_id = doc["device_type"], doc["device_id"]
    resource: Document = {
        "resourceType": "Observation",
        "id": fhir_id(str(doc["_id"])),
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": CATEGORY_SYSTEM,
                        "code": fhir_kind.category,
                        "display": _CATEGORY_DISPLAY[fhir_kind.category],
                    }
                ]
            }
        ],
        "code": {"coding": codings, "text": stored_code.get("display") or str(kind)},
        "subject": {"reference": f"Patient/{doc['patient_id']}"},
        "effectiveDateTime": _instant(doc["measured_at"]),
        "issued": _instant(doc["received_at"]),
        "device": {
            "identifier": {"system": DEVICE_SYSTEM, "value": f"{device_type}/{device_id}"},
            "display": f"{device_type} {device_id}",
        },
        "interpretation": _interpretation(list(doc.get("flags") or [])),
    }
    if primary is not None:
        resource["valueQuantity"] = _quantity(primary)
    others = [
        {"code": {"coding": [_loinc(c["code"])]}, "valueQuantity": _quantity(c)}
        for name, c in components.items()
        if name != fhir_kind.value and isinstance(c, dict) and c.get("code")
    ]
    if others:
        resource["component"] = others
    return resource


def searchset_bundle(
    resources: list[Document], base_url: str, self_url: str, next_url: str | None, *, now: datetime
) -> Document:
    """Return a FHIR `Bundle` of type searchset holding `resources` (all search matches).

    `base_url` is the FHIR base (`https://host/fhir`): entries' `fullUrl`s are absolute.
    """
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": _instant(now),
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base_url.rstrip('/')}/Observation/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }
