"""Where a Kati watch is: its GPS fix, the Wi-Fi networks it sees, its mobile cell.

The `location` object holds `GPS{latitude, longitude, speed, header}`, `WiFi` (a string of
single-quoted pseudo-JSON) and `LBS{MCC, MNC, LAC, CID, SetBase}` (numbers as strings,
`SetBase` pseudo-JSON again). Location is best effort and never makes a message an error:

- empty or missing coordinates: no coordinates, no `gps_valid` attribute;
- coordinates that are not numbers, outside [-90, 90] / [-180, 180], only one of the pair,
  or exactly (0, 0) (what receivers report without a fix): dropped, `gps_valid: false`;
- Wi-Fi or SetBase text that cannot be decoded: kept as the raw string.

Values: `latitude`, `longitude`, `speed`, `heading` (numbers), `wifi` (list of
`{ssid, mac, rssi}` or the raw string), `cell` (`{mcc, mnc, lac, cid, neighbours}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.devices.fields import get_field, get_mapping, get_text, is_absent, to_int_code, to_number
from flows.devices.identifiers import normalise_mac
from flows.devices.measures import MEASURES
from flows.devices.pseudo_json import PseudoJsonError, parse_pseudo_json

__all__ = ["location_values"]

_MAX_RAW_TEXT = 2048
_MAX_NETWORKS = 64
_CELL_FIELDS = {"mcc": "MCC", "mnc": "MNC", "lac": "LAC", "cid": "CID"}
_WIFI_FIELDS = {"ssid": "SSID", "mac": "MAC", "rssi": "RSSI"}
_NEIGHBOUR_FIELDS = {"lac": "LAC", "cid": "CID", "dbm": "dbm"}


def _bounded(name: str, raw: object) -> float | int | None:
    """Return `raw` as value `name` when it is a plausible number, else None."""
    number = to_number(raw)
    if not isinstance(number, int | float):
        return None
    measure = MEASURES[name]
    rounded = round(number, measure.precision)
    return rounded if measure.low <= rounded <= measure.high else None


def _gps(gps: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the GPS values and the `gps_valid` attribute (absent when no fix was sent)."""
    if gps is None:
        return {}, {}
    values: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    raw_lat, raw_lon = get_field(gps, "latitude"), get_field(gps, "longitude")
    if not (is_absent(raw_lat) and is_absent(raw_lon)):
        lat, lon = _bounded("latitude", raw_lat), _bounded("longitude", raw_lon)
        valid = lat is not None and lon is not None and (lat, lon) != (0, 0)
        attributes["gps_valid"] = valid
        if valid:
            values["latitude"], values["longitude"] = lat, lon
    for name, field in (("speed", "speed"), ("heading", "header")):
        number = _bounded(name, get_field(gps, field))
        if number is not None:
            values[name] = number
    return values, attributes


def _records(raw: object, fields: dict[str, str]) -> list[dict[str, Any]] | str | None:
    """Return a list of pseudo-JSON records picked by `fields`, or the raw text if unreadable."""
    if is_absent(raw):
        return None
    decoded: object = raw
    if isinstance(raw, str):
        try:
            decoded = parse_pseudo_json(raw)
        except PseudoJsonError:
            return raw[:_MAX_RAW_TEXT]
    if not isinstance(decoded, list) or not all(isinstance(r, Mapping) for r in decoded):
        return raw[:_MAX_RAW_TEXT] if isinstance(raw, str) else None
    records = []
    for record in decoded[:_MAX_NETWORKS]:
        picked: dict[str, Any] = {}
        for name, field in fields.items():
            if name == "ssid":
                value: Any = get_text(record, field)
            elif name == "mac":
                value = normalise_mac(get_field(record, field)) or get_text(record, field)
            else:
                value = to_int_code(get_field(record, field))
            if value is not None:
                picked[name] = value
        records.append(picked)
    return records


def _cell(lbs: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return the serving cell and its neighbours, or None when nothing usable was sent."""
    if lbs is None:
        return None
    cell: dict[str, Any] = {}
    for name, field in _CELL_FIELDS.items():
        code = to_int_code(get_field(lbs, field))
        if code is not None:
            cell[name] = code
    neighbours = _records(get_field(lbs, "SetBase"), _NEIGHBOUR_FIELDS)
    if neighbours is not None:
        cell["neighbours"] = neighbours
    return cell or None


def location_values(location: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the location values and attributes found in a watch's `location` object."""
    if not isinstance(location, Mapping):
        return {}, {}
    values, attributes = _gps(get_mapping(location, "GPS"))
    wifi = _records(get_field(location, "WiFi"), _WIFI_FIELDS)
    if wifi is not None:
        values["wifi"] = wifi
    cell = _cell(get_mapping(location, "LBS"))
    if cell is not None:
        values["cell"] = cell
    return values, attributes
