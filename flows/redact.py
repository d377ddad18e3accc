"""Removing personal data from decoded payloads before they reach step events, logs or DLQ.

The Qube-Vital kiosk sends the patient's citizen ID (`citiz`), names (`nameTH`, `nameEN`),
birth date (`brith`, sic) and gender with every reading. DESIGN.md: personal data never
appears in clear in an event or a log. `redact` replaces the value of every such key, at any
depth, with `"[redacted]"`, and every text holding a run of exactly 13 digits (a citizen ID,
whatever key it came under), and leaves everything else as it was.

Keys are compared by their letters and digits alone, case-folded: a firmware that writes
`"citiz "`, `Citiz_ID`, `citizen-id` or `birthday` is redacted as `citiz` and `brith` are.

Device labels (`name` of a gateway or kiosk, e.g. "AVA4-No.1") are not personal data and are
kept: operators need them to find a device.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from typing import Any, TypeVar

__all__ = [
    "JSON_SCALARS",
    "REDACTED",
    "is_label",
    "is_personal_key",
    "redact",
    "safe_label",
    "scrub_citizen_ids",
    "scrub_topic",
]

REDACTED = "[redacted]"

_T = TypeVar("_T")

# Keys whose values are personal data, by their letters and digits alone, case-folded: a key
# is personal when its own are one of the exact ones or begin with one of the prefixes. "cid"
# is deliberately absent: in a watch's LBS block it is the mobile cell id, not a citizen id;
# so is "name": a gateway's or kiosk's name is its label.
_PERSONAL_EXACT = frozenset({"dob", "sex"})
_PERSONAL_PREFIXES = (
    "citiz",
    "idcard",
    "nationalid",
    "nameth",
    "nameen",
    "firstname",
    "lastname",
    "surname",
    "fullname",
    "patientname",
    "brith",
    "birth",
    "dateofbirth",
    "gender",
)
# A Thai citizen ID: 13 digits, alone or inside a text (not part of a longer number: an IMEI
# has 15, an ICCID 19-20). Epoch milliseconds sent as text have 13 digits too; they lose only
# their place in the event's copy of the payload, not in what is stored.
# Printed on the card as 1-4-5-2-1 groups, written with dashes, spaces or dots between them
# (`flows.devices.identifiers.normalise_citizen_id` reads dashes and spaces).
_GROUPED_ID = r"\d[-. ]\d{4}[-. ]\d{5}[-. ]\d{2}[-. ]\d"
_CITIZEN_ID = re.compile(rf"(?<!\d)(?:\d{{13}}|{_GROUPED_ID})(?!\d)")
_ID_CHARS = 13
_FIVE_DIGITS = re.compile(r"\d{5}")
# In free text (log lines), where ids of messages are hex: a run of 13 digits touching a hex
# letter is part of one of those, not a citizen ID.
_CITIZEN_ID_IN_TEXT = re.compile(rf"(?<![0-9A-Fa-f])(?:\d{{13}}|{_GROUPED_ID})(?![0-9A-Fa-f])")
# A 13-digit JSON number is a citizen ID when its check digit holds (mod 11, as the card's
# does): epoch milliseconds are 13-digit numbers too, and 10 in 11 of them fail it.
_ID_LOW, _ID_HIGH = 10**12, 10**13
# What device, attribute and message-type names look like: ASCII words, no long digit runs
# (citizen IDs, birth dates and phone numbers are digit runs; names have `#`, `.` or Thai).
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9 _/\-]{0,39}")
_DIGIT_RUN = re.compile(r"[0-9]{5,}")
# ...or romanised, as words of letters alone: "Somchai", "Somchai Jaidee", "somchai jaidee".
# Device labels have an upper-case run, an underscore, a digit or an inner capital
# ("Oximeter JUMPER", "HB_Msg", "reportAttribute"); one lower-case word ("sleepdata") is shown.
_NAME_WORDS = re.compile(r"[A-Z][a-z]+(?: [A-Za-z][a-z]*)*|[a-z]+(?: [A-Za-z][a-z]*)+")


def is_personal_key(key: object) -> bool:
    """Return True when the value under `key` is personal data."""
    if not isinstance(key, str):
        return False
    letters = "".join(c for c in unicodedata.normalize("NFKC", key).casefold() if c.isalnum())
    return letters in _PERSONAL_EXACT or letters.startswith(_PERSONAL_PREFIXES)


def _text(value: str) -> str:
    """Return `value`, or `[redacted]` if it holds a citizen ID."""
    if len(value) < _ID_CHARS:
        return value
    # Payloads repeat their texts (MACs, IMEIs, Wi-Fi lists, labels): answered from a memo
    # as keys are, bounded the same way.
    known = _text_memo.get(value)
    if known is None:
        # Most long texts (times, MACs, Wi-Fi lists) have no run of 5 digits: a quick no.
        found = _FIVE_DIGITS.search(value) and _CITIZEN_ID.search(value)
        known = _remember(_text_memo, value, REDACTED if found else value, _MEMO_TEXT_CHARS)
    return known


def _number(value: int | float) -> int | float | str:
    """Return `value`, or `[redacted]` if it is a citizen ID sent as a number."""
    if not _ID_LOW <= value < _ID_HIGH or (type(value) is float and not value.is_integer()):
        return value
    digits = [int(d) for d in str(int(value))]  # 1103700012348.0 is the card's number too
    total = sum(d * (13 - i) for i, d in enumerate(digits[:12]))
    return REDACTED if (11 - total % 11) % 10 == digits[12] else value


# Payloads repeat the same few dozen keys, and casefolding each one cost more than the rest of
# the copy. A hostile stream can send endless distinct (or huge) keys, so the memo holds only
# short keys and starts over when full rather than growing.
_MEMO_LIMIT = 4096
_MEMO_KEY_CHARS = 64
_personal_memo: dict[str, bool] = {}
# Texts longer than this (a Wi-Fi list is ~300 characters) are looked at each time.
_MEMO_TEXT_CHARS = 512
_text_memo: dict[str, str] = {}


def _personal(key: object) -> bool:
    """`is_personal_key`, remembered for exact `str` keys while the memo has room."""
    if type(key) is not str:
        return is_personal_key(key)
    known = _personal_memo.get(key)
    if known is not None:
        return known
    return _remember(_personal_memo, key, is_personal_key(key), _MEMO_KEY_CHARS)


def _remember(memo: dict[str, _T], key: str, value: _T, max_chars: int) -> _T:
    """Keep `value` for `key` in `memo` if the key is short enough; start over when full."""
    if len(key) <= max_chars:
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = value
    return value


# The exact types of JSON's scalars (subclasses of them too, but only by the iterative walk).
# Texts and numbers are looked at for citizen IDs; booleans and null are kept as they are.
JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
_KEPT = frozenset({bool, type(None)})
# Real payloads nest four levels deep; past this many levels the recursive copy hands the
# rest to the iterative walk, so no payload can overflow the stack.
_RECURSION_BUDGET = 48


def redact(obj: Any) -> Any:
    """Return a deep copy of `obj` with the values of personal keys replaced by `[redacted]`.

    Tuples come back as lists, as they would through JSON, and dict subclasses as dicts.
    """
    return _copy(obj, _RECURSION_BUDGET)


def _copy(obj: Any, budget: int) -> Any:
    # A recursive copy of exact dicts, lists and tuples is several times faster than the
    # iterative walk; anything else, and whatever lies deeper than `budget`, goes to the walk,
    # which gives the same result.
    kind = type(obj)
    if kind is str:
        return obj if len(obj) < _ID_CHARS else _text(obj)
    if kind is int or kind is float:
        return _number(obj)
    if kind in _KEPT:
        return obj
    if budget <= 0:
        return _walk(obj)
    if kind is dict:
        copied: dict[Any, Any] = {}
        memo = _personal_memo
        for key, value in obj.items():
            # The memo's hit inline (the common case, once per key of every payload).
            personal = memo.get(key) if type(key) is str else None
            if personal is None:
                personal = _personal(key)
            if personal:
                copied[key] = REDACTED
                continue
            if type(key) is str and len(key) >= _ID_CHARS:
                key = _text(key)  # a citizen ID used as a key
            if type(value) is str:
                copied[key] = value if len(value) < _ID_CHARS else _text(value)
            elif type(value) in _KEPT or (
                (type(value) is int or type(value) is float) and not _ID_LOW <= value < _ID_HIGH
            ):
                copied[key] = value  # the common cases, without a call
            else:
                copied[key] = _copy(value, budget - 1)
        return copied
    if kind is list or kind is tuple:
        return [value if type(value) in _KEPT else _copy(value, budget - 1) for value in obj]
    return _walk(obj)


def _walk(obj: Any) -> Any:
    """Return `redact(obj)`, without recursion.

    A hostile payload nested a thousand levels deep must not overflow the stack of the stage
    that reports it.
    """
    root: list[Any] = [None]
    # Each entry: (source container, destination container, key or index in destination).
    pending: list[tuple[Any, Any, Any]] = [(obj, root, 0)]
    while pending:
        source, target, slot = pending.pop()
        if isinstance(source, dict):
            copied: dict[Any, Any] = {}
            target[slot] = copied
            for key, value in source.items():
                if _personal(key):
                    copied[key] = REDACTED
                else:
                    if isinstance(key, str) and len(key) >= _ID_CHARS:
                        key = _text(key)  # a citizen ID used as a key
                    copied[key] = None
                    pending.append((value, copied, key))
        elif isinstance(source, list | tuple):
            items: list[Any] = [None] * len(source)
            target[slot] = items
            pending.extend((value, items, index) for index, value in enumerate(source))
        elif isinstance(source, str):
            target[slot] = _text(source)
        elif isinstance(source, int | float) and not isinstance(source, bool):
            target[slot] = _number(source)
        elif isinstance(source, bool) or source is None:
            target[slot] = source
        else:
            target[slot] = copy.deepcopy(source)
    return root[0]


def safe_label(text: str) -> str:
    """Return `text` quoted for an error message if it looks like a name, else a placeholder.

    Error messages name what was not understood (an unknown attribute, a message type) so an
    operator can act; but the text comes from the payload, and a broken device could put a
    patient's ID or name there. Only label-shaped text is echoed.
    """
    return repr(text) if is_label(text) else "(name not shown)"


def is_label(text: str) -> bool:
    """Return True if `text` looks like a device, attribute or message-type name, not a person's."""
    return bool(
        _LABEL.fullmatch(text) and not _DIGIT_RUN.search(text) and not _NAME_WORDS.fullmatch(text)
    )


def scrub_citizen_ids(text: str) -> str:
    """Return `text` with each citizen-ID-shaped run of 13 digits replaced by `[redacted]`."""
    if len(text) < _ID_CHARS:
        return text
    return _CITIZEN_ID_IN_TEXT.sub(REDACTED, text)


# Topics repeat (a few per device family); a hostile stream can send endless distinct ones.
_topic_memo: dict[str, str] = {}


def scrub_topic(topic: str) -> str:
    """`scrub_citizen_ids` for an MQTT topic (a level may hold an ID), remembered."""
    known = _topic_memo.get(topic)
    if known is None:
        known = _remember(_topic_memo, topic, scrub_citizen_ids(topic), _MEMO_TEXT_CHARS)
    return known
