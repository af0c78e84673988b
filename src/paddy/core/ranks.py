"""Which data-parallel process this is: torchrun's WORLD_SIZE and RANK, read without importing torch."""

from __future__ import annotations

import os


def world_size() -> int:
    """How many processes train this run (torchrun's WORLD_SIZE; 1 outside a launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes the run folder and predicts."""
    return int(os.environ.get("RANK", "0")) == 0
