"""GPU memory budgets: parsed from 16280, 16280MiB, 24GiB or 16GB, and the Kaggle GPU default."""

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
