"""Typed checks of settings from any source (TOML or flags): a value of the wrong type is an error
naming its field, never coerced; every problem of an entry is listed at once.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from dataclasses import replace
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

from paddy.core.errors import PaddyError
from paddy.settings.entry import AUTO, ENTRY_FIELDS, Accum, ModelEntry, Tracker, accum_problem


def parse_size(value: Any, name: str = "size") -> tuple[int, int]:
    """Accept 224, "224", "288x224" (height x width) or [288, 224]."""
    if isinstance(value, bool):
        raise PaddyError(f"{name} {value!r} is not a size")
    if isinstance(value, int):
        parts = [value, value]
    elif isinstance(value, str):
        try:
            parts = [int(p) for p in value.lower().split("x")]
        except ValueError:
            raise PaddyError(f"{name} {value!r} is not N or HxW (e.g. 224 or 288x224)") from None
        if len(parts) == 1:
            parts = parts * 2
    elif isinstance(value, (list, tuple)) and all(isinstance(p, int) and not isinstance(p, bool) for p in value):
        parts = list(value)
    else:
        raise PaddyError(f"{name} {value!r} is not N or HxW (e.g. 224 or 288x224)")
    if len(parts) != 2 or min(parts) <= 0:
        raise PaddyError(f"{name} {value!r} must be one or two positive integers")
    return parts[0], parts[1]


def parse_sizes(value: Any) -> tuple[tuple[int, int], ...]:
    """Accept [128, 192, 256] (TOML; HxW sizes as text or pairs) or "128,192,256" (a flag)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise PaddyError(f"sizes {value!r} is not a list of sizes (e.g. [128, 192, 256] or 128,192,256)")
    return tuple(parse_size(item.strip() if isinstance(item, str) else item, "sizes") for item in items)


def parse_accum(value: Any) -> Accum:
    """Accum is a whole number or 'auto' (use the accum recorded by probe-memory)."""
    if value == AUTO or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise PaddyError(f"accum {value!r} is not a whole number or 'auto'")


def parse_accum_text(text: str) -> Accum:
    """Accum given as text (a command-line flag): digits are the whole number, else the accum rule above."""
    return parse_accum(int(text) if text.isdigit() else text)


def parse_trackers(value: Any) -> tuple[Tracker, ...]:
    """Accept ["tensorboard", "csv"] (TOML, repeated flags) or one name; each tracker once, in order."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise PaddyError(f'trackers {value!r} is not a list of trackers (e.g. ["tensorboard", "csv"])')
    return tuple(dict.fromkeys(typed_value("trackers", item, Tracker) for item in items))


def typed_value(name: str, value: Any, hint: Any) -> Any:
    """`value` checked against the field's type hint: no coercion but int -> float and text -> Path."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        options = [h for h in typing.get_args(hint) if h is not type(None)]
        return typed_value(name, value, options[0]) if len(options) == 1 else value
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        if value in list(hint):
            return hint(value)
        raise PaddyError(f"{name}: {value!r} is not one of {', '.join(hint)}")
    if hint is bool and not isinstance(value, bool):
        raise PaddyError(f"{name}: {value!r} is not true or false")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise PaddyError(f"{name}: {value!r} is not a whole number")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PaddyError(f"{name}: {value!r} is not a number")
        if not math.isfinite(value):
            raise PaddyError(f"{name}: {value!r} is not a finite number")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise PaddyError(f"{name}: {value!r} is not text")
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise PaddyError(f"{name}: {value!r} is not a file path")
        return Path(value).expanduser()
    return value


@lru_cache(maxsize=1)
def entry_hints() -> dict[str, Any]:
    return typing.get_type_hints(ModelEntry)


def field_value(name: str, value: Any) -> Any:
    """One setting, parsed (sizes, accum) or type-checked against ModelEntry's annotation."""
    if name in ("size", "item_size"):
        return parse_size(value, name)
    if name == "sizes":
        return parse_sizes(value)
    if name == "accum":
        return parse_accum(value)
    if name == "trackers":
        return parse_trackers(value)
    return typed_value(name, value, entry_hints()[name])


def unknown_key_problem(key: str, known: set[str] | tuple[str, ...], what: str) -> str:
    """'unknown setting colour' with the closest known names, so a typo is never silently ignored."""
    close = difflib.get_close_matches(key, sorted(known), n=2, cutoff=0.6)
    return f"unknown {what} {key!r}" + (f"; did you mean {' or '.join(close)}?" if close else "")


def override_problems(overrides: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The given (non-None) overrides parsed and typed, and a 'field: problem' line for each bad one."""
    parsed, problems = {}, []
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in ENTRY_FIELDS:
            problems.append(unknown_key_problem(name, ENTRY_FIELDS, "setting"))
            continue
        try:
            parsed[name] = field_value(name, value)
        except PaddyError as e:
            message = str(e)
            problems.append(message if message.startswith(f"{name}") else f"{name}: {message}")
    return parsed, problems


def apply_overrides(entry: ModelEntry, overrides: dict[str, Any]) -> ModelEntry:
    """A copy of `entry` with the given fields replaced; None values mean 'not given'."""
    parsed, problems = override_problems(overrides)
    if problems:
        raise PaddyError("; ".join(problems))
    return replace(entry, **parsed)


def augmentation_problems(entry: ModelEntry) -> list[str]:
    """Augmentation amounts aug_transforms would take but that make no sense."""
    problems = []
    if entry.max_rotate < 0:
        problems.append(f"max_rotate: {entry.max_rotate} must not be negative (degrees)")
    if entry.max_zoom < 1:
        problems.append(f"max_zoom: {entry.max_zoom} must be at least 1 (1: no zoom)")
    for name in ("max_warp", "max_lighting"):
        if not 0 <= getattr(entry, name) < 1:
            problems.append(f"{name}: {getattr(entry, name)} must be in [0, 1)")
    if not 0 < entry.min_scale <= 1:
        problems.append(f"min_scale: {entry.min_scale} must be in (0, 1]")
    return problems


def sizes_problem(entry: ModelEntry) -> str | None:
    """Why progressive resizing's `sizes` cannot train this entry, or None."""
    sizes = entry.sizes
    if not sizes:
        return None
    if sizes[-1] != entry.size:
        return (
            f"ends at {'x'.join(map(str, sizes[-1]))} but size is {'x'.join(map(str, entry.size))}: the last size "
            f"is the one the model validates, predicts and is saved at; set size to it"
        )
    if any(a > b for small, large in zip(sizes, sizes[1:]) for a, b in zip(small, large)):
        return f"{[list(s) for s in sizes]} must grow (smallest first), as progressive resizing does"
    if entry.epochs < len(sizes):
        return f"{len(sizes)} sizes need at least {len(sizes)} epochs (one per size), not {entry.epochs}"
    return None


def batch_problems(entry: ModelEntry) -> list[str]:
    """Why the batch cannot be split over the GPUs and accumulation steps."""
    problems = []
    if entry.gpus < 1:
        problems.append(f"gpus: {entry.gpus} must be at least 1")
    elif entry.bs % entry.gpus:
        problems.append(f"gpus: {entry.gpus} does not divide bs {entry.bs} (each process takes bs / gpus images)")
    if entry.bs < 1:
        problems.append(f"bs: {entry.bs} must be at least 1")
    elif entry.gpus >= 1 and entry.accum != AUTO and (problem := accum_problem(entry.process_bs, entry.accum)):
        where = f" per process (bs {entry.bs} over {entry.gpus} GPUs)" if entry.gpus > 1 else ""
        problems.append(f"accum: {problem}{where}")
    return problems


def schedule_problems(entry: ModelEntry) -> list[str]:
    """Why the epochs, learning rate, sizes, weight average or patience cannot make a schedule."""
    problems = []
    if entry.epochs < 1:
        problems.append(f"epochs: {entry.epochs} must be at least 1")
    if entry.lr <= 0:
        problems.append(f"lr: {entry.lr} must be positive")
    if problem := sizes_problem(entry):
        problems.append(f"sizes: {problem}")
    if entry.ema is not None and not 0 < entry.ema < 1:
        problems.append(f"ema: {entry.ema} must be in (0, 1), e.g. 0.9998")
    if entry.patience is not None and entry.patience < 1:
        problems.append(f"patience: {entry.patience} must be at least 1 (epochs without a better metric)")
    return problems


def split_problems(entry: ModelEntry) -> list[str]:
    """Why the validation share or the folds cannot hold images out."""
    problems = []
    if not 0 < entry.valid_pct < 1:
        problems.append(f"valid_pct: {entry.valid_pct} must be between 0 and 1")
    if entry.folds is not None and entry.folds < 2:
        problems.append(f"folds: {entry.folds} must be at least 2")
    if entry.fold is not None and entry.folds is None:
        problems.append("fold: needs folds (how many folds the training images are split into)")
    elif entry.fold is not None and entry.folds is not None and not 1 <= entry.fold <= entry.folds:
        problems.append(f"fold: {entry.fold} is not one of 1..{entry.folds}")
    return problems


def recipe_problems(entry: ModelEntry) -> list[str]:
    """Why the weights file, the ensemble weight or a course recipe (label smoothing, mixup) cannot be used."""
    problems = []
    if entry.pretrained_file is not None and not entry.pretrained_file.is_file():
        problems.append(f"pretrained_file: no file at {entry.pretrained_file}")
    if entry.ensemble_weight < 0:
        problems.append(f"ensemble_weight: {entry.ensemble_weight} must not be negative")
    if not 0 <= entry.label_smoothing < 1:
        problems.append(f"label_smoothing: {entry.label_smoothing} must be in [0, 1)")
    if entry.mixup is not None and entry.mixup <= 0:
        problems.append(f"mixup: {entry.mixup} must be positive")
    if entry.mixup and entry.multi_target:
        problems.append("mixup: fastai's MixUp mixes one target; it cannot be combined with multi_target")
    return problems


def entry_problems(entry: ModelEntry) -> list[str]:
    """Every reason this entry's settings cannot train, as 'field: problem' lines (whether the arch exists is
    timm's to say: paddy.training.archs)."""
    return [
        *batch_problems(entry),
        *schedule_problems(entry),
        *split_problems(entry),
        *augmentation_problems(entry),
        *recipe_problems(entry),
    ]
