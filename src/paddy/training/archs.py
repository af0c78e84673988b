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
        base, _, tag = arch.partition(".")
        tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{base}.*")]
        if not tag or tag in tags:
            return None
        hint = close_names(tag, tags, f"timm.list_pretrained({base!r})", prefix=f"{base}.")
        return f"{arch!r} has an unknown pretrained tag{hint}"
    return f"unknown arch {arch!r}{close_names(arch, timm_names(), 'timm.list_models()')}"


def close_names(name: str, names: list[str] | tuple[str, ...], listing: str, prefix: str = "") -> str:
    """'; did you mean ...?' with the names closest to a typo (each after `prefix`), else where to look them up."""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(prefix + c for c in close)}?" if close else f"; see {listing}"


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
