"""An epoch the disk had no room (or no write) for: one line that names the file, the space it needs beside
the space free, and what the run still has to go on from, for the CLI to end with the command that goes on.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from paddy.core.errors import PaddyError
from paddy.core.files import FileNotWritten


class CheckpointNotSaved(PaddyError):
    """An epoch's checkpoint or history.csv the disk had no room (or no write) for: the previous checkpoint is
    kept, so `run` goes on from it. The message is kept apart from `args`, which fastai rewrites for errors
    raised in a callback."""

    def __init__(self, message: str, run: Path):
        super().__init__(message)
        self.message, self.run = message, run

    def __str__(self) -> str:
        return self.message


def tensor_bytes(value: Any) -> int:
    """The bytes of every tensor in `value` (dicts and lists of them): about what torch.save writes."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    return sum(tensor_bytes(v) for v in value) if isinstance(value, (list, tuple)) else 0


def checkpoint_not_saved(path: Path, state: dict[str, Any], error: Exception) -> CheckpointNotSaved:
    """Why `path` was not written, the space it needs (the previous checkpoint's size, or its tensors')
    beside the space free, and what is kept."""
    context = error.__context__
    if isinstance(error, FileNotWritten):
        reason = error.reason
    elif isinstance(context, OSError) and context.strerror:
        reason = context.strerror
    else:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    previous = path.stat().st_size if path.is_file() else 0
    needed, free = max(previous, tensor_bytes(state)), shutil.disk_usage(path.parent).free
    return CheckpointNotSaved(
        f"cannot write checkpoint {path} ({reason}): it needs about {needed / 2**20:.1f} MiB and "
        f"{path.parent} has {free / 2**20:.1f} MiB free; {kept_before(path)}",
        path.parent,
    )


def kept_before(checkpoint: Path) -> str:
    """What a run that could not save its epoch still has to go on from."""
    return "the previous checkpoint is kept" if checkpoint.is_file() else "no epoch of this run was saved yet"
