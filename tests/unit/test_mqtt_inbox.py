import queue
import threading
import time

import pytest

from connectors.mqtt_inbox import MqttInbox


def put_in_background(inbox: MqttInbox[str], item: str, size: int) -> threading.Thread:
    thread = threading.Thread(target=inbox.put, args=(item, size), daemon=True)
    thread.start()
    thread.join(timeout=0.2)
    return thread


def test_a_put_blocks_once_the_bytes_are_full_and_resumes_when_they_are_taken():
    inbox: MqttInbox[str] = MqttInbox(max_items=100, max_bytes=1000)
    inbox.put("a", 600)
    inbox.put("b", 400)
    blocked = put_in_background(inbox, "c", 1)
    assert blocked.is_alive() and len(inbox) == 2 and inbox.nbytes == 1000
    assert inbox.get_nowait() == "a"
    blocked.join(timeout=2)
    assert not blocked.is_alive()
    assert [inbox.get_nowait(), inbox.get_nowait()] == ["b", "c"] and inbox.nbytes == 0


def test_a_put_blocks_once_the_count_is_full_whatever_the_bytes():
    inbox: MqttInbox[str] = MqttInbox(max_items=2, max_bytes=10**9)
    inbox.put("a", 1)
    inbox.put("b", 1)
    blocked = put_in_background(inbox, "c", 1)
    assert blocked.is_alive()
    inbox.get_nowait()
    blocked.join(timeout=2)
    assert not blocked.is_alive() and len(inbox) == 2


def test_an_empty_inbox_takes_one_message_larger_than_the_byte_bound():
    inbox: MqttInbox[str] = MqttInbox(max_items=100, max_bytes=1000)
    inbox.put("huge", 5000)  # must not block forever
    blocked = put_in_background(inbox, "small", 1)
    assert blocked.is_alive()
    assert inbox.get_nowait() == "huge"
    blocked.join(timeout=2)
    assert inbox.get_nowait() == "small"
    with pytest.raises(queue.Empty):
        inbox.get_nowait()
    assert inbox.empty()


def test_memory_held_stays_within_the_byte_bound_under_a_stream_of_large_messages():
    inbox: MqttInbox[bytes] = MqttInbox(max_items=20_000, max_bytes=4 * 5_000_000)
    peak = [0]

    def produce() -> None:
        for _ in range(30):
            inbox.put(b"", 5_000_000)
            peak[0] = max(peak[0], inbox.nbytes)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    taken = 0
    deadline = time.monotonic() + 10
    while taken < 30 and time.monotonic() < deadline:
        try:
            inbox.get_nowait()
            taken += 1
        except queue.Empty:
            time.sleep(0.001)
    assert taken == 30 and peak[0] <= 4 * 5_000_000
