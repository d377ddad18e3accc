"""The demo roster: deterministic, normalised keys, valid check digits, synthetic people."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.model import ObservationKind
from flows.simulator.device_roster import (
    AVA4_DEVICE_MODELS,
    citizen_id_check_digit,
    is_valid_citizen_id,
    luhn_check_digit,
    normalise_registry_key,
    registry_key,
    roster,
)

KEY_PATTERNS = {
    "ble": re.compile(r"ble:[0-9A-F]{12}"),
    "gateway": re.compile(r"gateway:[0-9A-F]{12}"),
    "imei": re.compile(r"imei:[0-9]{15}"),
    "citizen_id": re.compile(r"citizen_id:[0-9]{13}"),
}
CORE_KINDS = {
    ObservationKind.BLOOD_PRESSURE,
    ObservationKind.SPO2,
    ObservationKind.BLOOD_GLUCOSE,
    ObservationKind.BODY_TEMPERATURE,
    ObservationKind.BODY_WEIGHT,
}


def is_luhn_valid(number: str) -> bool:
    return luhn_check_digit(number[:-1]) == int(number[-1])


def test_same_seed_gives_the_same_roster():
    assert roster(7, 12) == roster(7, 12)


def test_another_seed_gives_other_devices():
    keys_7 = {e.key for e in roster(7, 12).registry_entries()}
    keys_8 = {e.key for e in roster(8, 12).registry_entries()}
    assert not keys_7 & keys_8


def test_a_smaller_roster_is_the_start_of_a_larger_one():
    small, large = roster(7, 5), roster(7, 20)
    assert small.patients == large.patients[:5]
    assert small.hospitals == large.hospitals[:3]


def test_patients_are_spread_over_three_demo_hospitals():
    demo = roster(7, 12)
    assert [h.hospital_id for h in demo.hospitals] == [
        "demo-hospital-a",
        "demo-hospital-b",
        "demo-hospital-c",
    ]
    per_hospital = {h.hospital_id: 0 for h in demo.hospitals}
    for patient in demo.patients:
        per_hospital[patient.hospital_id] += 1
    assert set(per_hospital.values()) == {4}


def test_one_patient_gets_one_hospital():
    demo = roster(7, 1)
    assert [h.hospital_id for h in demo.hospitals] == ["demo-hospital-a"]
    assert demo.patients[0].hospital_id == "demo-hospital-a"


def test_a_roster_without_patients_is_refused():
    with pytest.raises(ValueError, match="at least one patient"):
        roster(7, 0)


def test_patient_ids_and_names_are_obviously_synthetic():
    demo = roster(7, 12)
    assert [p.patient_id for p in demo.patients][:3] == ["demo-p-001", "demo-p-002", "demo-p-003"]
    assert demo.patients[0].display_name == "Demo Patient 001"
    for patient in demo.patients:
        if patient.card is not None:
            assert "Demo" in patient.card.name_en and "สาธิต" in patient.card.name_th


def test_every_patient_has_a_gateway_with_the_core_devices_and_a_watch():
    for patient in roster(7, 12).patients:
        kinds = {d.model.kind for d in patient.gateway.devices}
        assert kinds >= CORE_KINDS
        assert re.fullmatch(r"[0-9]{15}", patient.watch.imei)
        assert all(d.model.attribute in AVA4_DEVICE_MODELS for d in patient.gateway.devices)


def test_some_patients_have_lipid_meters_kiosk_cards_and_wrong_clocks():
    patients = roster(7, 12).patients
    with_lipids = [
        p
        for p in patients
        if ObservationKind.URIC_ACID in {d.model.kind for d in p.gateway.devices}
    ]
    assert 0 < len(with_lipids) < len(patients)
    with_cards = [p for p in patients if p.card is not None]
    assert 0 < len(with_cards) < len(patients)
    assert patients[0].card is not None
    fast = [p for p in patients if p.gateway.clock_offset_s > 170 * 86_400]
    assert 0 < len(fast) < len(patients)
    assert any(p.watch.ap55_local_time for p in patients)


def test_registry_keys_are_normalised_and_unique():
    entries = roster(7, 12).registry_entries()
    keys = [e.key for e in entries]
    assert len(keys) == len(set(keys))
    for entry in entries:
        assert KEY_PATTERNS[entry.id_kind].fullmatch(entry.key), entry.key
        assert entry.key == f"{entry.id_kind}:{entry.device_id}"


def test_registry_maps_every_identifier_of_a_patient_to_that_patient():
    demo = roster(7, 12)
    by_key = {e.key: e for e in demo.registry_entries()}
    patient = demo.patients[0]
    assert by_key[f"gateway:{patient.gateway.mac}"].patient_id == patient.patient_id
    assert by_key[f"imei:{patient.watch.imei}"].device_type == "Kati"
    assert patient.card is not None
    assert by_key[f"citizen_id:{patient.card.citizen_id}"].device_type == "Qube"
    cuff = next(d for d in patient.gateway.devices if d.model.kind == "blood_pressure")
    entry = by_key[f"ble:{cuff.address}"]
    assert (entry.patient_id, entry.device_type, entry.kind) == (
        patient.patient_id,
        "AVA4",
        ObservationKind.BLOOD_PRESSURE,
    )


def test_unregistered_devices_are_not_in_the_registry():
    demo = roster(7, 12)
    registered = {e.key for e in demo.registry_entries()}
    unknown = demo.unknown_keys()
    assert unknown and not unknown & registered
    assert {k.partition(":")[0] for k in unknown} == {"ble", "gateway", "imei", "citizen_id"}


def test_citizen_ids_carry_a_valid_mod_11_check_digit():
    demo = roster(7, 12)
    cards = [p.card for p in demo.patients if p.card is not None] + list(demo.unknown_cards)
    for card in cards:
        assert is_valid_citizen_id(card.citizen_id)
        assert card.citizen_id[0] in "12345678"


def test_check_digit_matches_the_published_algorithm():
    # 3570300400000 is the development ID from SPEC.md: its check digit should be 4.
    assert citizen_id_check_digit("357030040000") == 4
    assert not is_valid_citizen_id("3570300400000")
    assert is_valid_citizen_id("3570300400004")
    assert not is_valid_citizen_id("35703004000")
    with pytest.raises(ValueError, match="12 digits"):
        citizen_id_check_digit("12345")


def test_imeis_carry_a_valid_luhn_digit():
    assert luhn_check_digit("49015420323751") == 8  # the textbook IMEI 490154203237518
    demo = roster(7, 12)
    imeis = [p.watch.imei for p in demo.patients] + [p.gateway.imei for p in demo.patients]
    imeis += [w.imei for w in demo.unknown_watches]
    assert all(is_luhn_valid(imei) for imei in imeis)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ble:d6:16:f9:64:16:22", "ble:D616F9641622"),
        ("ble:d616f9641622", "ble:D616F9641622"),
        ("gateway:08-f9-e0-d1-f7-b4", "gateway:08F9E0D1F7B4"),
        ("imei: 861265061482607 ", "imei:861265061482607"),
        ("citizen_id:3-5703-00400-00-4", "citizen_id:3570300400004"),
    ],
)
def test_registry_keys_are_normalised_from_any_spelling(raw: str, expected: str):
    assert normalise_registry_key(raw) == expected


def test_registry_key_builds_keys_from_kind_and_raw_id():
    assert registry_key("gateway", "dc:da:0c:5a:80:64") == "gateway:DCDA0C5A8064"


@pytest.mark.parametrize("raw", ["ble:xyz", "watch:861265061482607", "861265061482607", "imei:12"])
def test_unusable_registry_keys_are_refused(raw: str):
    with pytest.raises(ValueError):
        normalise_registry_key(raw)


def test_refusing_a_citizen_id_does_not_echo_it():
    with pytest.raises(ValueError) as caught:
        normalise_registry_key("citizen_id:35703004000")
    assert "35703004000" not in str(caught.value)


def test_roster_repr_shows_no_personal_data():
    demo = roster(7, 12)
    text = repr(demo)
    for patient in demo.patients:
        if patient.card is not None:
            assert patient.card.citizen_id not in text
            assert patient.card.name_en not in text


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=10_000), patients=st.integers(1, 30))
def test_any_roster_has_unique_normalised_keys_and_valid_ids(seed: int, patients: int):
    demo = roster(seed, patients)
    entries = demo.registry_entries()
    keys = [e.key for e in entries]
    assert len(keys) == len(set(keys))
    assert not set(keys) & demo.unknown_keys()
    for entry in entries:
        assert KEY_PATTERNS[entry.id_kind].fullmatch(entry.key)
        if entry.id_kind == "citizen_id":
            assert is_valid_citizen_id(entry.device_id)
        if entry.id_kind == "imei":
            assert is_luhn_valid(entry.device_id)
