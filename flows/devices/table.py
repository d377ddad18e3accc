"""The shape of a device table, and how one table row turns a payload object into readings.

A family table maps a device's attribute name (or a watch message's fields) to a `KindSpec`:
the observation kind, which payload fields hold which normalised value (first spelling found
wins, keys compared case-insensitively), optional scaling, and which text fields become
attributes. Units, precision and plausible ranges come from `measures.MEASURES`.

Reading a row is strict about values that are present: a value that is not a finite number
is `invalid_value`, one outside its plausible range `out_of_range`, a required one missing
`missing_field`. Empty strings count as missing. Error messages name fields, never values,
so a payload cannot smuggle personal data into an error event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flows.devices.fields import get_field, get_text, is_absent, to_number
from flows.devices.measures import MEASURES, Measure
from flows.model import ObservationKind, ParseError, Reading

__all__ = [
    "AttributeSpec",
    "AttributeTable",
    "KindSpec",
    "ValueSpec",
    "read_kind",
    "readings_from",
]

_SEPARATOR_RUNS = re.compile(r"[\s_\-]+")


@dataclass(frozen=True)
class ValueSpec:
    """One normalised value: its name (a `MEASURES` key) and the payload fields holding it."""

    name: str
    fields: tuple[str, ...]
    required: bool = True
    scale: float = 1.0
    # Watches report a vital they did not measure as 0 (no SpO2 sensor, no reading yet).
    zero_is_absent: bool = False

    @property
    def measure(self) -> Measure:
        """The unit, precision and plausible range of this value."""
        return MEASURES[self.name]


@dataclass(frozen=True)
class AttributeSpec:
    """One text attribute of a reading (glucose marker, thermometer mode) and its fields."""

    name: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class KindSpec:
    """A table row: what kind of reading an object is and where its values are."""

    kind: ObservationKind
    values: tuple[ValueSpec, ...]
    attributes: tuple[AttributeSpec, ...] = ()
    # Nurses want the latest heart rate whatever measured it: a BP cuff's or an oximeter's
    # pulse also becomes a reading of its own.
    heart_rate_from: str | None = None


class AttributeTable:
    """A family's attribute name -> `KindSpec` table, looked up forgivingly.

    Names are compared ignoring case and treating spaces, `-` and `_` alike: the vendor
    writes `Oximeter JUMPER` behind AVA4 and `Oximeter_JUMPER` behind Qube.
    """

    def __init__(self, rows: Mapping[str, KindSpec]) -> None:
        self.rows = dict(rows)
        self._index = {self.key(name): spec for name, spec in rows.items()}

    @staticmethod
    def key(name: str) -> str:
        """Return the form of an attribute name used for comparison."""
        return _SEPARATOR_RUNS.sub("_", name.strip()).casefold()

    def find(self, name: str) -> KindSpec | None:
        """Return the row for attribute `name`, or None when the family has no such device."""
        return self._index.get(self.key(name))


def _first_present(item: Mapping[str, Any], spec: ValueSpec) -> tuple[str, Any]:
    """Return the first of the spec's fields present in `item` with its value, or None."""
    for name in spec.fields:
        value = get_field(item, name)
        if is_absent(value) or (spec.zero_is_absent and to_number(value) == 0):
            continue
        return name, value
    return spec.fields[0], None


def _normalise(spec: ValueSpec, field: str, raw: Any, context: str) -> float | int:
    """Return `raw` as the value of `spec`: a finite number, scaled, rounded, plausible."""
    number = to_number(raw)
    if not isinstance(number, int | float):
        msg = f"{context}: field '{field}' is not a number"
        raise ParseError("invalid_value", msg)
    measure = spec.measure
    scaled = round(number * spec.scale, measure.precision)
    if not measure.low <= scaled <= measure.high:
        unit = f" {measure.unit}" if measure.unit else ""
        msg = (
            f"{context}: field '{field}' is outside the plausible range "
            f"{measure.low:g}-{measure.high:g}{unit}"
        )
        raise ParseError("out_of_range", msg)
    return int(scaled) if measure.precision == 0 else scaled


def read_kind(
    item: Mapping[str, Any], spec: KindSpec, context: str, *, required: bool
) -> tuple[dict[str, float | int], dict[str, str]] | None:
    """Return the values and attributes `spec` finds in `item`.

    When none of its values is present, returns None if the kind is optional in this message
    (`required=False`, e.g. the spO2 of a watch) and raises `missing_field` otherwise.
    """
    found = {value.name: _first_present(item, value) for value in spec.values}
    for field, raw in found.values():
        if raw is None:
            _check_parent(item, field, context)
    if all(raw is None for _, raw in found.values()) and not required:
        return None
    values: dict[str, float | int] = {}
    for value in spec.values:
        field, raw = found[value.name]
        if raw is None:
            if value.required:
                msg = f"{context}: required field '{field}' is missing"
                raise ParseError("missing_field", msg)
            continue
        values[value.name] = _normalise(value, field, raw, context)
    if spec.kind is ObservationKind.BLOOD_PRESSURE:
        _check_pressures(values, context)
    attributes: dict[str, str] = {}
    for attribute in spec.attributes:
        for name in attribute.fields:
            text = get_text(item, name)
            if text:
                attributes[attribute.name] = text
                break
    return values, attributes


def _check_parent(item: Mapping[str, Any], field: str, context: str) -> None:
    # A value absent because what should hold it is not an object ("bloodPressure": "122/74")
    # was sent, and cannot be read: an error, not a silent absence.
    parent, dot, _ = field.rpartition(".")
    if not dot:
        return
    holder = get_field(item, parent)
    if not is_absent(holder) and type(holder) is not dict and not isinstance(holder, Mapping):
        msg = f"{context}: '{parent}' is not an object"
        raise ParseError("invalid_value", msg)


def _check_pressures(values: dict[str, float | int], context: str) -> None:
    # Each pressure can be plausible alone and the pair impossible: a diastolic at or above
    # the systolic is a swapped pair or a failed measurement, and stored it would be flagged
    # (and alerted) as hypertension.
    systolic, diastolic = values.get("systolic"), values.get("diastolic")
    if systolic is not None and diastolic is not None and diastolic >= systolic:
        msg = f"{context}: the diastolic pressure is not below the systolic"
        raise ParseError("out_of_range", msg)


def readings_from(
    item: Mapping[str, Any],
    spec: KindSpec,
    context: str,
    *,
    required: bool,
    measured_at: datetime,
    device_time: datetime | None,
    sub_device: str | None = None,
    patient_keys: tuple[str, ...] = (),
) -> list[Reading]:
    """Return the reading `spec` describes in `item`, plus its derived heart-rate reading."""
    read = read_kind(item, spec, context, required=required)
    if read is None:
        return []
    values, attributes = read
    readings = [
        Reading(
            kind=spec.kind,
            values=values,
            measured_at=measured_at,
            device_time=device_time,
            sub_device=sub_device,
            attributes=attributes,
            patient_keys=patient_keys,
        )
    ]
    if spec.heart_rate_from is not None and spec.heart_rate_from in values:
        readings.append(
            Reading(
                kind=ObservationKind.HEART_RATE,
                values={"heart_rate": values[spec.heart_rate_from]},
                measured_at=measured_at,
                device_time=device_time,
                sub_device=sub_device,
                attributes={"derived_from": str(spec.kind)},
                patient_keys=patient_keys,
            )
        )
    return readings
