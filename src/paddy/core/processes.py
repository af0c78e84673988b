"""Child processes that end with paddy: Linux's parent-death signal for workers paddy starts."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl option (<linux/prctl.h>): the signal a child gets when its parent dies


def die_with_parent(parent_pid: int) -> None:
    """In a worker, before it runs: ask Linux to SIGTERM it when `parent_pid` (the process that started it)
    dies, even by SIGKILL, so a killed paddy leaves no workers running or hanging; a parent already gone
    before prctl means exit now."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        signal.raise_signal(signal.SIGTERM)
