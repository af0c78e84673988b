"""fastai's learning-rate finder for a model entry, with the accumulation the real run will use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastai.vision.all import minimum, slide, steep, valley

from paddy.config import ModelEntry
from paddy.data import CompetitionData
from paddy.files import write_json
from paddy.plots import save_current_figure
from paddy.runs import CONFIG_FILE
from paddy.train import make_learner, plan_training, prepare_run_dir, unique_run_name

LR_FIND_PLOT = "lr_find.png"
LR_FIND_FILE = "lr_find.json"


@dataclass(frozen=True)
class LrFindResult:
    """Suggested learning rates (by fastai's method name) and where the plot is."""

    run_dir: Path
    suggestions: dict[str, float]

    @property
    def plot(self) -> Path:
        return self.run_dir / LR_FIND_PLOT


def find_lr(entry: ModelEntry, data: CompetitionData, out: Path, num_workers: int | None = None) -> LrFindResult:
    """Run lr_find on the entry's learner and save the loss-vs-lr plot in a run folder."""
    plan = plan_training(entry)
    run_dir = prepare_run_dir(out / f"{unique_run_name(out, entry)}-lr-find")
    write_json(run_dir / CONFIG_FILE, {**plan.to_json(), "data": str(data.root)})
    learn = make_learner(plan, data, [], num_workers)
    found = learn.lr_find(show_plot=True, suggest_funcs=(minimum, steep, valley, slide))
    save_current_figure(run_dir / LR_FIND_PLOT)
    suggestions = {name: float(value) for name, value in found._asdict().items()}
    write_json(run_dir / LR_FIND_FILE, suggestions)
    return LrFindResult(run_dir, suggestions)
