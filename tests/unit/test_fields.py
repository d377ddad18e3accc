"""`flows.devices.fields`: dotted paths through decoded JSON and through other mappings alike."""

from __future__ import annotations

from types import MappingProxyType

from flows.devices.fields import get_field, get_mapping


def test_path_through_dicts_matches_exactly_then_ignoring_case() -> None:
    obj = {"bloodPressure": {"bp_sys": 120, "BP_DIA": 80}}
    assert get_field(obj, "bloodPressure.bp_sys") == 120
    assert get_field(obj, "bloodpressure.bp_dia") == 80
    assert get_field(obj, "bloodPressure.pulse") is None


def test_a_step_that_is_not_an_object_ends_the_path() -> None:
    for obj in ({"a": [1, 2]}, {"a": "text"}, {"a": 3}, [{"a": 1}], None):
        assert get_field(obj, "a.b") is None


def test_mappings_other_than_dict_are_still_read() -> None:
    # The dict fast path must not turn other mappings away.
    obj = MappingProxyType({"outer": MappingProxyType({"Inner": 7})})
    assert get_field(obj, "outer.inner") == 7
    assert get_mapping(obj, "outer") == {"Inner": 7}
    assert get_mapping({"a": [1]}, "a") is None
