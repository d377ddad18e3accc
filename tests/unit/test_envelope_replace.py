"""`Envelope.replace`: what `dataclasses.replace` gives, and the envelope it copies unchanged."""

from __future__ import annotations

import dataclasses
import pickle
import typing
from datetime import UTC, datetime
from typing import Any

import pytest

from flows.model import (
    Delivery,
    Envelope,
    EnvelopeChanges,
    ParsedMessage,
    Step,
    StepOutcome,
    StepStatus,
)

AT = datetime(2025, 7, 13, 9, 0, tzinfo=UTC)


def envelope() -> Envelope:
    return Envelope(
        delivery=Delivery("ava4/data", b"{}", AT, "m1"),
        device_type="AVA4",
        device_id="aa:bb",
        payload={"mac": "aa:bb"},
        outcomes=[StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, AT)],
    )


def test_the_copy_equals_what_dataclasses_replace_gives() -> None:
    original = envelope()
    outcome = StepOutcome(Step.PARSED, StepStatus.SUCCESS, AT)
    parsed = ParsedMessage("AVA4", "aa:bb", "reading")
    changes: EnvelopeChanges = {
        "outcomes": [*original.outcomes, outcome],
        "parsed": parsed,
        "patient_id": "p1",
        "delivery_number": 3,
    }
    copied = original.replace(**changes)
    assert copied == dataclasses.replace(original, **changes)
    assert type(copied) is Envelope
    assert copied.__dict__ == dataclasses.replace(original, **changes).__dict__
    assert pickle.loads(pickle.dumps(copied)) == copied


def test_the_envelope_copied_is_left_as_it_was() -> None:
    original = envelope()
    before = dataclasses.replace(original)
    copied = original.replace(device_id="cc:dd", outcomes=[])
    assert original == before
    assert copied is not original
    assert (copied.device_id, copied.outcomes, original.device_id) == ("cc:dd", [], "aa:bb")
    copied.patient_id = "p2"
    assert original.patient_id is None


def test_no_changes_gives_an_equal_copy() -> None:
    original = envelope()
    copied = original.replace()
    assert copied == original
    assert copied is not original


def test_a_name_that_is_not_a_field_is_refused() -> None:
    # mypy refuses the name too; this is what a caller that hides it from mypy gets.
    unknown: dict[str, Any] = {"patient": "p1"}
    with pytest.raises(TypeError, match="patient"):
        envelope().replace(**unknown)
    assert not hasattr(envelope(), "patient")


def test_the_changes_name_every_field_with_its_type() -> None:
    hints = typing.get_type_hints(Envelope)
    assert typing.get_type_hints(EnvelopeChanges) == {
        f.name: hints[f.name] for f in dataclasses.fields(Envelope)
    }


def test_envelope_has_nothing_a_shallow_copy_would_bypass() -> None:
    assert not hasattr(Envelope, "__post_init__")
    assert not hasattr(Envelope, "__slots__")
