"""Child processes that end with paddy: Linux's parent-death signal for workers paddy starts."""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl option: the signal a child gets when its parent dies


def die_with_parent() -> None:
    """In the worker, before it runs: ask Linux to end it when the pool process dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
