"""Out-of-fold (OOF) predictions: an entry's fold runs put together, and an ensemble's CV score.

Each fold's run saves TTA probabilities of the images its fold held out (`oof.safetensors`, with their
labels). An entry's OOF is its folds' files together: every training image exactly once. Members are
scored together only when they were trained on the same folds, known from the folds file's digest every
run records; otherwise the report says why there is no CV score.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from paddy.core.errors import PaddyError
from paddy.ensembling.cv import DEFAULT, Scores, fit_objective, fit_weights, fold_out_scores, scores, weighted_mean
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import Predictions, load_predictions, reordered
from paddy.scoring.decisions import Decisions
from paddy.scoring.metrics import Scoring
from paddy.scoring.recorded import recorded_scoring, target_array
from paddy.settings.competition import MetricName
from paddy.settings.entry import ModelEntry


class NoCrossValidation(PaddyError):
    """Why out-of-fold predictions cannot be put together or scored (reported, not fatal)."""


class TrainedWithoutFolds(NoCrossValidation):
    """A run trained on a random split: it has no out-of-fold predictions to score, nor any to miss."""


@dataclass(frozen=True)
class OutOfFold:
    """Every training image's out-of-fold probabilities, its label and the fold that held it out."""

    probs: np.ndarray
    image_ids: tuple[str, ...]
    vocab: tuple[str, ...]
    targets: np.ndarray  # as paddy.scoring takes them: class indices, a 0/1 tag matrix, or numbers
    row_folds: np.ndarray  # 1..k
    folds_sha256: str
    scoring: Scoring = DEFAULT  # the metric, kind and decisions the runs recorded

    def scores(self, scoring: Scoring | None = None) -> Scores:
        return scores(self.probs, self.targets, scoring or self.scoring)

    def aligned(self, other: OutOfFold, name: str) -> np.ndarray:
        """`other`'s probabilities in this one's row and class order (same folds, so the same images)."""
        if set(other.image_ids) != set(self.image_ids) or set(other.vocab) != set(self.vocab):
            raise NoCrossValidation(f"{name}: its out-of-fold images or classes differ from the first member's")
        return reordered(other.probs, other.image_ids, other.vocab, self.image_ids, self.vocab)


def fold_settings(run: RunFolder) -> tuple[int, int, str]:
    """(fold, folds, folds_sha256) a run recorded, or why it has no out-of-fold predictions."""
    config = run.config()
    if config.get("fold") is None or not config.get("folds_sha256"):
        raise TrainedWithoutFolds(f"{run.name} was trained without folds (no out-of-fold predictions)")
    return config["fold"], config["folds"], config["folds_sha256"]


def checked_fold_runs(runs: list[RunFolder]) -> tuple[list[int], str]:
    """Each run's fold and the folds digest of an entry's fold runs, which must be folds 1..K of one
    folds file."""
    settings = [fold_settings(run) for run in runs]
    if len({(k, sha) for _, k, sha in settings}) > 1:
        raise NoCrossValidation(f"{runs[0].name} and the other fold runs were trained on different folds")
    _, k, sha = settings[0]
    present = sorted(fold for fold, _, _ in settings)
    if present != list(range(1, k + 1)):
        missing = sorted(set(range(1, k + 1)) - set(present))
        raise NoCrossValidation(
            f"{runs[0].name}: out-of-fold needs every fold once, but has folds {present} of {k}"
            + (f" (missing {', '.join(map(str, missing))}: train them)" if missing else "")
        )
    return [fold for fold, _, _ in settings], sha


def fold_oof(run: RunFolder) -> tuple[Predictions, list[str]]:
    """A fold run's out-of-fold predictions and the labels of their images."""
    if not run.oof_path.is_file():
        raise NoCrossValidation(f"{run.name} has no {run.oof_path.name}")
    preds = load_predictions(run.oof_path)
    targets = preds.meta.get("targets")
    if not isinstance(targets, list) or len(targets) != len(preds.image_ids):
        raise PaddyError(f"{run.oof_path}: its labels (targets) do not match its {len(preds.image_ids)} images")
    return preds, targets


def combined_oof(runs: list[RunFolder]) -> OutOfFold:
    """The out-of-fold predictions of an entry's K fold runs together, every image exactly once."""
    folds, sha = checked_fold_runs(runs)
    parts = [(fold, *fold_oof(run)) for fold, run in zip(folds, runs)]
    vocab = parts[0][1].vocab
    probs, ids, targets, row_folds = [], [], [], []
    for fold, preds, labels in parts:
        if set(preds.vocab) != set(vocab):
            raise PaddyError(f"{runs[0].name}: its fold runs predict different classes")
        probs.append(reordered(preds.probs, preds.image_ids, preds.vocab, preds.image_ids, vocab))
        ids += preds.image_ids
        targets += labels
        row_folds += [fold] * len(labels)
    if len(set(ids)) != len(ids):
        raise PaddyError(f"{runs[0].name}: an image is out-of-fold in two folds; the fold runs do not fit together")
    scoring = recorded_scoring(parts[0][1].meta)
    return OutOfFold(
        np.concatenate(probs),
        tuple(ids),
        vocab,
        target_array(scoring.kind, targets, vocab, runs[0].name),
        np.array(row_folds),
        sha,
        scoring,
    )


@dataclass(frozen=True)
class CvLine:
    """One row of a CV report: a member or a weighting of the ensemble, its weights and scores
    (None, with `why`, where there is no CV score)."""

    name: str
    scores: Scores | None
    weights: tuple[float, ...] | None = None
    why: str | None = None


def member_oofs(
    names: list[str], groups: list[list[RunFolder]]
) -> tuple[list[OutOfFold | None], list[NoCrossValidation | None]]:
    """Each member's out-of-fold predictions, or why it has none."""
    oofs: list[OutOfFold | None] = []
    reasons: list[NoCrossValidation | None] = []
    for name, runs in zip(names, groups):
        try:
            oofs.append(combined_oof(runs))
            reasons.append(None)
        except NoCrossValidation as e:
            oofs.append(None)
            reasons.append(e)
    return oofs, reasons


def shared_folds_problem(
    names: list[str], oofs: list[OutOfFold | None], reasons: list[NoCrossValidation | None]
) -> str | None:
    """Why the members' OOF cannot be scored together: one has none, or they were trained on other folds."""
    for name, oof, reason in zip(names, oofs, reasons):
        if oof is None:
            return f"member {name} has no out-of-fold predictions: {reason}"
    digests = {oof.folds_sha256 for oof in oofs if oof is not None}
    if len(digests) > 1:
        firsts = [f"{n} ({o.folds_sha256})" for n, o in zip(names, oofs) if o is not None]
        return f"members were trained on different folds: {', '.join(firsts)}"
    return None


@dataclass(frozen=True)
class CvReport:
    """Each member's CV score and the ensemble's with the weights used (and fitted ones, if asked)."""

    members: list[CvLine]
    ensemble: list[CvLine]
    fitted: tuple[float, ...] | None = None  # weights fitted on OOF, in member order
    scoring: Scoring = field(default=DEFAULT)
    # thresholds or cut-points fitted on the OOF of the ensemble as saved (fitted weights, else the given ones):
    # what its submission applies; None where its kind needs none or there is no OOF to fit them on
    decisions: Decisions | None = None
    without_folds: bool = False  # no member was trained with folds: there is nothing to cross-validate
    one_member: bool = False  # weights were asked to be fitted for a single member: there are none to fit

    @property
    def scored(self) -> bool:
        return all(line.scores is not None for line in self.ensemble)

    def fitting_does_not_help(self) -> str | None:
        """Why the fitted weights should not be trusted: their fold-out score on what they were fitted on
        (log loss for the step metrics, else the metric) is no better than the given weights' (fitting
        overfits the out-of-fold rows), or None. One member has no weights to fit."""
        if self.one_member:
            return "one member: there are no weights to fit; its own is the ensemble"
        if not self.fitted:
            return None
        given, honest = self.ensemble[0].scores, self.ensemble[-1].scores
        if fit_objective(self.scoring).metric is MetricName.log_loss:
            name, ours, theirs, sign = "log loss", honest.log_loss, given.log_loss, 1.0
        else:
            name, ours, theirs = str(self.scoring.metric), honest.value, given.value
            sign = -1.0 if self.scoring.greater_is_better else 1.0
        if sign * ours < sign * theirs:
            return None
        overfits = "fitting overfits here; consider the given weights instead"
        return f"fitted weights score {name} {ours:.4f} fold-out against {theirs:.4f} for the given weights: {overfits}"

    def saved_ensemble(self) -> dict[str, Any] | None:
        """The CV score of the ensemble as saved, for its metadata and submission message: with fitted
        weights the fold-out estimate (never the optimistic in-sample one), else the given weights'.
        The error rate is also saved as "error" (with "log_loss"), the keys older releases read."""
        line = self.ensemble[-1] if self.fitted else self.ensemble[0]
        if line.scores is None:
            return None
        metric = line.scores.metric
        saved = {"metric": str(metric), "value": line.scores.value, "greater_is_better": self.scoring.greater_is_better}
        if line.scores.log_loss is not None:
            saved["log_loss"] = line.scores.log_loss
        if metric is MetricName.error_rate:
            saved["error"] = line.scores.value
        return saved


def fitted_lines(
    oof: OutOfFold, aligned: list[np.ndarray], scoring: Scoring = DEFAULT
) -> tuple[list[CvLine], tuple[float, ...]]:
    """The ensemble with equal weights and with weights fitted on the OOF: scored in-sample (optimistic),
    and each fold scored with weights refitted on the other folds (the honest estimate)."""
    equal = tuple(1.0 for _ in aligned)
    fitted = tuple(float(w) for w in fit_weights(aligned, oof.targets, scoring=scoring))
    lines = [
        CvLine("ensemble, equal weights", scores(weighted_mean(aligned, np.array(equal)), oof.targets, scoring), equal),
        CvLine(
            "ensemble, fitted weights (in-sample: optimistic)",
            scores(weighted_mean(aligned, np.array(fitted)), oof.targets, scoring),
            fitted,
        ),
        CvLine(
            "ensemble, fitted weights (fold-out estimate)",
            fold_out_scores(aligned, oof.targets, oof.row_folds, scoring=scoring),
            why="each fold scored with weights fitted on the other folds",
        ),
    ]
    return lines, fitted


def cv_report(
    names: list[str],
    groups: list[list[RunFolder]],
    weights: tuple[float, ...],
    fit: bool = False,
    scoring: Scoring | None = None,
) -> CvReport:
    """CV score (the metric, and log loss where it applies) of every member and of the ensemble with the
    given weights (and with `fit`, with equal and fitted ones), from out-of-fold predictions. `scoring`:
    the one the members' runs recorded unless given."""
    oofs, reasons = member_oofs(names, groups)
    scoring = scoring or next((oof.scoring for oof in oofs if oof), DEFAULT)
    members = [
        CvLine(name, oof.scores(scoring) if oof else None, why=None if reason is None else str(reason))
        for name, oof, reason in zip(names, oofs, reasons)
    ]
    if problem := shared_folds_problem(names, oofs, reasons):
        without_folds = all(isinstance(reason, TrainedWithoutFolds) for reason in reasons)
        ensemble = [CvLine("ensemble", None, weights, why=problem)]
        return CvReport(members, ensemble, scoring=scoring, without_folds=without_folds)
    first = oofs[0]
    try:
        aligned = [first.aligned(oof, name) for name, oof in zip(names, oofs)]
    except NoCrossValidation as e:
        return CvReport(members, [CvLine("ensemble", None, weights, why=str(e))], scoring=scoring)
    mean = weighted_mean(aligned, np.array(weights))
    given = CvLine("ensemble, given weights", scores(mean, first.targets, scoring), weights)
    if not fit or len(aligned) == 1:
        decisions = scoring.fitted(mean, first.targets).decisions
        return CvReport(members, [given], scoring=scoring, decisions=decisions, one_member=fit)
    lines, fitted = fitted_lines(first, aligned, scoring)
    saved = weighted_mean(aligned, np.array(fitted))
    return CvReport(members, [given, *lines], fitted, scoring, scoring.fitted(saved, first.targets).decisions)


@dataclass(frozen=True)
class EntryCv:
    """A model entry with folds: its CV scores from every fold's out-of-fold predictions together
    (None, with `why`, until every fold has finished) beside the mean of its folds' own valid errors."""

    index: int
    entry: ModelEntry
    scores: Scores | None
    mean_valid_error: float | None
    why: str | None


def entry_cv(
    index: int,
    entry: ModelEntry,
    runs: list[RunFolder],
    valid_errors: list[float | None],
    scoring: Scoring | None = None,
) -> EntryCv:
    """The CV line of the entry (its fold runs' `runs`, finished or not, and their valid errors)."""
    mean_error = sum(valid_errors) / len(valid_errors) if valid_errors and None not in valid_errors else None
    finished = [run for run in runs if run.finished]
    try:
        if not finished:
            raise NoCrossValidation("no fold has finished")
        return EntryCv(index, replace(entry, fold=None), combined_oof(finished).scores(scoring), mean_error, None)
    except NoCrossValidation as e:
        return EntryCv(index, replace(entry, fold=None), None, mean_error, str(e))
