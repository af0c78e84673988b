"""After the epochs: the run's pictures (the loss curves and its kind's validation pictures), and TTA
predictions seeded so that `paddy predict` with the saved model draws the same augmentations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.vision.all import (
    Callback,
    ClassificationInterpretation,
    Learner,
    set_seed,
)
from matplotlib.figure import Figure
from PIL import Image

from paddy.core.decisions import grades, labels_on
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import Predictions
from paddy.scoring.decisions import Decisions
from paddy.settings.competition import TargetKind
from paddy.training.callbacks import callback_of
from paddy.training.plots import (
    confusion_figure,
    label_f1_figure,
    loss_figure,
    roc_figure,
    run_title,
    save_figure,
    scatter_figure,
    top_losses_figure,
)
from paddy.training.targets import TwoTargetLoss, single_target
from paddy.training.trackers import recorded_steps
from paddy.training.transforms import test_loader, tta_chunk

TTA_PASSES = 5  # fastai's learn.tta: four augmented passes, then a plain one

LOSS_PLOT = "loss.png"  # every run


CONFUSION_PLOT = "confusion.png"  # single-label and binary: of the classes; ordinal: of the grades


TOP_LOSSES_PLOT = "top_losses.png"  # single-label and binary


ROC_PLOT = "roc.png"  # binary


F1_PLOT = "f1_per_label.png"  # multi-label


SCATTER_PLOT = "predicted_vs_true.png"  # regression


TOP_LOSSES = 9  # images in top_losses.png: a 3 x 3 grid
THUMBNAIL = (256, 256)  # each drawn at most this size: a 4K image would make a 4K-pixel PNG


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
    keeper = callback_of(learn, KeepValidation)
    if reuse and keeper is not None and (kept := keeper.kept(len(learn.dls.valid.dataset))) is not None:
        return kept
    outputs, targets = learn.get_preds(ds_idx=1)
    actual = targets[0] if isinstance(targets, (list, tuple)) else targets
    return outputs.float().numpy(), actual.numpy()


def item_losses(loss_func: Any, probs: np.ndarray, targets: np.ndarray) -> torch.Tensor:
    """Each validation image's loss under the learner's `loss_func` unreduced, from the kept probabilities:
    their logs are logits of the same softmax (log_softmax(log p) = log p), so no image is predicted again.
    A two-target model's kept outputs are the label's, so its loss is the label's cross-entropy."""
    if isinstance(loss_func, TwoTargetLoss):
        loss_func = single_target(loss_func.label_smoothing)[0]
    logits = torch.as_tensor(probs, dtype=torch.float32).clamp_min(1e-30).log()  # a softmax that underflowed to 0
    reduction, loss_func.reduction = loss_func.reduction, "none"  # as fastai's Learner.loss_not_reduced does
    try:
        return loss_func(logits, torch.as_tensor(targets)).float()
    finally:
        loss_func.reduction = reduction


def thumbnail(path: Path) -> np.ndarray:
    """The image file as RGB pixels, at most THUMBNAIL in size."""
    with Image.open(path) as image:
        image.draft("RGB", THUMBNAIL)
        small = image.convert("RGB")
        small.thumbnail(THUMBNAIL)
        return np.asarray(small)


def top_losses_of(learn: Learner, probs: np.ndarray, targets: np.ndarray, vocab: tuple[str, ...], title: str) -> Figure:
    """top_losses.png's figure: fastai's ClassificationInterpretation, given the losses of the kept validation
    outputs, picks the TOP_LOSSES validation items with the highest; their files are decoded again only to
    be drawn."""
    losses = item_losses(learn.loss_func, probs, targets)
    interpretation = ClassificationInterpretation(learn, learn.dls.valid, losses)
    worst, index, items = interpretation.top_losses(min(TOP_LOSSES, len(losses)), items=True)
    index = index.numpy()
    guesses = probs[index].argmax(axis=1)
    return top_losses_figure(
        [thumbnail(Path(item)) for item in items],
        [vocab[t] for t in targets[index]],
        [vocab[g] for g in guesses],
        probs[index, guesses],
        worst.numpy(),
        title,
    )


def validation_figures(
    learn: Learner,
    kind: TargetKind,
    classes: tuple[str, ...],
    valid: tuple[np.ndarray, np.ndarray],
    decisions: Decisions | None,
    title: str,
) -> dict[str, Figure]:
    """The pictures of the validation outputs that fit the target kind, by file name: the classes' confusion
    matrix and top losses (binary: and the ROC curve, where both classes were validated); each tag's F1 at
    the fitted thresholds; the grades' confusion matrix after the fitted cut-points; a regression's
    predictions against the truth."""
    outputs, targets = valid
    if kind in (TargetKind.single, TargetKind.binary):
        figures = {
            CONFUSION_PLOT: confusion_figure(targets, outputs.argmax(axis=1), list(classes), title),
            TOP_LOSSES_PLOT: top_losses_of(learn, outputs, targets, classes, title),
        }
        if kind is TargetKind.binary and len(np.unique(targets)) == 2:
            figures[ROC_PLOT] = roc_figure(outputs[:, 1], targets, classes[1], title)
        return figures
    if kind is TargetKind.multi:
        thresholds = decisions.thresholds  # fit_decisions fits them for every multi-label run
        on = labels_on(outputs, thresholds)
        return {F1_PLOT: label_f1_figure(on, targets.astype(int), list(classes), thresholds, title)}
    if kind is TargetKind.ordinal:
        fitted = decisions  # and cut-points for every ordinal one
        low, n_grades = fitted.lowest_grade, len(fitted.cutpoints) + 1
        predicted = grades(outputs, fitted.cutpoints, low) - low
        names = [str(low + g) for g in range(n_grades)]
        actual = np.rint(targets.ravel()).astype(int) - low
        subtitle = f"{title}\ngrades after the fitted cut-points"
        return {CONFUSION_PLOT: confusion_figure(actual, predicted, names, subtitle)}
    return {SCATTER_PLOT: scatter_figure(outputs, targets, classes[0], title)}


def save_run_plots(
    learn: Learner,
    run: RunFolder,
    classes: tuple[str, ...],
    kind: TargetKind,
    valid: tuple[np.ndarray, np.ndarray],
    score: float,
    decisions: Decisions | None = None,
) -> list[Path]:
    """Loss curves and the validation pictures of the target kind (from `valid`, the validation outputs and
    targets, and the `decisions` fitted on them), beside the history, all titled with the run, its arch and
    size and the label's validation metric `score` (the kept epoch's); the files written."""
    history, config, metric = run.history(), run.config(), learn.metrics[0].name
    size = "x".join(map(str, config["size"]))
    title = run_title(run.name, config["arch"], size, metric, score)
    figures = {LOSS_PLOT: loss_figure(history, recorded_steps(learn), title)}
    figures |= validation_figures(learn, kind, classes, valid, decisions, title)
    return [save_figure(figure, run.path / name) for name, figure in figures.items()]


def tta_predictions(
    learn: Learner, images: list[Path], vocab: tuple[str, ...], meta: dict[str, Any], seed: int = 0
) -> Predictions:
    """Test-time-augmented probabilities of `images` (the test set, or a fold's held-out images), in
    their order; seeded, so `paddy predict` with the saved model draws the same augmentations. Each
    image is decoded once: the passes draw their crops and augmentations on the decoded pixels, a chunk
    of images at a time (tta_chunk), the k-th chunk seeded with `seed + k`."""
    step = tta_chunk(learn.dls) or len(images)
    probs = []
    for index, start in enumerate(range(0, len(images), step)):
        test_dl = test_loader(learn.dls, images[start : start + step])  # before seeding: it draws from `random`
        set_seed(seed + index)
        chunk_probs, _ = learn.tta(dl=test_dl, n=TTA_PASSES - 1)
        probs.append(chunk_probs.float().numpy())
    return Predictions(np.concatenate(probs), tuple(p.name for p in images), vocab, meta)
