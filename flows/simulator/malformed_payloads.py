"""Malformed payloads: a measurement damaged the ways broken firmware and links damage them.

Every defect makes a payload no parser can read (invalid JSON, JSON that is not an object,
or an object whose identity and readings have unusable types), so the flow should store
nothing for it.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from flows.simulator.simulated_message import (
    Defect,
    MessageDraft,
    SimulatedMessage,
    encode_body,
    epoch_seconds,
)

__all__ = ["damaged_message"]

_DEFECT_WEIGHTS: dict[Defect, float] = {
    "truncated": 0.3,
    "single_quoted": 0.15,
    "binary": 0.15,
    "not_an_object": 0.1,
    "wrong_types": 0.25,
    "empty": 0.05,
}


def damaged_message(base: MessageDraft, rng: random.Random, now: datetime) -> SimulatedMessage:
    """Return `base` damaged by one defect drawn from `rng`, labelled `malformed`."""
    defect: Defect = rng.choices(list(_DEFECT_WEIGHTS), list(_DEFECT_WEIGHTS.values()))[0]
    encoded = encode_body(base.body)
    if defect == "truncated":
        # Any proper prefix of a JSON object is invalid JSON: the closing brace is missing.
        payload = encoded[: rng.randint(1, len(encoded) - 1)]
    elif defect == "single_quoted":
        payload = repr(base.body).encode("utf-8")
    elif defect == "binary":
        # A continuation byte cannot start UTF-8 text, so this is never valid JSON.
        payload = bytes([rng.randrange(0x80, 0xC0)]) + rng.randbytes(rng.randint(8, 120))
    elif defect == "not_an_object":
        payload = rng.choice(
            (
                b"null",
                b"[]",
                b'"Online"',
                str(epoch_seconds(now)).encode(),
                encode_body([base.topic, 1]),
            )
        )
    elif defect == "wrong_types":
        payload = encode_body(_with_wrong_types(base))
    else:
        payload = b""
    return SimulatedMessage(
        topic=base.topic,
        payload=payload,
        category="malformed",
        expected_readings=0,
        family=base.family,
        message_kind=base.message_kind,
        expected_kinds=(),
        defect=defect,
    )


def _with_wrong_types(base: MessageDraft) -> dict[str, Any]:
    """Return `base`'s body with its identity and readings in types no parser can use."""
    body = dict(base.body)
    if base.family == "AVA4":
        body["mac"] = 12_345_678
        body["deviceCode"] = True
        body["data"] = {"attribute": 42, "mac": None, "value": {"device_list": 2}}
    elif base.family == "Kati":
        body["IMEI"] = [body["IMEI"]]
        body["heartRate"] = "fast"
        body["bloodPressure"] = "high"
        body["spO2"] = True
        body["bodyTemperature"] = {"value": 36.6}
    else:
        body["mac"] = 0
        body["citiz"] = False
        body["data"] = f"{body['data']['attribute']}:error"
    return body
