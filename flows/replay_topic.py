"""Where `vitalflow dlq replay` re-publishes a dead letter, and how the flow reads it back.

A replayed copy goes to `<prefix>/<n>/<original topic>`, where `n` is the number of the
delivery that was dead-lettered. The bytes stay exact, so the copy keeps its `message_id` (and
its observation `_id`s: storing it again can never double a record). The topic carries what the
bytes cannot over MQTT 3.1.1: that this is a deliberate re-injection, not a device resending,
so de-dup lets it through even when the first copy got as far as a failed store, and its
events get ids of their own (`<message_id>/d<n+1>/<step>`), also after the de-dup TTL.
"""

from __future__ import annotations

__all__ = ["ReplayedTopic", "replay_topic", "split_replay_topic"]

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplayedTopic:
    """A replay topic taken apart: the device's topic and the delivery that failed."""

    topic: str
    failed_delivery: int


def replay_topic(prefix: str, failed_delivery: int, topic: str) -> str:
    """Return the topic a replay of `topic`'s dead letter is published to."""
    if failed_delivery < 1:
        msg = f"delivery numbers start at 1, got {failed_delivery}"
        raise ValueError(msg)
    return f"{prefix.rstrip('/')}/{failed_delivery}/{topic}"


def split_replay_topic(prefix: str, topic: str) -> ReplayedTopic | None:
    """Return what a replay topic names, or None for any other topic (a device's own)."""
    head = f"{prefix.rstrip('/')}/"
    if not topic.startswith(head):
        return None
    number, sep, original = topic[len(head) :].partition("/")
    # Anything malformed under the prefix is treated as an ordinary topic: parsing then fails
    # on it as on any unknown topic, with an error event and a dead letter, not a crash.
    # ASCII digits only: `isdigit` also takes "²" and "①", which `int` refuses, and
    # fullwidth digits, which `int` reads, though `replay_topic` never writes them.
    if not sep or not original or not _ascii_digits(number) or len(number) > 9 or int(number) < 1:
        return None
    return ReplayedTopic(original, int(number))


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()
