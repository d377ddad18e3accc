"""Removing personal data from decoded payloads before they reach step events, logs or DLQ.

The Qube-Vital kiosk sends the patient's citizen ID (`citiz`), names (`nameTH`, `nameEN`),
birth date (`brith`, sic) and gender with every reading. DESIGN.md: personal data never
appears in clear in an event or a log. `redact` replaces the value of every such key, at any
depth, with `"[redacted]"` and leaves everything else as it was.

Device labels (`name` of a gateway or kiosk, e.g. "AVA4-No.1") are not personal data and are
kept: operators need them to find a device.
"""

from __future__ import annotations

import copy
import re
from typing import Any

__all__ = ["JSON_SCALARS", "PERSONAL_KEYS", "REDACTED", "is_personal_key", "redact", "safe_label"]

REDACTED = "[redacted]"

# Compared case-insensitively. "cid" is deliberately absent: in a watch's LBS block it is the
# mobile cell id, not a citizen id.
PERSONAL_KEYS = frozenset(
    {
        "citiz",
        "citizen_id",
        "citizenid",
        "id_card",
        "idcard",
        "national_id",
        "nameth",
        "nameen",
        "name_th",
        "name_en",
        "first_name",
        "firstname",
        "last_name",
        "lastname",
        "surname",
        "full_name",
        "fullname",
        "patient_name",
        "brith",
        "dob",
        "date_of_birth",
        "gender",
        "sex",
    }
)
_PERSONAL_PREFIXES = ("birth",)
# What device, attribute and message-type names look like: ASCII words, no long digit runs
# (citizen IDs, birth dates and phone numbers are digit runs; names have `#`, `.` or Thai).
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9 _/\-]{0,39}")
_DIGIT_RUN = re.compile(r"[0-9]{5,}")


def is_personal_key(key: object) -> bool:
    """Return True when the value under `key` is personal data."""
    if not isinstance(key, str):
        return False
    folded = key.casefold()
    return folded in PERSONAL_KEYS or folded.startswith(_PERSONAL_PREFIXES)


# Payloads repeat the same few dozen keys, and casefolding each one cost more than the rest of
# the copy. A hostile stream can send endless distinct (or huge) keys, so the memo holds only
# short keys and starts over when full rather than growing.
_MEMO_LIMIT = 4096
_MEMO_KEY_CHARS = 64
_personal_memo: dict[str, bool] = {}


def _personal(key: object) -> bool:
    """`is_personal_key`, remembered for exact `str` keys while the memo has room."""
    if type(key) is not str:
        return is_personal_key(key)
    known = _personal_memo.get(key)
    if known is not None:
        return known
    personal = is_personal_key(key)
    if len(key) <= _MEMO_KEY_CHARS:
        if len(_personal_memo) >= _MEMO_LIMIT:
            _personal_memo.clear()
        _personal_memo[key] = personal
    return personal


# The exact types of JSON's scalars: kept as they are by both walks (subclasses of them are
# too, but only by the iterative walk).
JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
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
    if kind in JSON_SCALARS:
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
            elif type(value) in JSON_SCALARS:
                copied[key] = value
            else:
                copied[key] = _copy(value, budget - 1)
        return copied
    if kind is list or kind is tuple:
        return [value if type(value) in JSON_SCALARS else _copy(value, budget - 1) for value in obj]
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
                    copied[key] = None
                    pending.append((value, copied, key))
        elif isinstance(source, list | tuple):
            items: list[Any] = [None] * len(source)
            target[slot] = items
            pending.extend((value, items, index) for index, value in enumerate(source))
        elif isinstance(source, str | int | float | bool) or source is None:
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
    if _LABEL.fullmatch(text) and not _DIGIT_RUN.search(text):
        return repr(text)
    return "(name not shown)"
