"""The flow process's garbage-collector settings: collect cycles, not the traffic.

CPython runs a young-generation collection every 700 net allocations of container objects.
A batch of 1,000 messages allocates hundreds of thousands of short-lived dicts, lists and
envelopes, which reference counting frees as soon as the batch's records are written: none
of them is cyclic garbage, yet every 700 of them pay for a collection, and every few of those
for an older generation's. Measured in process (`tests/bench/bench_pipeline.py`'s stages on
10,000 simulated messages): 357-415 us per message with the default thresholds, 273-281
with these. In the pipeline benchmark the flow's CPU per message fell by about a tenth
(README "Benchmarks").

What the process allocated before the flow starts (modules, settings, the dataflow) is
frozen: it lives as long as the process, and a full collection no longer walks it.
Collections still run, only less often, so reference cycles (tracebacks of handled
exceptions, say) are still freed.

The young generation's threshold sits above the flow's working set. A young collection walks
every young object still alive, and what is alive is the messages in flight: when the flow
falls behind (a slow store), tens of thousands of them. Measured with `gc.callbacks` in the
flow under the pipeline benchmark while it was behind: 16-20 young collections per 20,000
messages at 50,000, each over 38,000-86,000 objects and 45-60 ms of the worker's CPU
(0.7-1.1 s in all, ~45 us a message); at 300,000, none (200,000 leaves room over the
largest seen). Keeping up, the count stays below
2,000 and neither threshold is reached. The cost: a collection that does come walks more,
~1 us an object here, so it is rarer and longer. What drifts the count up for good is cyclic
garbage, and the flow's own per-message cycles are gone (`connectors.topic_matcher`).
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune_garbage_collection"]

# Young generation every 200,000 net allocations (default 700), above the working set of a
# flow that is behind; the older ones as often, relative to it, as before (10) or less
# (gen 2 every 100 gen-1 collections, default 10).
THRESHOLDS = (200_000, 20, 100)


def tune_garbage_collection() -> None:
    """Freeze what exists now and collect less often (call once, before the flow runs)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
