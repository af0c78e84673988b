"""Child processes that end with paddy (Linux's parent-death signal for workers paddy starts), and how often a
process of paddy's collects its garbage and what it walks when it does."""

from __future__ import annotations

import ctypes
import gc
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


RARE_COLLECTIONS = (50_000, 20, 20)  # Python's default is (700, 10, 10)


def collect_rarely() -> None:
    """Let Python's cyclic garbage collector run rarely in this process: torch, fastai and timm leave about
    640,000 long-lived objects, which collections keep walking again (during the imports alone, a tenth to a
    sixth of a training command's start-up; benchmarks/startup.py). Memory held in cycles is still freed:
    `free_memory` collects at once before the next model is built."""
    gc.set_threshold(*RARE_COLLECTIONS)


def collect_then_freeze() -> None:
    """Collect the cyclic garbage now, then take what survived out of every later collection (gc.freeze): what
    outlives a model (the imported torch, fastai and timm, about 590,000 objects) lives as long as the process,
    and walking it again took each collection between runs 0.3 s on 2 cores. A later collection walks only
    what was made since, so the next model's cycles are still freed; a survivor that later becomes cyclic
    garbage is not (between runs, survivors are the process's own long-lived state)."""
    gc.collect()
    gc.freeze()
