"""Redaction's recursive fast path gives what the iterative walk gives, on anything.

`redact` copies plain dicts, lists and tuples recursively and hands everything else (dict and
list subclasses, unknown objects, whatever lies deeper than its recursion budget) to the
iterative walk; the key memo must not change which keys are personal, nor grow without bound.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows import redact as redaction
from flows.devices.nesting import too_deep as _too_deep
from flows.devices.parse_payload import MAX_DEPTH, ParseError, decode_payload
from flows.redact import REDACTED, is_personal_key, redact


class Subdict(dict[Any, Any]):
    pass


class Sublist(list[Any]):
    pass


class Box:
    """Neither a container nor a scalar: deep-copied by both walks."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is Box and other.value == self.value

    def __hash__(self) -> int:
        return hash(repr(self.value))

    def __repr__(self) -> str:
        return f"Box({self.value!r})"


def shape(value: object) -> object:
    """`value` with the type of every node spelled out: `==` alone takes (1,) for [1]."""
    if isinstance(value, dict):
        return ("dict", type(value).__name__, [(shape(k), shape(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [shape(v) for v in value])
    return (type(value).__name__, repr(value))


keys = (
    st.sampled_from(["nameTH", "NAMEEN", "citiz", "Birthday", "birth", "GENDER", "\u017fex", "cid"])
    | st.text(max_size=8)
    | st.integers()
    | st.none()
    | st.tuples(st.text(max_size=3))
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.builds(Box, st.integers())
)
values = st.recursive(
    scalars,
    lambda children: (
        st.dictionaries(keys, children, max_size=4)
        | st.dictionaries(keys, children, max_size=4).map(Subdict)
        | st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.lists(children, max_size=3).map(Sublist)
    ),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None, database=None)
@given(values)
def test_fast_path_gives_what_the_iterative_walk_gives(value: object) -> None:
    before = shape(value)
    assert shape(redact(value)) == shape(redaction._walk(value)) == shape(redaction._walk(value))
    assert shape(value) == before


@settings(max_examples=50, deadline=None, database=None)
@given(values, st.integers(min_value=1, max_value=3 * redaction._RECURSION_BUDGET))
def test_nesting_past_the_recursion_budget_gives_what_the_walk_gives(
    leaf: object, depth: int
) -> None:
    value: object = leaf
    for level in range(depth):
        value = {"level": value, "nameEN": "x"} if level % 2 else [value, (level,)]
    assert shape(redact(value)) == shape(redaction._walk(value))


def test_copies_are_not_shared_with_the_input() -> None:
    box = Box([1])
    payload = {"a": [box, {"b": 1}], "c": (box,)}
    copied = redact(payload)
    assert copied["a"][0] == box
    assert copied["a"][0] is not box
    assert copied["a"][1] is not payload["a"][1]  # type: ignore[index]
    assert copied["c"] == [box]


def test_deeper_than_the_stack_allows_is_still_redacted() -> None:
    payload: object = {"citiz": "3570300400000"}
    for _ in range(20_000):
        payload = [{"x": payload}]
    node = redact(payload)
    for _ in range(20_000):
        node = node[0]["x"]
    assert node == {"citiz": REDACTED}


def test_key_memo_stops_at_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redaction, "_personal_memo", {})
    monkeypatch.setattr(redaction, "_MEMO_LIMIT", 100)
    for n in range(1000):
        assert redact({f"key{n}": 1, f"value{n}": 2}) == {f"key{n}": 1, f"value{n}": 2}
        assert len(redaction._personal_memo) <= 100
    assert redact({"NameTh": "x", "birthPlace": "y"}) == {
        "NameTh": REDACTED,
        "birthPlace": REDACTED,
    }
    assert redaction._personal_memo == {"NameTh": True, "birthPlace": True} | {
        k: False for k in list(redaction._personal_memo)[:-2]
    }


def test_long_keys_are_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redaction, "_personal_memo", {})
    long_key = "birth" + "x" * 10_000
    assert redact({long_key: 1, "short": 2}) == {long_key: REDACTED, "short": 2}
    assert redaction._personal_memo == {"short": False}


def test_remembered_answers_are_the_ones_is_personal_key_gives() -> None:
    names = ["nameTH", "NAMEEN", "Birthday", "mac", "data", "\u017fex", "SEX", "cid", "CITIZ"]
    for _ in range(2):  # the second round answers from the memo
        copied = redact({name: 1 for name in names})
        assert {name: copied[name] == REDACTED for name in names} == {
            name: is_personal_key(name) for name in names
        }


def _too_deep_by_walk(obj: object, limit: int) -> bool:
    pending: list[tuple[object, int]] = [(obj, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            pending.extend((child, depth + 1) for child in children)
    return False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None, database=None)
@given(json_values, st.integers(min_value=0, max_value=8))
def test_too_deep_agrees_with_a_walk_of_every_node(value: object, limit: int) -> None:
    assert _too_deep(value, limit) is _too_deep_by_walk(value, limit)


@pytest.mark.parametrize(("depth", "refused"), [(MAX_DEPTH, False), (MAX_DEPTH + 1, True)])
def test_payload_nesting_is_refused_one_level_past_max_depth(depth: int, refused: bool) -> None:
    text = '{"a":' * (depth - 1) + "[1]" + "}" * (depth - 1)
    assert _too_deep(json.loads(text), MAX_DEPTH) is refused
    if refused:
        with pytest.raises(ParseError, match="nests deeper"):
            decode_payload(text.encode())
    else:
        assert decode_payload(text.encode()) == json.loads(text)


def test_redact_never_changes_a_deep_copy_of_its_input() -> None:
    payload = {"nameTH": ("a", {"v": [1, {"sex": 2}]}), 3: Subdict(dob=1), "x": Sublist([()])}
    original = copy.deepcopy(payload)
    assert redact(payload) == {
        "nameTH": REDACTED,
        3: {"dob": REDACTED},
        "x": [[]],
    }
    assert shape(payload) == shape(original)
