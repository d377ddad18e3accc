"""The simulator's payload stream: categories, mix, fractions, shapes, values and times."""

from __future__ import annotations

import itertools
import json
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flows.model import ObservationKind
from flows.simulator.device_roster import Roster, is_valid_citizen_id, roster
from flows.simulator.payload_factory import (
    CATEGORIES,
    DEFECTS,
    SimulatedMessage,
    payload_stream,
    simulated_clock,
)

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
INTERVAL_S = 0.1
COUNT = 6000
FAST_GATEWAY_S = 178 * 86_400


def stream(
    count: int = COUNT, seed: int = 7, demo: Roster | None = None, **fractions: float
) -> list[SimulatedMessage]:
    messages = payload_stream(
        demo or roster(seed, 12),
        random.Random(seed),
        clock=simulated_clock(T0, INTERVAL_S),
        **fractions,
    )
    return list(itertools.islice(messages, count))


@pytest.fixture(scope="module")
def demo() -> Roster:
    return roster(7, 12)


@pytest.fixture(scope="module")
def messages(demo: Roster) -> list[SimulatedMessage]:
    return stream(demo=demo)


@pytest.fixture(scope="module")
def long_stream(demo: Roster) -> list[SimulatedMessage]:
    return stream(20_000, demo=demo)


def body(message: SimulatedMessage) -> dict[str, Any]:
    decoded = json.loads(message.payload)
    assert isinstance(decoded, dict)
    return decoded


def sent_at(message: SimulatedMessage) -> datetime:
    return T0 + timedelta(seconds=INTERVAL_S * message.sequence)


def test_same_seed_and_clock_give_the_same_stream():
    assert stream(500) == stream(500)
    assert [m.payload for m in stream(500, seed=8)] != [m.payload for m in stream(500)]


def test_sequence_numbers_count_messages(messages: list[SimulatedMessage]):
    assert [m.sequence for m in messages] == list(range(COUNT))


def test_every_category_and_family_appears(messages: list[SimulatedMessage]):
    assert {m.category for m in messages} == set(CATEGORIES)
    assert {m.family for m in messages} == {"AVA4", "Kati", "Qube"}
    assert {m.defect for m in messages if m.category == "malformed"} == set(DEFECTS)


@pytest.mark.parametrize(
    ("category", "fraction"),
    [("duplicate", 0.05), ("malformed", 0.02), ("unknown_device", 0.03)],
)
def test_special_categories_follow_their_fractions(
    messages: list[SimulatedMessage], category: str, fraction: float
):
    count = sum(m.category == category for m in messages)
    assert abs(count - fraction * COUNT) <= 2


def test_emergencies_follow_the_sos_fraction(messages: list[SimulatedMessage]):
    emergencies = [m for m in messages if m.message_kind in ("SOS", "sos", "fallDown", "FALLDOWN")]
    originals = [m for m in emergencies if m.category == "valid"]
    assert abs(len(originals) - 0.005 * COUNT) <= 2
    assert all(m.expected_kinds == (ObservationKind.EMERGENCY,) for m in emergencies)


def test_fractions_are_honoured_when_raised():
    messages = stream(2000, duplicate_fraction=0.2, malformed_fraction=0.1, unknown_fraction=0.1)
    counts = Counter(m.category for m in messages)
    assert abs(counts["duplicate"] - 400) <= 2
    assert abs(counts["malformed"] - 200) <= 2
    assert abs(counts["unknown_device"] - 200) <= 2


def test_zero_fractions_give_only_everyday_traffic():
    messages = stream(
        2000, duplicate_fraction=0, malformed_fraction=0, unknown_fraction=0, sos_fraction=0
    )
    assert {m.category for m in messages} == {"valid", "status", "command"}


@pytest.mark.parametrize(
    "fractions",
    [
        {"duplicate_fraction": -0.1},
        {"malformed_fraction": 1.5},
        {"unknown_fraction": 0.6, "duplicate_fraction": 0.6},
    ],
)
def test_impossible_fractions_are_refused(fractions: dict[str, float]):
    with pytest.raises(ValueError):
        next(payload_stream(roster(7, 2), random.Random(7), **fractions))


def test_mix_is_dominated_by_heartbeats_and_locations(messages: list[SimulatedMessage]):
    kinds = Counter(m.message_kind for m in messages if m.category in ("valid", "status"))
    total = sum(kinds.values())
    routine = kinds["HB_Msg"] + kinds["hb"] + kinds["location"]
    assert routine / total > 0.35
    assert kinds["SOS"] + kinds["sos"] + kinds["fallDown"] + kinds["FALLDOWN"] < 0.02 * total


def test_every_documented_message_kind_is_simulated(long_stream: list[SimulatedMessage]):
    kinds = {m.message_kind for m in long_stream}
    assert kinds >= {
        "BP_BIOLIGTH", "BLE_BPG", "WBP BIOLIGHT", "Oximeter JUMPER", "Contour_Elite",
        "AccuChek_Instant", "IR_TEMO_JUMPER", "BodyScale_JUMPER", "MGSS_REF_UA", "MGSS_REF_CHOL",
        "HB_Msg", "reportMsg", "cmd",
        "hb", "VitalSign", "AP55", "location", "sleepdata", "SOS", "fallDown", "onlineTrigger",
        "WBP_JUMPER", "CONTOUR", "TEMO_Jumper", "Oximeter_JUMPER",
    }  # fmt: skip


def test_duplicates_repeat_an_earlier_valid_or_status_message_byte_for_byte(
    messages: list[SimulatedMessage],
):
    duplicates = [m for m in messages if m.category == "duplicate"]
    assert duplicates
    for duplicate in duplicates:
        assert duplicate.duplicate_of is not None and duplicate.duplicate_of < duplicate.sequence
        original = messages[duplicate.duplicate_of]
        assert original.category in ("valid", "status")
        assert (duplicate.topic, duplicate.payload) == (original.topic, original.payload)
        assert duplicate.expected_readings == 0


def test_no_other_message_repeats_earlier_bytes(messages: list[SimulatedMessage]):
    fresh = [(m.topic, m.payload) for m in messages if m.category != "duplicate"]
    assert len(fresh) == len(set(fresh))


def test_expected_readings_count_what_valid_and_status_messages_store(
    messages: list[SimulatedMessage],
):
    for message in messages:
        if message.category in ("valid", "status"):
            assert message.expected_readings == len(message.expected_kinds)
        else:
            assert message.expected_readings == 0
    valid = [m for m in messages if m.category == "valid"]
    assert all(m.expected_readings >= 1 for m in valid)


def is_json(payload: bytes) -> bool:
    try:
        json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def test_malformed_payloads_are_really_malformed(messages: list[SimulatedMessage]):
    malformed = [m for m in messages if m.category == "malformed"]
    for message in malformed:
        payload = message.payload
        if message.defect in ("truncated", "single_quoted", "binary", "empty"):
            assert not is_json(payload), message.defect
        elif message.defect == "not_an_object":
            assert not isinstance(json.loads(payload), dict)
        else:
            assert message.defect == "wrong_types"
            decoded = json.loads(payload)
            identity = decoded.get("IMEI") if message.family == "Kati" else decoded.get("mac")
            assert not isinstance(identity, str)
    binary = [m for m in malformed if m.defect == "binary"]
    with pytest.raises(UnicodeDecodeError):
        binary[0].payload.decode("utf-8")


def test_valid_and_status_payloads_are_json_objects(messages: list[SimulatedMessage]):
    for message in messages:
        if message.category in ("valid", "status", "unknown_device", "command", "duplicate"):
            assert isinstance(json.loads(message.payload), dict)


def test_ava4_measurements_have_the_documented_shape(messages: list[SimulatedMessage]):
    ava4 = [m for m in messages if m.topic == "dusun_pub" and m.category == "valid"]
    assert ava4
    for message in ava4:
        decoded = body(message)
        assert decoded["type"] == "reportAttribute"
        assert re.fullmatch(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}", decoded["mac"])
        assert decoded["data"]["attribute"] == message.message_kind
        items = decoded["data"]["value"]["device_list"]
        assert isinstance(items, list) and len(items) == message.expected_readings // len(
            set(message.expected_kinds)
        )
        for item in items:
            assert re.fullmatch(r"[0-9A-Fa-f]{12}", item["ble_addr"])
            assert isinstance(item["scan_time"], int)
            if message.message_kind in ("Contour_Elite", "AccuChek_Instant"):
                assert isinstance(item["blood_glucose"], str) and item["blood_glucose"].isdigit()
            if message.message_kind == "MGSS_REF_UA":
                assert isinstance(item["uric_acid"], str)
            if message.message_kind in ("BP_BIOLIGTH", "BLE_BPG", "WBP BIOLIGHT"):
                assert {"bp_high", "bp_low", "PR"} <= item.keys()


def test_ava4_scales_and_thermometers_carry_float32_noise(messages: list[SimulatedMessage]):
    temperatures = [
        item["temp"]
        for m in messages
        if m.message_kind == "IR_TEMO_JUMPER" and m.category == "valid"
        for item in body(m)["data"]["value"]["device_list"]
    ]
    assert any(len(repr(t).split(".")[1]) > 4 for t in temperatures)


def test_qube_readings_identify_patients_by_a_valid_citizen_id(
    messages: list[SimulatedMessage], demo: Roster
):
    qube = [m for m in messages if m.topic == "CM4_BLE_GW_TX" and m.category == "valid"]
    assert qube
    by_id = {p.patient_id: p for p in demo.patients}
    for message in qube:
        decoded = body(message)
        assert is_valid_citizen_id(decoded["citiz"])
        assert message.patient_id is not None
        card = by_id[message.patient_id].card
        assert card is not None and decoded["citiz"] == card.citizen_id
        # `brith` is in the Buddhist Era: born 1940-2000 means 2483-2543.
        assert re.fullmatch(r"[0-9]{8}", decoded["brith"])
        assert 2483 <= int(decoded["brith"][:4]) <= 2543
        assert decoded["nameEN"].count("#") == 3
        assert decoded["data"]["attribute"] == message.message_kind
        assert isinstance(decoded["data"]["value"], dict)
        assert re.fullmatch(r"([0-9A-F]{2}:){5}[0-9A-F]{2}", decoded["data"]["ble_mac"])
        if message.message_kind == "CONTOUR":
            assert isinstance(decoded["data"]["value"]["blood_glucose"], int)


def test_kati_payloads_have_the_documented_shape(messages: list[SimulatedMessage]):
    kati = [m for m in messages if m.family == "Kati" and m.category in ("valid", "status")]
    for message in kati:
        decoded = body(message)
        assert message.topic == f"iMEDE_watch/{message.message_kind}"
        assert re.fullmatch(r"[0-9]{15}", decoded["IMEI"])
        if message.message_kind == "location":
            assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", decoded["time"])
            assert decoded["location"]["WiFi"].startswith("[{'SSID':'")
            assert decoded["location"]["LBS"]["SetBase"].startswith("[{'LAC':'")
        if message.message_kind == "AP55":
            assert decoded["num_datas"] == len(decoded["data"])
        if message.message_kind == "sleepdata":
            sleep = decoded["sleep"]
            assert sleep["num"] == len(sleep["data"]) and set(sleep["data"]) <= set("0123")


def test_valid_messages_come_from_registered_devices_of_their_patient(
    messages: list[SimulatedMessage], demo: Roster
):
    registry = {e.key: e.patient_id for e in demo.registry_entries()}
    for message in messages:
        if message.category == "valid":
            assert message.lookup_key is not None
            assert registry[message.lookup_key] == message.patient_id


def test_unknown_device_messages_come_from_unregistered_devices(
    messages: list[SimulatedMessage], demo: Roster
):
    unknown = [m for m in messages if m.category == "unknown_device"]
    assert {m.family for m in unknown} == {"AVA4", "Kati", "Qube"}
    for message in unknown:
        assert message.lookup_key in demo.unknown_keys()
        assert message.patient_id is None


def values_of(messages: list[SimulatedMessage], kind: str, field: str) -> list[float]:
    found: list[float] = []
    for message in messages:
        if message.category != "valid" or message.message_kind != kind:
            continue
        decoded = body(message)
        if message.topic == "dusun_pub":
            found += [float(i[field]) for i in decoded["data"]["value"]["device_list"]]
        elif message.topic == "CM4_BLE_GW_TX":
            found.append(float(decoded["data"]["value"][field]))
        elif field in decoded:
            found.append(float(decoded[field]))
    return found


def test_values_are_physiological_with_some_abnormal_readings(
    long_stream: list[SimulatedMessage],
):
    messages = long_stream
    systolic = values_of(messages, "BP_BIOLIGTH", "bp_high") + values_of(
        messages, "WBP_JUMPER", "bp_high"
    )
    spo2 = values_of(messages, "Oximeter JUMPER", "spo2") + values_of(messages, "VitalSign", "spO2")
    temperature = values_of(messages, "IR_TEMO_JUMPER", "temp") + values_of(
        messages, "TEMO_Jumper", "Temp"
    )
    glucose = values_of(messages, "Contour_Elite", "blood_glucose") + values_of(
        messages, "CONTOUR", "blood_glucose"
    )
    assert all(70 <= v <= 230 for v in systolic) and any(v >= 160 for v in systolic)
    assert all(70 <= v <= 100 for v in spo2) and any(v < 90 for v in spo2)
    assert all(34.5 <= v <= 42 for v in temperature) and any(v >= 38 for v in temperature)
    assert all(30 <= v <= 500 for v in glucose) and any(v < 70 for v in glucose)
    normal = [v for v in spo2 if v >= 95]
    assert len(normal) > len(spo2) / 2


def test_device_times_follow_the_clock_with_realistic_faults(
    messages: list[SimulatedMessage], demo: Roster
):
    fast_gateways = {p.gateway.mac for p in demo.patients if p.gateway.clock_offset_s}
    local_time_watches = {p.watch.imei for p in demo.patients if p.watch.ap55_local_time}
    seen_fast = seen_local = False
    for message in messages:
        if message.category not in ("valid", "status"):
            continue
        decoded = body(message)
        epoch = int(sent_at(message).timestamp())
        if message.topic in ("dusun_pub", "ESP32_BLE_GW_TX"):
            fast = message.device_id in fast_gateways
            seen_fast |= fast
            assert decoded["time"] - epoch == (FAST_GATEWAY_S + 3_723 if fast else 0)
        elif message.topic == "CM4_BLE_GW_TX":
            assert decoded["time"] == epoch
        elif message.message_kind in ("hb", "VitalSign", "AP55"):
            assert decoded["timeStamps"] == sent_at(message).strftime("%d/%m/%Y %H:%M:%S")
        if message.message_kind == "AP55":
            local = message.device_id in local_time_watches
            seen_local |= local
            assert decoded["data"][-1]["timestamp"] - epoch == (7 * 3600 if local else 0)
    assert seen_fast and seen_local


def test_step_counts_only_grow_within_a_day(messages: list[SimulatedMessage]):
    last: dict[str, int] = {}
    for message in messages:
        if message.message_kind == "hb" and message.category == "status":
            decoded = body(message)
            assert decoded["step"] >= last.get(decoded["IMEI"], 0)
            last[decoded["IMEI"]] = decoded["step"]


def test_repr_shows_neither_payload_nor_citizen_id(messages: list[SimulatedMessage]):
    qube = next(m for m in messages if m.family == "Qube" and m.category == "valid")
    text = repr(qube)
    assert body(qube)["citiz"] not in text and "nameEN" not in text
