"""Whether a model name is one timm can build: its registry (and pretrained tags), with close names
suggested for a typo. timm is imported on first use, so commands that only read configs stay light."""

from __future__ import annotations

import difflib
from functools import lru_cache

from paddy.core.errors import PaddyError
from paddy.settings.checks import entry_problems
from paddy.settings.entry import ModelEntry


@lru_cache(maxsize=1)
def timm_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def arch_problem(arch: str) -> str | None:
    """Why `arch` is not a timm model name (with close suggestions), or None if it is."""
    import timm

    if timm.is_model(arch):
        if "." not in arch or arch in timm.list_pretrained():
            return None
        return f"{arch!r} has an unknown pretrained tag; see timm.list_pretrained({arch.split('.')[0]!r} + '*')"
    close = difflib.get_close_matches(arch, timm_names(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    return f"unknown arch {arch!r}{hint}"


def arch_problems(entry: ModelEntry) -> list[str]:
    """The entry's arch problem as a 'field: problem' line, if it has one."""
    problem = arch_problem(entry.arch)
    return [f"arch: {problem}"] if problem else []


def trainable_problems(entry: ModelEntry) -> list[str]:
    """Every reason this entry cannot be trained: its arch, then its settings."""
    return [*arch_problems(entry), *entry_problems(entry)]


def check_trainable(entry: ModelEntry) -> ModelEntry:
    """Return the entry, or raise one PaddyError listing every problem."""
    if problems := trainable_problems(entry):
        raise PaddyError("; ".join(problems))
    return entry
