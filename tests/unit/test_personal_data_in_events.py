"""Citizen IDs in the forms and places an adversarial probe found them leaking into events.

The spaced and dotted forms of the card's number, an ID as a key or as a float, a topic level
holding one, and free texts the parser keeps (a Wi-Fi SSID) in step 2's and step 5's
`processed_data`: none of them may reach a step event in clear.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_parse_fuzz import RULE
from test_storable_fuzz import staged

from flows.model import Delivery, Envelope, fingerprint
from flows.parse import parse_envelope
from flows.receive import receive
from flows.redact import REDACTED, redact, scrub_citizen_ids
from flows.step_events import step_events
from flows.store import ObservationStore
from sinks.mongo_database import open_database

CITIZEN_ID = "1103700012346"  # its check digit holds
RECEIVED = datetime(2025, 11, 26, 9, 40, tzinfo=UTC)


@pytest.mark.parametrize(
    "form",
    [
        "1 1037 00012 34 6",
        "1.1037.00012.34.6",
        "1-1037-00012-34-6",
        "1-1037 00012.34-6",
        f"card {CITIZEN_ID} seen",
    ],
)
def test_every_written_form_of_the_card_number_is_redacted(form: str) -> None:
    assert redact({"note": form}) == {"note": REDACTED}
    assert CITIZEN_ID[1:5] not in scrub_citizen_ids(f"log line: {form}")


def test_an_id_as_a_key_or_as_a_float_is_redacted_and_other_numbers_are_kept() -> None:
    payload = {
        "patients": {CITIZEN_ID: {"bp": 120}},
        "ref": float(CITIZEN_ID),
        "epoch_ms": 1764150000000.0,  # 13 digits, its check digit fails: not an ID
        "temp": 36.5,
    }
    assert redact(payload) == {
        "patients": {REDACTED: {"bp": 120}},
        "ref": REDACTED,
        "epoch_ms": 1764150000000.0,
        "temp": 36.5,
    }


def events_of(envelope: Envelope) -> list[bytes]:
    return [value for _key, (_, value) in step_events(envelope)]


def test_a_topic_level_holding_an_id_is_redacted_in_the_events() -> None:
    topic = f"iMEDE_watch/{CITIZEN_ID}"
    payload = b'{"IMEI": "865067123456789"}'
    delivery = Delivery(topic, payload, RECEIVED, fingerprint(topic, payload))
    envelope = parse_envelope(receive(delivery), RULE)
    events = events_of(envelope)
    assert events and all(CITIZEN_ID.encode() not in event for event in events)
    assert {json.loads(e)["data"]["topic"] for e in events} == {f"iMEDE_watch/{REDACTED}"}


def test_a_wifi_ssid_holding_an_id_is_redacted_at_steps_2_and_5(tmp_path: Path) -> None:
    topic = "iMEDE_watch/location"
    wifi = f"[{{'SSID':'{CITIZEN_ID}','MAC':'aa-bb-cc-dd-ee-ff','RSSI':'87'}}]"
    body: dict[str, Any] = {
        "IMEI": "865067123456789",
        "location": {"GPS": {"latitude": 13.691643, "longitude": 100.70656}, "WiFi": wifi},
        "time": "26/11/2025 09:39:00",
    }
    payload = json.dumps(body).encode()
    enriched = staged(topic, payload, RECEIVED)
    # The stored reading keeps its SSID (the database is the record); events do not.
    assert CITIZEN_ID in json.dumps(enriched.observations, default=str)
    db = open_database(f"montydb://{tmp_path / 'store'}", "vf")
    try:
        [stored] = ObservationStore(lambda: db)([enriched])
    finally:
        db.client.close()
    assert stored.failed is None
    events = events_of(stored)
    assert [json.loads(e)["data"]["step"] for e in events][-1] == "5_medical_stored"
    assert all(CITIZEN_ID.encode() not in event for event in events)
