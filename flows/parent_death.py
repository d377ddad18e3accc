"""Child processes that do not outlive their parent: the kernel's parent-death signal (Linux).

Why: a parent killed with `kill -9` (a demo, a test run, a benchmark) cannot stop what it
started; without this its children run on, holding ports and CPU, until someone finds them.
"""

from __future__ import annotations

import ctypes
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1

# Resolved once here, in the parent: between fork and exec (a `preexec_fn`) the child must not
# load libraries, whose locks another thread of the parent may have held when it forked.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Have the kernel send `signum` to this process when its parent dies; else nothing.

    Call it in the child: as `subprocess.Popen(..., preexec_fn=die_with_parent)` (it survives
    the exec) or first in a `multiprocessing` target. The kernel ties it to the parent's
    thread that started the child, so start children from a thread that lives as long as
    they should (the main one).
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signum)
