"""After the epochs: the run's loss and confusion pictures, and TTA predictions seeded so that
`paddy predict` with the saved model draws the same augmentations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.vision.all import (
    Callback,
    Learner,
    set_seed,
)

from paddy.runs.folder import RunFolder
from paddy.runs.predictions import Predictions
from paddy.settings.competition import TargetKind
from paddy.training.plots import confusion_figure, loss_figure, run_title, save_figure
from paddy.training.trackers import recorded_steps
from paddy.training.transforms import test_items

LOSS_PLOT = "loss.png"


CONFUSION_PLOT = "confusion.png"


class KeepValidation(Callback):
    """Keeps the last validation pass's outputs (after the loss's activation) and the label's targets, so the
    confusion matrix and the fitted decisions need no second pass over the validation set. With EMA the
    pass validated the average, which the model ends with; the last pass is at the last size. A run that
    keeps an earlier epoch validates its kept weights again instead."""

    def validating(self) -> bool:
        """On the validation set (not TTA's test or out-of-fold images, which have no targets)."""
        return not self.training and self.learn.dl is self.learn.dls.valid

    def before_validate(self) -> None:
        if self.validating():
            self.outputs: list[torch.Tensor] = []
            self.targets: list[torch.Tensor] = []

    def after_batch(self) -> None:
        if self.validating() and hasattr(self, "outputs"):
            self.outputs.append(self.learn.loss_func.activation(self.learn.pred).detach().float().cpu())
            self.targets.append(self.learn.yb[0].detach().cpu())

    def kept(self, n_images: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The kept outputs and targets, if they cover all `n_images` validation images (a data-parallel
        process sees only its share; a resumed run with only TTA left validated nothing)."""
        if not getattr(self, "outputs", None) or sum(len(o) for o in self.outputs) != n_images:
            return None
        return torch.cat(self.outputs).numpy(), torch.cat(self.targets).numpy()


def validation_outputs(learn: Learner, reuse: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The validation set's outputs (after the loss's activation) and the label's targets, for the confusion
    matrix and the fitted decisions: those the last epoch made (with `reuse`: the model holds the weights it
    validated), else predicted once now."""
    keeper = next((cb for cb in learn.cbs if isinstance(cb, KeepValidation)), None)
    if reuse and keeper is not None and (kept := keeper.kept(len(learn.dls.valid.dataset))) is not None:
        return kept
    outputs, targets = learn.get_preds(ds_idx=1)
    actual = targets[0] if isinstance(targets, (list, tuple)) else targets
    return outputs.float().numpy(), actual.numpy()


def fitted_decisions(kind: TargetKind, outputs: np.ndarray, targets: np.ndarray) -> dict[str, Any] | None:
    """Multi-label thresholds or ordinal cut-points fitted on the validation rows (held out from training),
    as the predictions meta key "decisions"; None for a kind that needs none."""
    from paddy.scoring.decisions import Decisions, fit_cutpoints, fit_thresholds

    if kind is TargetKind.multi:
        return Decisions(thresholds=fit_thresholds(outputs, targets.astype(int))).to_json()
    if kind is TargetKind.ordinal:
        grades = (int(targets.min()), int(targets.max()))
        cutpoints = fit_cutpoints(outputs.ravel(), targets.ravel(), grades)
        return Decisions(cutpoints=cutpoints, lowest_grade=grades[0]).to_json()
    return None


def save_run_plots(
    learn: Learner,
    run: RunFolder,
    classes: tuple[str, ...],
    kind: TargetKind,
    valid: tuple[np.ndarray, np.ndarray],
    score: float,
) -> None:
    """Loss curves and, for classes, the validation confusion matrix of the label (from `valid`, the
    validation outputs and targets), beside the history, both titled with the run, its arch and size and
    the label's validation metric `score` (the kept epoch's)."""
    history, config, metric = run.history(), run.config(), learn.metrics[0].name
    size = "x".join(map(str, config["size"]))
    title = run_title(run.name, config["arch"], size, metric, score)
    save_figure(loss_figure(history, recorded_steps(learn), title), run.path / LOSS_PLOT)
    if kind not in (TargetKind.single, TargetKind.binary):
        return
    outputs, targets = valid
    figure = confusion_figure(targets, outputs.argmax(axis=1), list(classes), title)
    save_figure(figure, run.path / CONFUSION_PLOT)


def tta_predictions(
    learn: Learner, images: list[Path], vocab: tuple[str, ...], meta: dict[str, Any], seed: int = 0
) -> Predictions:
    """Test-time-augmented probabilities of `images` (the test set, or a fold's held-out images), in
    their order; seeded, so `paddy predict` with the saved model draws the same augmentations. Each
    image is decoded once: the passes draw their crops and augmentations on the decoded pixels."""
    test_dl = learn.dls.test_dl(test_items(learn.dls, images))  # before seeding: making a loader draws from `random`
    set_seed(seed)
    probs, _ = learn.tta(dl=test_dl)
    return Predictions(probs.float().numpy(), tuple(p.name for p in images), vocab, meta)
