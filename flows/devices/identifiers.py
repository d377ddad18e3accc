"""Device and patient identifiers, normalised so that every spelling of one id compares equal.

The original deployments matched MACs exactly and case-sensitively and lost readings whenever
a gateway sent `dc:da:...` instead of `DC:DA:...`. Here every identifier is normalised before
it becomes a registry key `<id_kind>:<normalised id>` (DESIGN.md, collection `devices`):

- MAC: any case, separators `:`, `-`, `.`, space or none -> 12 upper-case hex digits.
  All-zero and all-F addresses are placeholders several devices share, so they are refused:
  a shared key would attach one patient's readings to another.
- IMEI: 14 to 16 digits (IMEI, IMEI with check digit, IMEISV); all zeros is refused.
- Thai citizen ID: 13 digits, `-` and spaces allowed in between. The mod-11 check digit is
  deliberately not enforced: development and test cards fail it and must still work.
"""

from __future__ import annotations

import re
from enum import StrEnum

__all__ = [
    "IdKind",
    "normalise_citizen_id",
    "normalise_imei",
    "normalise_mac",
]

_MAC_SEPARATORS = re.compile(r"[:\-. ]")
_HEX12 = re.compile(r"[0-9A-F]{12}")
_PLACEHOLDER_MACS = frozenset({"000000000000", "FFFFFFFFFFFF"})
_IMEI = re.compile(r"[0-9]{14,16}")
_CITIZEN_ID = re.compile(r"[0-9]{13}")
_CITIZEN_ID_SEPARATORS = re.compile(r"[\- ]")
# Longer strings cannot be identifiers; refusing them early keeps regex work bounded.
_MAX_RAW_LENGTH = 64


class IdKind(StrEnum):
    """The kinds of identifier the device registry is keyed by."""

    BLE = "ble"
    GATEWAY = "gateway"
    IMEI = "imei"
    CITIZEN_ID = "citizen_id"

    def key(self, normalised: str) -> str:
        """Return the registry key `<id_kind>:<normalised id>`."""
        return f"{self.value}:{normalised}"


def _as_text(raw: object) -> str | None:
    """Return `raw` as stripped text when it is a string or a plain integer, else None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        # Devices sometimes send numeric ids as JSON numbers; int() keeps every digit.
        return str(raw) if raw >= 0 else None
    if isinstance(raw, str) and len(raw) <= _MAX_RAW_LENGTH:
        return raw.strip()
    return None


def normalise_mac(raw: object) -> str | None:
    """Return `raw` as 12 upper-case hex digits, or None when it is not a usable MAC."""
    text = _as_text(raw)
    if text is None or isinstance(raw, int):
        return None
    compact = _MAC_SEPARATORS.sub("", text).upper()
    if not _HEX12.fullmatch(compact) or compact in _PLACEHOLDER_MACS:
        return None
    return compact


def normalise_imei(raw: object) -> str | None:
    """Return `raw` as a 14-16 digit string, or None when it is not a usable IMEI."""
    text = _as_text(raw)
    if text is None or not _IMEI.fullmatch(text) or not text.strip("0"):
        return None
    return text


def normalise_citizen_id(raw: object) -> str | None:
    """Return `raw` as a 13-digit Thai citizen ID, or None when it is not one.

    The check digit is not verified on purpose (development IDs fail it).
    """
    text = _as_text(raw)
    if text is None:
        return None
    compact = _CITIZEN_ID_SEPARATORS.sub("", text)
    if not _CITIZEN_ID.fullmatch(compact) or not compact.strip("0"):
        return None
    return compact
