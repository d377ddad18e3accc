"""paho's per-topic callback matcher, without a reference cycle per received message.

paho 2.x looks up the callbacks registered with `message_callback_add` for every message it
receives, even when none are: `MQTTMatcher.iter_match` builds a recursive closure, which
refers to itself through its cell, so each message leaves six objects (the closure, three
cells, a list, a tuple) that only the garbage collector can free. Found with
`gc.DEBUG_SAVEALL` in the flow under the pipeline benchmark: they were all of its cyclic
garbage, ~9,000 objects a second at 1,500 msg/s, memory held until the next collection and
walked by it (`flows.garbage_collection`). The source registers no per-topic callbacks, so
the lookup can answer "none" without building anything; with callbacks registered, paho's
own lookup runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.matcher import MQTTMatcher

__all__ = ["AcyclicMatcher", "without_matcher_cycles"]


class AcyclicMatcher(MQTTMatcher):
    """An `MQTTMatcher` that builds nothing to say no filter is registered."""

    def iter_match(self, topic: str) -> Iterator[Any]:
        """Return what the filters matching `topic` hold: nothing, built cheaply, if none."""
        if not self._root._children:
            return iter(())
        return super().iter_match(topic)


def without_matcher_cycles(client: mqtt.Client) -> bool:
    """Give `client` the acyclic matcher; False (and nothing changed) if paho's differs.

    Only an empty matcher is replaced, so nothing registered is lost. The attribute is
    paho's own (2.x): a paho that keeps its callbacks elsewhere is left as it is.
    """
    current = getattr(client, "_on_message_filtered", None)
    if type(current) is not MQTTMatcher or current._root._children:
        return False
    client._on_message_filtered = AcyclicMatcher()
    return True
