"""Finding the smallest gradient-accumulation factor that fits each model in a GPU memory
budget, and remembering it so `paddy train --accum auto` can use it.

The search tries accum = 1, 2, 4, ... and stops at the first whose peak fits the budget
less its headroom; out of memory counts as "does not fit". Each entry's result is saved
as soon as it is known, so an interrupted probe keeps what it finished.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from paddy.core.errors import PaddyError
from paddy.data.competition import CompetitionData
from paddy.data.images import without_bad_images
from paddy.memory.measure import Measurement, free_memory, measure_training, probe_device
from paddy.runs.probes import ProbeRecord, Trial, load_probes, probe_key, save_probe, save_probes
from paddy.settings.entry import MIN_STEP_BATCH, BadImages, ModelEntry, accum_choices
from paddy.training.archs import check_trainable

Measure = Callable[[ModelEntry, int], Measurement]


def check_headroom(headroom: float) -> float:
    """The share of the budget kept free for what a probe cannot see (fragmentation, other buffers)."""
    if not 0 <= headroom < 0.9:
        raise PaddyError(f"headroom {headroom} must be in [0, 0.9), e.g. 0.1 for 10%")
    return headroom


def check_probe_entry(entry: ModelEntry) -> ModelEntry:
    """The entry, if it can be trained and has at least one accum to try."""
    check_trainable(entry)
    if not accum_choices(entry.process_bs):
        raise PaddyError(f"bs {entry.bs} is too small to probe: each step needs at least {MIN_STEP_BATCH} images")
    return entry


def try_accum(entry: ModelEntry, accum: int, limit_mib: float, measure: Measure) -> Trial:
    """Measure one accum; running out of memory means it does not fit (memory is freed either way)."""
    step_bs = entry.process_bs // accum
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
    for accum in accum_choices(entry.process_bs):
        on_trial(accum)
        trials.append(try_accum(entry, accum, limit_mib, measure))
        if trials[-1].fits:
            break
    return trials


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
    bad_images: BadImages = BadImages.fail,
) -> list[ProbeRecord]:
    """Search the smallest fitting accum of every entry and save each result in `path` as it comes.

    `measure(entry, accum)` defaults to training on the probe subset of `data`; `on_trial`
    hears (entry index, entry, accum) before each try, `on_record` each entry's result. A corrupt
    image is one error naming it, before anything is measured or written, not a traceback mid-probe.
    """
    for entry in entries:
        check_probe_entry(entry)
    check_headroom(headroom)
    data = without_bad_images(data, bad_images, path.parent)
    save_probes(path, load_probes(path))  # an unwritable --out fails now, not after the first hour of probing
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
