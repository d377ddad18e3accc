"""Fuzzing: whatever arrives, `parse_payload` raises only `ParseError` and `identify` nothing.

An exception other than `ParseError` escaping the parser would stop the whole dataflow, so
this throws random bytes, random JSON and mutated real samples at both, on every topic.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.device_clock import ClockRule
from flows.devices.parse_payload import identify, parse_payload
from flows.model import ParsedMessage, ParseError

PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"
RECEIVED = datetime(2025, 7, 13, 9, 0, tzinfo=UTC)
RULE = ClockRule(max_age=timedelta(days=7), max_skew=timedelta(seconds=300))
FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SAMPLES: list[dict[str, Any]] = [
    json.loads(line)
    for name in ("examples.jsonl", "capture-2025-07-13.jsonl")
    for line in (PAYLOADS / name).read_text(encoding="utf-8").splitlines()
    if line.strip()
]
KNOWN_TOPICS = [
    *sorted({sample["topic"] for sample in SAMPLES}),
    "iMEDE_watch/sos",
    "iMEDE_watch/FALLDOWN",
    "iMEDE_watch/",
    "iMEDE_watch/unknown",
    "elsewhere",
]
topics = st.sampled_from(KNOWN_TOPICS) | st.text(max_size=30)
_WITH_SURROGATES = st.characters(categories=["Cs", "Ll", "Nd", "Zs"])

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    # Lone surrogates (`json.dumps` writes them as `\ud800` escapes: JSON, not Unicode).
    | st.text(_WITH_SURROGATES, max_size=8)
    | st.sampled_from(["", " ", "108", "36.43000031", "nan", "-inf", "1e400", "1_0", "xx:xx"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=12) | st.text(_WITH_SURROGATES, max_size=4), children, max_size=5
        )
    ),
    max_leaves=25,
)


def check(topic: str, payload: bytes) -> None:
    """Parse, allowing only `ParseError`, and check what a success promises."""
    device_type, device_id = identify(topic, payload)
    assert isinstance(device_type, str)
    assert isinstance(device_id, str)
    try:
        parsed = parse_payload(topic, payload, RECEIVED, RULE)
    except ParseError as error:
        assert error.code in {
            "invalid_json",
            "unsupported_message",
            "unknown_attribute",
            "missing_field",
            "invalid_value",
            "out_of_range",
            "invalid_identifier",
        }
        assert error.message
        return
    assert isinstance(parsed, ParsedMessage)
    assert parsed.device_type == device_type
    # Everything reported must survive strict JSON (step events) and be timed sanely.
    json.dumps(parsed.payload, allow_nan=False)
    for reading in parsed.readings:
        json.dumps([reading.values, reading.attributes], allow_nan=False)
        assert reading.measured_at.tzinfo is not None
        assert reading.measured_at <= RECEIVED
        if reading.device_time is not None:
            assert reading.device_time.utcoffset() == timedelta(0)
        for value in reading.values.values():
            if isinstance(value, float):
                assert math.isfinite(value)
    assert (parsed.skip_reason is None) == bool(parsed.readings)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node inside a decoded payload."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(paths(value, (*prefix, index)))
    return found


def retyped(value: Any) -> Any:
    """The same value in another JSON type, as firmware variants send it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return [value]
    return json.dumps(value)


@st.composite
def mutated_samples(draw: st.DrawFn) -> tuple[str, bytes]:
    sample = draw(st.sampled_from(SAMPLES))
    payload = copy.deepcopy(sample["payload"])
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        candidates = paths(payload)[1:]
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "retype", "empty", "upper"]))
        if action == "replace":
            parent[key] = draw(json_values)
        elif action == "delete":
            del parent[key]
        elif action == "retype":
            parent[key] = retyped(parent[key])
        elif action == "empty":
            parent[key] = ""
        elif isinstance(key, str) and isinstance(parent, dict):
            parent[key.upper()] = parent.pop(key)
    topic = draw(st.sampled_from([sample["topic"], *KNOWN_TOPICS]))
    # Unescaped, a lone surrogate is written as its 3 bytes (CESU-8), not UTF-8.
    text = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    return topic, text.encode("utf-8", "surrogatepass")


@FUZZ
@given(topic=topics, payload=st.binary(max_size=300))
def test_random_bytes_raise_only_parse_errors(topic: str, payload: bytes) -> None:
    check(topic, payload)


@FUZZ
@given(topic=topics, value=json_values)
def test_random_json_raises_only_parse_errors(topic: str, value: Any) -> None:
    check(topic, json.dumps(value).encode())


@FUZZ
@given(message=mutated_samples())
def test_mutated_samples_raise_only_parse_errors(message: tuple[str, bytes]) -> None:
    check(*message)


@FUZZ
@given(
    sample=st.sampled_from(SAMPLES),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=4),
)
def test_corrupted_sample_bytes_raise_only_parse_errors(
    sample: dict[str, Any], flips: list[tuple[int, int]]
) -> None:
    raw = bytearray(json.dumps(sample["payload"], ensure_ascii=False).encode())
    for position, byte in flips:
        raw[position % len(raw)] = byte
    check(sample["topic"], bytes(raw))
