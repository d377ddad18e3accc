"""The source's paho client looks its per-topic callbacks up without leaving cyclic garbage."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.matcher import MQTTMatcher

from connectors.topic_matcher import AcyclicMatcher, without_matcher_cycles

TOPICS = ["iMEDE_watch/VitalSign", "ESP32_BLE_GW_TX", "dusun_pub", "$SYS/broker/load", "a/b/c"]


@pytest.fixture
def collector_off() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _garbage_after_lookups(matcher: MQTTMatcher) -> int:
    gc.collect()
    for _ in range(50):
        for topic in TOPICS:
            list(matcher.iter_match(topic))
    return gc.collect()


@pytest.mark.usefixtures("collector_off")
def test_an_empty_acyclic_matcher_leaves_no_garbage_where_pahos_leaves_some() -> None:
    assert _garbage_after_lookups(MQTTMatcher()) > 0  # what the replacement is for
    assert _garbage_after_lookups(AcyclicMatcher()) == 0


@pytest.mark.parametrize(
    "filters", [["a/+/c"], ["#"], ["a/#", "+/+", "dusun_pub"], ["iMEDE_watch/+", "$SYS/#"]]
)
def test_with_filters_it_matches_as_paho_does(filters: list[str]) -> None:
    ours, pahos = AcyclicMatcher(), MQTTMatcher()
    for name in filters:
        ours[name] = pahos[name] = name
    for topic in TOPICS:
        assert sorted(ours.iter_match(topic)) == sorted(pahos.iter_match(topic))


def _client() -> mqtt.Client:
    return mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)


def test_a_new_client_gets_the_acyclic_matcher() -> None:
    client = _client()
    assert without_matcher_cycles(client)
    assert isinstance(client._on_message_filtered, AcyclicMatcher)
    # Callbacks added afterwards are still found.
    client.message_callback_add("a/+/c", lambda *_: None)
    assert list(client._on_message_filtered.iter_match("a/b/c"))


def test_a_client_with_callbacks_is_left_as_it_was() -> None:
    client = _client()
    client.message_callback_add("a/+/c", lambda *_: None)
    before = client._on_message_filtered
    assert not without_matcher_cycles(client)
    assert client._on_message_filtered is before
