"""Decoding the single-quoted pseudo-JSON strings the Kati watch embeds in its payloads.

`location.WiFi` and `location.LBS.SetBase` arrive as strings such as
`"[{'SSID':'ward-3','MAC':'aa-bb-cc-dd-ee-ff','RSSI':'87'}]"`: Python-literal syntax, not
JSON. `eval`/`ast.literal_eval` would run or parse attacker-chosen input with the Python
parser, and swapping quotes breaks on an SSID containing `"` or `'`. This is a small
recursive-descent reader for exactly what appears: objects, arrays, strings in either quote,
numbers, true/false/null (also True/False/None). Anything else raises `PseudoJsonError`.
A plain text (single quotes, no escapes) is read by orjson with its quotes swapped instead,
where that gives what the reader would (`_read_plainly`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from flows.devices.nesting import too_deep

__all__ = ["PseudoJsonError", "parse_pseudo_json"]

_MAX_LENGTH = 8192
_MAX_DEPTH = 8
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,3})?")
_WORDS: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\"}


# What, outside its strings, sends a plain text to the reader below rather than to orjson:
# Python's words, a number with an exponent (the reader allows 3 digits of it) or of 19 digits
# (the reader keeps integers beyond 64 bits exact; orjson makes floats of them).
_NOT_PLAIN_OUTSIDE_STRINGS = re.compile(r"[0-9][eE]|True|False|None|[0-9]{19}")


class PseudoJsonError(ValueError):
    """The text is not pseudo-JSON this reader understands."""


class _Reader:
    """A cursor over the text being decoded."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> PseudoJsonError:
        return PseudoJsonError(f"{what} at offset {self.pos}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def value(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise self.fail("nested too deeply")
        char = self.peek()
        if char == "{":
            return self.object(depth)
        if char == "[":
            return self.array(depth)
        if char in {"'", '"'}:
            return self.string()
        number = _NUMBER.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            try:
                decoded = json.loads(number.group())
            except ValueError:  # an integer of over 4,300 digits, refused by int()
                raise self.fail("number too long") from None
            if isinstance(decoded, float) and not math.isfinite(decoded):
                raise self.fail("number too large")
            return decoded
        for word, meaning in _WORDS.items():
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return meaning
        raise self.fail("unexpected character")

    def object(self, depth: int) -> dict[str, Any]:
        self.expect("{")
        result: dict[str, Any] = {}
        if self.peek() == "}":
            self.pos += 1
            return result
        while True:
            if self.peek() not in {"'", '"'}:
                raise self.fail("expected a quoted key")
            key = self.string()
            self.expect(":")
            result[key] = self.value(depth + 1)
            if self.peek() == ",":
                self.pos += 1
                # A trailing comma before the closing brace is tolerated.
                if self.peek() == "}":
                    self.pos += 1
                    return result
                continue
            self.expect("}")
            return result

    def array(self, depth: int) -> list[Any]:
        self.expect("[")
        result: list[Any] = []
        if self.peek() == "]":
            self.pos += 1
            return result
        while True:
            result.append(self.value(depth + 1))
            if self.peek() == ",":
                self.pos += 1
                if self.peek() == "]":
                    self.pos += 1
                    return result
                continue
            self.expect("]")
            return result

    def string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        parts: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                return "".join(parts)
            if char == "\\" and self.pos < len(self.text):
                escaped = self.text[self.pos]
                self.pos += 1
                parts.append(_ESCAPES.get(escaped, escaped))
            else:
                parts.append(char)
        raise self.fail("unterminated string")


def parse_pseudo_json(text: str) -> Any:
    """Return the value written in `text` (JSON or its single-quoted Python-literal cousin)."""
    if len(text) > _MAX_LENGTH:
        msg = f"pseudo-JSON longer than {_MAX_LENGTH} characters"
        raise PseudoJsonError(msg)
    plain = _read_plainly(text)
    if plain is not None:
        return plain
    reader = _Reader(text)
    result = reader.value(0)
    if reader.peek():
        raise reader.fail("unexpected text after the value")
    return result


def _read_plainly(text: str) -> Any:
    """Return the value of a plain single-quoted text as orjson reads it, else None.

    Why: the reader above costs ~60 us for a watch's Wi-Fi list (a call per character);
    what watches send has single-quoted strings without escapes, where swapping the quotes
    makes JSON. Anything else (the checks below), anything orjson refuses (a trailing comma, a
    raw control character, a bare word) and anything nested deeper than the reader allows
    is left to the reader, which alone decides errors.
    """
    # A double quote or a backslash anywhere: swapping quotes could change what a string holds.
    if '"' in text or "\\" in text:
        return None
    # Without them every string is `'...'`, so the pieces between quotes are what is outside.
    if _NOT_PLAIN_OUTSIDE_STRINGS.search("".join(text.split("'")[::2])) is not None:
        return None
    try:
        value = orjson.loads(text.replace("'", '"'))
    except orjson.JSONDecodeError:
        return None
    # The reader refuses a value inside a container at depth 8; `too_deep` also refuses an
    # empty one there, which the reader then reads: the same outcome, the slow way.
    if value is None or too_deep(value, _MAX_DEPTH):
        return None
    return value
