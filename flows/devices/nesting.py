"""How deep decoded JSON nests: the one walk both payload readers bound their input with."""

from __future__ import annotations

from collections.abc import Iterable

from flows.redact import JSON_SCALARS

__all__ = ["too_deep"]


def too_deep(obj: object, limit: int) -> bool:
    """Return True when `obj` nests containers more than `limit` levels deep."""
    # Recursive, and a few times faster than a walk with its own stack: the recursion ends
    # after `limit` levels whatever the payload, and `limit` is `MAX_DEPTH`.
    if isinstance(obj, dict):
        children: Iterable[object] = obj.values()
    elif isinstance(obj, list):
        children = obj
    else:
        return False
    if limit < 1:
        return True
    for child in children:
        if type(child) in JSON_SCALARS:
            continue
        if isinstance(child, dict | list) and too_deep(child, limit - 1):
            return True
    return False
