"""Finding the smallest gradient-accumulation factor that fits each model in a GPU memory
budget, and remembering it so `paddy train --accum auto` can use it.

The search tries accum = 1, 2, 4, ... and stops at the first whose peak fits the budget
less its headroom; out of memory counts as "does not fit". Each entry's result is saved
as soon as it is known, so an interrupted probe keeps what it finished.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from paddy.config import AUTO, MIN_STEP_BATCH, ModelEntry, check_entry
from paddy.data import CompetitionData
from paddy.errors import PaddyError
from paddy.files import read_json, write_json
from paddy.memory import CUDA_CONTEXT_MIB, ESTIMATE, MEASURED, Measurement, measure_training, probe_device
from paddy.run import free_memory

DEFAULT_BUDGET = "16280MiB"  # a Kaggle P100 or T4 as torch sees it
PROBES_FILE = "memory-probes.json"
BUDGET_UNITS_MIB = {"": 1.0, "mib": 1.0, "gib": 1024.0, "mb": 1e6 / 2**20, "gb": 1e9 / 2**20}

Measure = Callable[[ModelEntry, int], Measurement]


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


def check_headroom(headroom: float) -> float:
    """The share of the budget kept free for what a probe cannot see (fragmentation, other buffers)."""
    if not 0 <= headroom < 0.9:
        raise PaddyError(f"headroom {headroom} must be in [0, 0.9), e.g. 0.1 for 10%")
    return headroom


def accum_candidates(bs: int) -> list[int]:
    """accum = 1, 2, 4, ... dividing bs, while each step still gets MIN_STEP_BATCH images."""
    candidates, accum = [], 1
    while bs % accum == 0 and bs // accum >= MIN_STEP_BATCH:
        candidates.append(accum)
        accum *= 2
    return candidates


@dataclass(frozen=True)
class Trial:
    """One accum tried: its per-step batch, peak (None when it ran out of memory), verdict."""

    accum: int
    step_bs: int
    peak_mib: float | None
    fits: bool
    parts: dict[str, Any] = field(default_factory=dict)

    @property
    def out_of_memory(self) -> bool:
        return self.peak_mib is None


def check_probe_entry(entry: ModelEntry) -> ModelEntry:
    """The entry, if it can be trained and has at least one accum to try."""
    check_entry(entry)
    if not accum_candidates(entry.bs):
        raise PaddyError(f"bs {entry.bs} is too small to probe: each step needs at least {MIN_STEP_BATCH} images")
    return entry


def try_accum(entry: ModelEntry, accum: int, limit_mib: float, measure: Measure) -> Trial:
    """Measure one accum; running out of memory means it does not fit (memory is freed either way)."""
    step_bs = entry.bs // accum
    try:
        measurement = measure(entry, accum)
    except torch.OutOfMemoryError:
        measurement = None  # leave the except block first: its traceback still holds the model
    free_memory()
    if measurement is None:
        return Trial(accum, step_bs, None, False)
    return Trial(accum, step_bs, measurement.peak_mib, measurement.peak_mib <= limit_mib, measurement.parts)


def search_accum(
    entry: ModelEntry, limit_mib: float, measure: Measure, on_trial: Callable[[int], None] = lambda accum: None
) -> list[Trial]:
    """Try accum 1, 2, 4, ... in order and stop at the first that fits."""
    trials: list[Trial] = []
    for accum in accum_candidates(entry.bs):
        on_trial(accum)
        trials.append(try_accum(entry, accum, limit_mib, measure))
        if trials[-1].fits:
            break
    return trials


def probe_key(entry: ModelEntry, budget_mib: float) -> dict[str, Any]:
    """What a probe result depends on: the model, its input sizes, batch, precision and budget."""
    return {
        "arch": entry.arch,
        "size": list(entry.size),
        "item": entry.item,
        "presize": list(entry.item_size),
        "bs": entry.bs,
        "precision": entry.precision,
        "budget_mib": budget_mib,
    }


def describe_key(key: dict[str, Any]) -> str:
    """A probe key as a short phrase for messages."""
    (h, w), (ph, pw) = key["size"], key["presize"]
    return f"{key['arch']} {h}x{w} {key['item']} presize {ph}x{pw} bs {key['bs']} precision {key['precision']}"


@dataclass(frozen=True)
class ProbeRecord:
    """The outcome of probing one entry against one budget, as saved in the probes file."""

    key: dict[str, Any]
    headroom: float
    kind: str
    device: str
    trials: list[Trial]
    when: str

    def describe(self) -> str:
        return describe_key(self.key)

    @property
    def limit_mib(self) -> float:
        return self.key["budget_mib"] * (1 - self.headroom)

    @property
    def accum(self) -> int | None:
        """The smallest accum that fits, or None if none did."""
        return next((t.accum for t in self.trials if t.fits), None)

    @property
    def context_allowance_mib(self) -> float | None:
        """The fixed CUDA context allowance an estimate includes (a measurement needs none)."""
        return CUDA_CONTEXT_MIB if self.kind == ESTIMATE else None

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "accum": self.accum,
            "limit_mib": round(self.limit_mib, 1),
            "cuda_context_allowance_mib": self.context_allowance_mib,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ProbeRecord:
        trials = [Trial(**trial) for trial in raw["trials"]]
        return cls(raw["key"], raw["headroom"], raw["kind"], raw["device"], trials, raw["when"])


def load_probes(path: Path) -> list[ProbeRecord]:
    """Every probe saved in `path` (none if it does not exist yet)."""
    if not path.is_file():
        return []
    try:
        return [ProbeRecord.from_json(raw) for raw in read_json(path)["probes"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PaddyError(
            f"cannot read memory probes {path} ({type(e).__name__}: {e}); delete it and probe again"
        ) from None


def save_probe(path: Path, record: ProbeRecord) -> None:
    """Add `record` to the probes file atomically, replacing an older one of the same key and kind."""
    kept = [r for r in load_probes(path) if (r.key, r.kind) != (record.key, record.kind)]
    write_json(path, {"probes": [r.to_json() for r in [*kept, record]]})


def probe_memory(
    entries: list[ModelEntry],
    data: CompetitionData,
    budget_mib: float,
    headroom: float,
    path: Path,
    measure: Measure | None = None,
    on_trial: Callable[[int, ModelEntry, int], None] = lambda index, entry, accum: None,
    on_record: Callable[[ProbeRecord], None] = lambda record: None,
    num_workers: int = 0,
) -> list[ProbeRecord]:
    """Search the smallest fitting accum of every entry and save each result in `path` as it comes.

    `measure(entry, accum)` defaults to training on the probe subset of `data`; `on_trial`
    hears (entry index, entry, accum) before each try, `on_record` each entry's result.
    """
    for entry in entries:
        check_probe_entry(entry)
    check_headroom(headroom)
    measure = measure or partial(measure_training, data=data, num_workers=num_workers)
    device = probe_device()
    records = []
    for index, entry in enumerate(entries):
        trials = search_accum(entry, budget_mib * (1 - headroom), measure, partial(on_trial, index, entry))
        when = datetime.now().isoformat(timespec="seconds")
        record = ProbeRecord(probe_key(entry, budget_mib), headroom, device.kind, device.name, trials, when)
        save_probe(path, record)
        on_record(record)
        records.append(record)
    return records


def recorded_probe(entry: ModelEntry, budget_mib: float, path: Path) -> ProbeRecord:
    """The probe of this entry and budget: a measurement if there is one, else an estimate."""
    key = probe_key(entry, budget_mib)
    matching = [r for r in load_probes(path) if r.key == key]
    if not matching:
        h, w = entry.size
        raise PaddyError(
            f"no memory probe recorded for {describe_key(key)} within {budget_mib:g} MiB in {path}; "
            f"run `paddy probe-memory --arch {entry.arch} --size {h}x{w} --item {entry.item} --bs {entry.bs} "
            f"--budget {budget_mib:g}MiB` (with the same --presize/--precision) first"
        )
    return max(matching, key=lambda r: (r.kind == MEASURED, r.when))


def resolve_auto_accum(entry: ModelEntry, budget_mib: float, path: Path) -> ModelEntry:
    """The entry with accum 'auto' replaced by the probe's choice (other entries unchanged)."""
    if entry.accum != AUTO:
        return entry
    record = recorded_probe(entry, budget_mib, path)
    if record.accum is None:
        last = record.trials[-1]
        raise PaddyError(
            f"{describe_key(record.key)} does not fit in {budget_mib:g} MiB even at accum {last.accum} "
            f"(per-step batch {last.step_bs}) per the probe of {record.when}; use a smaller bs, size or model"
        )
    return replace(entry, accum=record.accum)
