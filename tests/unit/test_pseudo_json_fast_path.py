"""Plain pseudo-JSON read through orjson gives exactly what the character reader gives.

`parse_pseudo_json` swaps the quotes of a plain single-quoted text and lets orjson read it,
leaving everything else to its reader. Whatever the text, the outcome (the value with its
number types and key order, or the error and its message) must be the reader's alone.
"""

from __future__ import annotations

import json
import string
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flows.devices import pseudo_json
from flows.devices.pseudo_json import PseudoJsonError, parse_pseudo_json

FUZZ = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PLAIN_TEXT = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + " -_:.,[]{}()#é\u4e2d"),
    max_size=16,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([-0.0, 0.5, 1e21, 2**63, -(2**63) - 1, 10**18])
    | PLAIN_TEXT
    | st.text(max_size=8)
)
# What pseudo-JSON is made of, and what breaks it.
PIECES = "'\"\\[]{}:,-.0123456789eEtrufalsnNT a\u00e9\t\n"
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(PLAIN_TEXT | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def _outcome(text: str) -> tuple[str, str]:
    try:
        return "ok", repr(parse_pseudo_json(text))
    except PseudoJsonError as error:
        return "error", str(error)


def _reader_outcome(text: str) -> tuple[str, str]:
    with mock.patch.object(pseudo_json, "_read_plainly", return_value=None):
        return _outcome(text)


def _texts(value: Any) -> list[str]:
    as_json = json.dumps(value, ensure_ascii=False)
    return [as_json, as_json.replace('"', "'"), json.dumps(value).replace('"', "'")]


@FUZZ
@given(value=values)
@example(value=[{"SSID": "ward-3", "MAC": "aa-bb-cc-dd-ee-ff", "RSSI": "87"}])
@example(value={"a": 1, "b": 2})
@example(value=[[[[[[[[[1]]]]]]]]])
@example(value=[[[[[[[[1]]]]]]]])
@example(value=[[[[[[[[[[]]]]]]]]]])
@example(value=None)
def test_any_value_written_as_pseudo_json_reads_as_the_reader_reads_it(value: Any) -> None:
    for text in _texts(value):
        assert _outcome(text) == _reader_outcome(text)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(PIECES), max_size=40))
@example(text="{'a':1,'a':2,'b':3}")
@example(text="{'b':1,'a':2,'b':3}")
@example(text="[1,2,]")
@example(text="['a\",1,\"b']")
@example(text="['a\\'b']")
@example(text="['\\u0041']")
@example(text="[1e0001]")
@example(text="['a\tb']")
@example(text="")
def test_any_text_reads_or_fails_as_with_the_reader(text: str) -> None:
    assert _outcome(text) == _reader_outcome(text)


@pytest.mark.parametrize(
    "text",
    [
        "[{'SSID':'ward-3','MAC':'aa-bb-cc-dd-ee-ff','RSSI':'87'}]",
        "[{'MCC':'520','MNC':'3','LAC':'1234','CID':'5678','SIGNAL':'-71'}]",
        "[]",
    ],
)
def test_what_watches_send_is_read_without_the_reader(text: str) -> None:
    assert pseudo_json._read_plainly(text) == parse_pseudo_json(text)
    assert pseudo_json._read_plainly(text) is not None
