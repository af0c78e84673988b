"""Averaging the TTA predictions of several runs, after checking that they line up, and
scoring the average on out-of-fold predictions where the members have them.

A member is one run, or an entry's k fold runs, whose test predictions are averaged first.
Members are joined on image_id and on class names, never on position: runs made on a
different test order or class order are realigned, and runs that cannot be realigned are
refused with the run and the problem named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from paddy.core.errors import PaddyError
from paddy.data.competition import recorded_root
from paddy.ensembling.out_of_fold import CvReport, cv_report
from paddy.runs.folder import RunFolder
from paddy.runs.lookup import Outs, RunIndex, find_run, finished_runs, fold_groups, out_folders
from paddy.runs.predictions import Predictions, load_predictions, reordered, save_predictions
from paddy.scoring.metrics import Scoring
from paddy.settings.config_file import EnsembleConfig
from paddy.settings.legacy import Recorded, upgraded

ENSEMBLE_FILE = "ensemble.safetensors"


@dataclass(frozen=True)
class Member:
    """One run's predictions (or the mean of an entry's fold runs') and its weight in the average."""

    name: str
    preds: Predictions
    weight: float
    runs: tuple[RunFolder, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The member's row in the ensemble table and metadata."""
        meta = self.preds.meta
        size = meta.get("size") or []
        return {
            "run": self.name,
            "arch": meta.get("arch"),
            "size": "x".join(str(s) for s in size),
            "item": meta.get("item"),
            "accum": meta.get("accum"),
            "folds": len(self.runs) if len(self.runs) > 1 else "-",
            "valid_error": meta.get("valid_error"),
            "weight": self.weight,
        }


Chosen = list[tuple[list[RunFolder], float | None]]  # members' runs (one, or an entry's folds), default weight


def config_data_root(config: EnsembleConfig, data: Path | None) -> Path:
    """The data a config's runs are matched on: `data`, else the config's (else Kaggle's or the demo)."""
    return recorded_root(data or config.data)


def runs_matching_config(out: Outs, config: EnsembleConfig, data: Path | None) -> Chosen:
    """For each config entry, its newest finished run (each fold's, with folds) as `paddy run` matches
    them, and its weight."""
    data_root = config_data_root(config, data)
    chosen, finished = [], RunIndex.of(out)
    for entry in config.models:
        runs, folds_sha256 = [], finished.newest_folds_sha256(entry, data_root)
        for one in entry.per_fold():
            run = finished.run_of_entry(one, data_root, folds_sha256)
            if run is None:
                raise PaddyError(
                    f"no finished run in {', '.join(map(str, out_folders(out)))} for config entry "
                    f"{one.describe()} on {data_root}; train it first"
                )
            runs.append(run)
        chosen.append((runs, entry.ensemble_weight))
    return chosen


def parse_weights(items: list[str]) -> dict[str, float]:
    """`NAME=W` pairs (NAME a run folder or an arch) into a dict; W must be >= 0."""
    weights = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not name or not 0 <= weight < math.inf:
            raise PaddyError(f"--weight {item!r} is not NAME=WEIGHT with a finite weight >= 0 (e.g. convnext_small=2)")
        weights[name] = weight
    return weights


def member_weight(names: list[str], meta: dict[str, Any], weights: dict[str, float], default: float | None) -> float:
    """The member's weight: --weight by (one of its) run names, else by arch, else the config's, else
    the one recorded."""
    if named := [weights[name] for name in names if name in weights]:
        return named[0]
    if meta.get("arch") in weights:
        return weights[meta["arch"]]
    if default is not None:
        return default
    return float(upgraded(Recorded.member, meta)["ensemble_weight"])


def check_probabilities(name: str, preds: Predictions) -> None:
    """Softmax outputs only: no NaN, nothing negative, rows summing to 1."""
    if problem := preds.output_problem():
        raise PaddyError(f"run {name}: {problem}")


def aligned_probs(reference: Predictions, name: str, other: Predictions) -> np.ndarray:
    """`other`'s probabilities reordered to `reference`'s image and class order."""
    for kind, names in (("image_id", other.image_ids), ("class", other.vocab)):
        if len(set(names)) != len(names):
            repeated = next(n for n in names if names.count(n) > 1)
            raise PaddyError(f"run {name}: {kind} {repeated} appears more than once")
    if len(other.vocab) != len(reference.vocab):
        raise PaddyError(f"run {name}: {len(other.vocab)} classes, but the first member has {len(reference.vocab)}")
    if set(other.vocab) != set(reference.vocab):
        different = sorted(set(other.vocab) ^ set(reference.vocab))
        raise PaddyError(f"run {name}: class names differ from the first member ({', '.join(different)})")
    known = set(other.image_ids)
    missing = [i for i in reference.image_ids if i not in known]
    extra = sorted(known - set(reference.image_ids))
    if missing or extra:
        example = f"missing {missing[0]}" if missing else f"extra {extra[0]}"
        raise PaddyError(f"run {name}: test images differ from the first member ({example})")
    return reordered(other.probs, other.image_ids, other.vocab, reference.image_ids, reference.vocab)


def check_same_test_set(reference: Predictions, member: Member) -> None:
    """Refuse a member that predicted another test set (runs of two competitions under one --out) with the two
    data folders, before its classes or ids say so less clearly. A presized copy's runs predict the same set."""
    theirs, ours = member.preds.meta.get("test_ids_sha256"), reference.meta.get("test_ids_sha256")
    if theirs and ours and theirs != ours:
        raise PaddyError(
            f"run {member.name} predicted the test images of {member.preds.meta.get('data')}, the first member those "
            f"of {reference.meta.get('data')}: ensemble runs of one competition (name them with --run, or give each "
            "competition its own --out)"
        )


def average(members: list[Member]) -> Predictions:
    """Weighted mean of the members' probabilities, aligned to the first member."""
    if not members:
        raise PaddyError("no finished runs to ensemble: train some first (paddy train / paddy run)")
    if not all(0 <= m.weight < math.inf for m in members):
        bad = next(m for m in members if not 0 <= m.weight < math.inf)
        raise PaddyError(f"run {bad.name}: ensemble weight {bad.weight} is not a finite number >= 0")
    total = sum(m.weight for m in members)
    if not 0 < total < math.inf:
        raise PaddyError(f"the ensemble weights add up to {total}; they must add up to a finite number above 0")
    reference = members[0].preds
    for member in members:
        check_probabilities(member.name, member.preds)
        check_same_test_set(reference, member)
        if member.preds.kind != reference.kind:
            raise PaddyError(
                f"run {member.name} predicts a {member.preds.kind} target, the first member a {reference.kind}"
            )
    mean = sum(m.weight * aligned_probs(reference, m.name, m.preds) for m in members) / total
    recorded = ("data", "test_ids_sha256", "kind", "metric", "competition", "decisions", "demo")  # what submit reads
    identity = {k: reference.meta[k] for k in recorded if k in reference.meta}
    meta = {"ensemble": True, "members": [m.describe() for m in members], **identity}
    return Predictions(mean.astype(np.float32), reference.image_ids, reference.vocab, meta)


def member_name(runs: list[RunFolder]) -> str:
    """A run's name; an entry's fold runs go by their first."""
    others = len(runs) - 1
    return runs[0].name + (f" +{others} fold{'s' * (others > 1)}" if others else "")


def folds_mean(name: str, preds: list[Predictions]) -> Predictions:
    """A member's test predictions: its run's, or the mean of its fold runs' (each checked and aligned)."""
    if len(preds) == 1:
        return preds[0]
    for one in preds:
        check_probabilities(name, one)
    mean = sum(aligned_probs(preds[0], name, one) for one in preds) / len(preds)
    errors = [one.meta.get("valid_error") for one in preds]
    meta = {
        **preds[0].meta,
        "fold": None,
        "runs": [one.meta.get("run") for one in preds],
        "valid_error": float(np.mean(errors)) if None not in errors else None,  # mean single-split error
    }
    return Predictions(mean.astype(np.float32), preds[0].image_ids, preds[0].vocab, meta)


def load_members(chosen: Chosen, weights: dict[str, float]) -> list[Member]:
    """Members from (runs, default weight) pairs, weighted as `member_weight` says."""
    members = []
    for runs, default in chosen:
        name = member_name(runs)
        preds = folds_mean(name, [load_predictions(run.predictions_path) for run in runs])
        weight = member_weight([run.name for run in runs], preds.meta, weights, default)
        members.append(Member(name, preds, weight, tuple(runs)))
    known = {run.name for m in members for run in m.runs} | {m.preds.meta.get("arch") for m in members}
    if unused := set(weights) - known:
        raise PaddyError(f"--weight names no member: {', '.join(sorted(unused))}")
    return members


def choose_runs(out: Outs, runs: list[str] | None, config: EnsembleConfig | None, data: Path | None) -> Chosen:
    """The members' folders with default weights: a config's entries, named runs, or every finished run
    (an entry's fold runs together, as one member)."""
    if config is not None:
        return runs_matching_config(out, config, data)
    folders = [find_run(run, out, finished=True) for run in runs] if runs else finished_runs(out)
    if not folders:
        first, where = out_folders(out)[0], " or ".join(map(str, out_folders(out)))
        raise PaddyError(
            f"no finished runs in {where}: train some there first "
            f"(paddy train --out {first}, or paddy run CONFIG --out {first})"
        )
    return [(group, None) for group in fold_groups(folders)]


def scored_members(members: list[Member], fit: bool, scoring: Scoring | None = None) -> tuple[list[Member], CvReport]:
    """The members' and the ensemble's CV scores; with `fit`, the members reweighted with weights
    fitted on their out-of-fold predictions (refused where there are none to fit on)."""
    names = [m.name for m in members]
    report = cv_report(names, [list(m.runs) for m in members], tuple(m.weight for m in members), fit, scoring)
    if not fit or report.one_member:
        return members, report
    if report.fitted is None:
        raise PaddyError(
            f"--fit-weights needs every member's out-of-fold predictions on the same folds: {report.ensemble[0].why}"
        )
    return [replace(m, weight=w) for m, w in zip(members, report.fitted)], report


def with_decisions(preds: Predictions, report: CvReport) -> Predictions:
    """`preds` with the thresholds or cut-points fitted on the same average of out-of-fold predictions, where
    there are any (else those its first run fitted on its validation rows)."""
    if report.decisions is None:
        return preds
    meta = {**preds.meta, "decisions": report.decisions.to_json()}
    return Predictions(preds.probs, preds.image_ids, preds.vocab, meta)


def build_ensemble(
    out: Outs,
    runs: list[str] | None,
    weights: dict[str, float],
    config: EnsembleConfig | None,
    dest: Path,
    data: Path | None = None,
    fit_weights: bool = False,
    scoring: Scoring | None = None,
) -> tuple[Predictions, list[Member], CvReport]:
    """Check, average and save the chosen runs' predictions, with the CV report of the members and the
    ensemble; nothing is written on any problem.

    With a config, `data` (default: the config's, Kaggle's or the demo) picks the runs trained on it.
    With `fit_weights`, the average uses weights fitted on out-of-fold predictions; `scoring`: the
    competition's metric, which CV reports and the weights are fitted on (default: the runs' recorded one)."""
    members = load_members(choose_runs(out, runs, config, data), weights)
    ensemble = average(members)  # every check, before any scoring
    members, report = scored_members(members, fit_weights, scoring)
    if fit_weights:
        ensemble = average(members)
    if cv := report.saved_ensemble():
        ensemble = Predictions(ensemble.probs, ensemble.image_ids, ensemble.vocab, {**ensemble.meta, "cv": cv})
    ensemble = with_decisions(ensemble, report)
    save_predictions(ensemble, dest)
    return ensemble, members, report
