"""Payloads read by orjson decode exactly as the strict standard-library reader decodes them.

`decode_payload` tries orjson first and leaves to the strict reader whatever orjson refuses
or could read differently. Whatever the bytes, the outcome (the object, its number types,
-0.0; or the error code and message) must be the strict reader's alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flows.devices import parse_payload as decoding
from flows.model import ParseError

PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"
SAMPLES = [
    json.dumps(json.loads(line)["payload"]).encode()
    for name in ("examples.jsonl", "capture-2025-07-13.jsonl")
    for line in (PAYLOADS / name).read_text(encoding="utf-8").splitlines()
    if line.strip() and isinstance(json.loads(line).get("payload"), dict)
]
FUZZ = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, -(10**18)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([-0.0, 5e-324, 1.7976931348623157e308, 1e-400, 0.1 + 0.2])
    | st.text(max_size=20)
    | st.sampled_from(["8966032240112716129", "\ud800", "\udc00x", "\ufeff", '"', "\\"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


def _outcome(payload: bytes) -> tuple[str, str]:
    """The decoded object as `repr` shows it (types, -0.0), or the error's code and message."""
    try:
        return "ok", repr(decoding.decode_payload(payload))
    except ParseError as error:
        return error.code, error.message


def _strict_outcome(payload: bytes) -> tuple[str, str]:
    with mock.patch.object(decoding, "_read_plainly", return_value=None):
        return _outcome(payload)


def _encodings(value: Any) -> list[bytes]:
    text = json.dumps({"v": value}, allow_nan=True)
    spaced = json.dumps({"v": value}, allow_nan=True, indent=1)
    return [text.encode("utf-8", "surrogatepass"), spaced.encode("utf-8", "surrogatepass")]


@FUZZ
@given(value=json_values)
@example(value=-(2**63) - 1)
@example(value=[2**64, "8966032240112716129"])
@example(value=float("nan"))
@example(value=-0.0)
def test_any_json_value_decodes_as_the_strict_reader_decodes_it(value: Any) -> None:
    for payload in _encodings(value):
        assert _outcome(payload) == _strict_outcome(payload)


@FUZZ
@given(
    sample=st.sampled_from(SAMPLES),
    cut=st.integers(min_value=0, max_value=4096),
    insert=st.binary(max_size=24) | st.sampled_from([b"\xef\xbb\xbf", b"NaN", b"1" * 25, b"\\"]),
)
def test_damaged_samples_fail_or_decode_as_with_the_strict_reader(
    sample: bytes, cut: int, insert: bytes
) -> None:
    cut %= len(sample) + 1
    for payload in (sample, sample[:cut] + insert + sample[cut:], insert + sample):
        assert _outcome(payload) == _strict_outcome(payload)


@pytest.mark.parametrize(
    ("payload", "long_number"),
    [
        (b'{"iccid":"8966032240112716129"}', False),
        (b'{"n":8966032240112716129}', True),
        (b'{"n":-9223372036854775809}', True),
        (b'{"n":[1,8966032240112716129]}', True),
        (b'{"iccid":"8966032240112716129","n":12345678901234567890}', True),
        (b'{"n":922337203685477580}', False),
    ],
)
def test_a_long_number_goes_to_the_strict_reader_and_a_long_string_does_not(
    payload: bytes, long_number: bool
) -> None:
    assert decoding._has_long_number(payload) is long_number
    assert (decoding._read_plainly(payload) is None) is long_number
