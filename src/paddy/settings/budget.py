"""Budgets: GPU memory (16280, 16280MiB, 24GiB or 16GB; the Kaggle GPU default) and time (11h30m, 90m)."""

from __future__ import annotations

import re

from paddy.core.errors import PaddyError

DEFAULT_BUDGET = "16280MiB"  # a Kaggle P100 or T4 as torch sees it


BUDGET_UNITS_MIB = {"": 1.0, "mib": 1.0, "gib": 1024.0, "mb": 1e6 / 2**20, "gb": 1e9 / 2**20}


def parse_budget(value: str | int | float) -> float:
    """A memory budget in MiB from 16280, "16280MiB", "24GiB", "16GB" (decimal) or "1.5 GiB"."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    unit = match.group(2).lower() if match else None
    if unit not in BUDGET_UNITS_MIB:
        raise PaddyError(f"budget {value!r} is not a memory size like 16280 (MiB), 16280MiB, 24GiB or 16GB")
    mib = float(match.group(1)) * BUDGET_UNITS_MIB[unit]
    if mib <= 0:
        raise PaddyError(f"budget {value!r} must be more than 0")
    return round(mib, 1)


def chosen_budget(*candidates: str | None) -> float:
    """The first budget given (a flag, then a config's), else the Kaggle GPU default, in MiB."""
    return parse_budget(next((c for c in candidates if c), DEFAULT_BUDGET))


DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> float:
    """Seconds in '11h30m', '90m', '2h', '45s' or '1.5h'."""
    match = DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise PaddyError(f"time budget {text!r} is not a duration like 11h30m, 90m or 2h")
    hours, minutes, seconds = (float(g or 0) for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise PaddyError(f"time budget {text!r} must be more than 0")
    return total


def duration_text(seconds: float) -> str:
    """'3h05m', '12m', '40s'."""
    minutes = round(seconds / 60)
    if minutes >= 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{minutes}m" if minutes else f"{round(seconds)}s"
