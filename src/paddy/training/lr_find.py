"""fastai's learning-rate finder for a model entry, with the accumulation the real run will use."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from fastai.vision.all import minimum, slide, steep, valley

from paddy.core.errors import PaddyError
from paddy.core.files import write_json
from paddy.data.competition import CompetitionData
from paddy.runs.folder import RunFolder
from paddy.runs.listing import LR_FIND_FILE
from paddy.settings.entry import AUTO, BadImages, ModelEntry
from paddy.training.learner import make_learner
from paddy.training.plots import save_current_figure
from paddy.training.run import plan_run

LR_FIND_PLOT = "lr_find.png"


@dataclass(frozen=True)
class LrFindResult:
    """Suggested learning rates (by fastai's method name) and where the plot is."""

    run: RunFolder
    suggestions: dict[str, float]

    @property
    def plot(self) -> Path:
        return self.run.path / LR_FIND_PLOT


def in_one_process(entry: ModelEntry) -> ModelEntry:
    """A data-parallel entry as one process with the same per-step batch and effective batch: lr_find
    cannot run under DDP (fastai#3688), and the learning rate is the effective batch's."""
    if entry.gpus == 1:
        return entry
    if entry.accum == AUTO:
        raise PaddyError(f"lr-find of an entry with gpus {entry.gpus}: give --accum (auto is decided per process)")
    return replace(entry, gpus=1, accum=entry.accum * entry.gpus)


def find_lr(
    entry: ModelEntry,
    data: CompetitionData,
    out: Path,
    budget_mib: float,
    *,
    bad_images: BadImages = BadImages.fail,
    num_workers: int | None = None,
    bars: bool = True,
) -> LrFindResult:
    """Run lr_find on the entry's learner (its accum, `auto` resolved as train does) and save the
    loss-vs-lr plot in a run folder of its own. A loss that never gives a finite suggestion is
    refused rather than reported."""
    plan = plan_run(in_one_process(entry), data, out, budget_mib, bad_images, suffix="-lr-find")
    with plan.run.writing() as folder:
        folder.start(plan.config_json())
        learn = make_learner(plan.training, plan.data, [], num_workers, bars)
        learn.path = folder.path  # fastai keeps its temporary copy of the weights under path/models, not in cwd
        found = learn.lr_find(show_plot=True, suggest_funcs=(minimum, steep, valley, slide))
        save_current_figure(folder.path / LR_FIND_PLOT)
        suggestions = {name: float(value) for name, value in found._asdict().items()}
        if not all(math.isfinite(value) and value > 0 for value in suggestions.values()):
            raise PaddyError(f"lr_find gave no usable learning rate ({suggestions}): the loss never fell; see the plot")
        write_json(folder.path / LR_FIND_FILE, suggestions)
    return LrFindResult(folder, suggestions)
