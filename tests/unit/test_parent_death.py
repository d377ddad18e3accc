"""A child started with `die_with_parent` ends when its parent is killed; one without, not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

# A parent that starts a long sleeper, says its pid, then waits to be killed.
_PARENT = """
import subprocess, sys, time
from flows.parent_death import die_with_parent
tied = sys.argv[1] == "tied"
child = subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent if tied else None)
print(child.pid, flush=True)
time.sleep(60)
"""


def _orphan_after_parent_killed(mode: str) -> psutil.Process | None:
    """Kill the parent with SIGKILL; return its child if it still runs 3 s later."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, mode], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = psutil.Process(int(parent.stdout.readline()))
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if not child.is_running() or child.status() == psutil.STATUS_ZOMBIE:
            return None
        time.sleep(0.05)
    return child


def test_a_tied_child_ends_with_its_killed_parent() -> None:
    assert _orphan_after_parent_killed("tied") is None


def test_an_untied_child_outlives_its_killed_parent() -> None:
    # The control: without the signal the sleeper runs on (so the test above can fail).
    orphan = _orphan_after_parent_killed("untied")
    assert orphan is not None
    orphan.kill()
