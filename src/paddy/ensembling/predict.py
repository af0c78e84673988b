"""`paddy predict`: class probabilities for any folder of images from saved models, offline and
without the training data (a code competition's hidden test set, new images, pseudo-labels).

Written in paddy's predictions format (so ensemble and submit take it) and as a readable CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from fastai.vision.all import Callback, find_bs

from paddy.core.errors import PaddyError
from paddy.core.files import atomic_write_text
from paddy.core.progress import report_progress
from paddy.data.images import image_checks_path, unreadable_images
from paddy.data.locations import images_by_name
from paddy.data.submission_format import ordinal_grades, tag_lists
from paddy.ensembling.average import (
    Member,
    average,
    choose_runs,
    folds_mean,
    member_name,
    scored_members,
    with_decisions,
)
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import Predictions, load_predictions, save_predictions
from paddy.settings.config_file import EnsembleConfig
from paddy.training.plan import check_probabilities_fit
from paddy.training.predicting import TTA_PASSES, tta_predictions
from paddy.training.saved_model import load_model, rebuild_learner


def images_to_predict(folders: list[Path], out: Path) -> list[Path]:
    """The images in and below `folders` (a test set may be split over several), in path order, every one
    readable and no name twice (names are the ids); those checked before with the same `out` are not
    decoded again (an `out` that does not exist is not made just for that record)."""
    if missing := next((folder for folder in folders if not folder.is_dir()), None):
        raise PaddyError(f"images folder not found: {missing}")
    images = sorted(images_by_name(folders).values())
    if bad := unreadable_images(images, image_checks_path(out) if out.is_dir() else None):
        raise PaddyError(f"image cannot be read: {bad[0]} ({len(bad)} in all)")
    return images


class PredictionProgress(Callback):
    """How far a run's prediction is (core.progress): the images through the model, over every pass."""

    def __init__(self, what: str, total: int):
        self.what, self.total, self.done = what, total, 0

    def after_batch(self) -> None:
        self.done = min(self.done + find_bs(self.learn.xb), self.total)
        report_progress(self.what, self.done, self.total)


def predict_run(run: RunFolder, images: list[Path], tta: bool) -> Predictions:
    """One run's probabilities for `images`: with `tta`, seeded as training's TTA was, so the run's
    own test predictions come out again."""
    card, state = load_model(run.model_path)
    check_probabilities_fit(len(images), len(card.vocab))
    learn = rebuild_learner(card, state, images, run.model_path)
    meta = {"run": run.name, "arch": card.arch, "size": card.size, "item": card.item, "tta": tta, "kind": card.kind}
    meta |= scored_as(run)
    progress = PredictionProgress(f"predicting with {run.name}", len(images) * (TTA_PASSES if tta else 1))
    with learn.no_bar(), learn.no_logging(), learn.added_cbs(progress):
        if tta:
            return tta_predictions(learn, images, tuple(card.vocab), meta, card.seed)
        probs, _ = learn.get_preds(dl=learn.dls.test_dl(images))
    return Predictions(probs.float().numpy(), tuple(p.name for p in images), tuple(card.vocab), meta)


def scored_as(run: RunFolder) -> dict[str, Any]:
    """The metric and the decisions (fitted on its validation rows) a run's own test predictions recorded, for
    a submission of new predictions to cut them as the run's was cut; {} for a run that kept no predictions."""
    if not run.predictions_path.is_file():
        return {}
    recorded = load_predictions(run.predictions_path).meta
    return {key: recorded[key] for key in ("metric", "decisions") if key in recorded}


def predict_member(runs: list[RunFolder], images: list[Path], tta: bool, weight: float | None) -> Member:
    """A member's probabilities for `images`: its run's, or the mean of an entry's fold runs'."""
    name = member_name(runs)
    preds = folds_mean(name, [predict_run(run, images, tta) for run in runs])
    return Member(name, preds, 1.0 if weight is None else weight, tuple(runs))


def chosen_members(
    runs: list[str], out: Path, config: EnsembleConfig | None, images: list[Path], tta: bool, data: Path | None
) -> list[Member]:
    """The runs named (weight 1 each; an entry's fold runs as one), each config entry's finished runs
    (trained on `data`) with its weight, or every finished run, found as `paddy ensemble` finds them,
    predicting `images`."""
    return [predict_member(group, images, tta, weight) for group, weight in choose_runs(out, runs, config, data)]


def predictions_csv(preds: Predictions) -> str:
    """image_id, what a submission would say (a classifier's most probable label, the tags over their fitted
    thresholds, the grade the fitted cut-points give), then one column per class, tag or number."""
    table = pd.DataFrame(preds.probs, columns=list(preds.vocab))
    decisions = preds.meta.get("decisions") or {}
    if preds.kind in ("single", "binary"):
        table.insert(0, "label", preds.labels())
    elif preds.kind == "multi":
        table.insert(0, "labels", tag_lists(preds.probs, preds.vocab, decisions.get("thresholds")))
    elif preds.kind == "ordinal":
        table.insert(0, "grade", ordinal_grades(preds.probs[:, 0], decisions))
    table.insert(0, "image_id", list(preds.image_ids))
    return table.to_csv(index=False)


def default_destination(out: Path, images_dirs: list[Path]) -> Path:
    """`<out>/predictions-<images folder>.safetensors` (folders joined by +), beside the runs that made it."""
    return out / f"predictions-{'+'.join(folder.name for folder in images_dirs)}.safetensors"


def predict(
    runs: list[str],
    images_dirs: list[Path],
    out: Path,
    dest: Path | None = None,
    tta: bool = True,
    config: EnsembleConfig | None = None,
    data: Path | None = None,
    replace_earlier: bool = False,
) -> tuple[Predictions, Path]:
    """Predict the images of `images_dirs` with the runs under `out` (averaged with their weights when
    several) and write `dest` (predictions format) and `dest` with a .csv suffix; nothing is written on any
    problem.
    With a config, `data` (default: the config's) picks the runs trained on it. Earlier predictions at
    `dest` are refused before anything is predicted, unless `replace_earlier`."""
    dest = dest or default_destination(out, images_dirs)
    if not replace_earlier and (earlier := [p for p in (dest, dest.with_suffix(".csv")) if p.exists()]):
        raise PaddyError(f"{earlier[0]} holds earlier predictions: give another --dest, or --force to replace them")
    images = images_to_predict(images_dirs, out)
    members = chosen_members(runs, out, config, images, tta, data)
    preds = members[0].preds if len(members) == 1 else average(members)
    preds = with_decisions(preds, scored_members(members, fit=False)[1])  # fitted on their OOF, if they have any
    save_predictions(preds, dest)
    atomic_write_text(dest.with_suffix(".csv"), predictions_csv(preds))
    return preds, dest
