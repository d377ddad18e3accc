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
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune_garbage_collection"]

# Young generation every 50,000 net allocations (default 700); the older ones as often,
# relative to it, as before (10) or less (gen 2 every 100 gen-1 collections, default 10).
THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collection() -> None:
    """Freeze what exists now and collect less often (call once, before the flow runs)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
