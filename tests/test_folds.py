"""k-fold CV: the folds file, fold runs with out-of-fold predictions, CV scores and fitted weights."""

from __future__ import annotations

import math
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import KAGGLE_GPU_MIB, tiny_entry, train_in_process, trained
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.cli.ensemble import NO_CROSS_VALIDATION
from paddy.core.errors import PaddyError
from paddy.core.files import read_json, write_json
from paddy.data.competition import CompetitionData, resolve_data
from paddy.data.folds import FOLDS_FOLDER, NAMED_UP_TO, FoldInput, draw_folds, folds_for, folds_of
from paddy.ensembling.average import build_ensemble
from paddy.ensembling.out_of_fold import combined_oof
from paddy.orchestration.config_runs import RunStatus, entries_cv, run_config
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import load_predictions
from paddy.settings.competition import TargetKind
from paddy.settings.config_file import load_config
from paddy.settings.entry import ModelEntry
from paddy.training.run import plan_runs

K = 3


def train_folds(entry: ModelEntry, data, out):
    return [train_in_process(plan) for plan in plan_runs(entry, data, out, KAGGLE_GPU_MIB)]


@dataclass(frozen=True)
class FoldRuns:
    """`paddy train --folds 3` on the demo dataset: its output folder, runs (fold order), data, output."""

    out: Path
    runs: list[RunFolder]
    data: CompetitionData
    stdout: str


@pytest.fixture(scope="module")
def fold_runs(tmp_path_factory) -> FoldRuns:
    """The command a competitor types, with no data: the demo dataset, 3 folds (one short epoch each)."""
    out = tmp_path_factory.mktemp("fold-runs") / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PADDY_DEMO_DIR", str(out.parent / "demo"))
        command = ["train", "--out", str(out), "--arch", "test_resnet", "--size", "32", "--epochs", "1"]
        command += ["--folds", str(K), "--seed", "0"]
        result = CliRunner().invoke(app, command, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        data = resolve_data(None)
    runs = sorted((RunFolder(p.parent) for p in out.glob("*/oof.safetensors")), key=lambda r: r.config()["fold"])
    return FoldRuns(out, runs, data, result.stdout)


def oof_by_hand(runs):
    """Every fold's OOF rows, read straight from the files: ids, probabilities, labels."""
    parts = [load_predictions(run.oof_path) for run in runs]
    ids = [i for p in parts for i in p.image_ids]
    probs = np.concatenate([p.probs for p in parts])
    labels = [t for p in parts for t in p.meta["targets"]]
    return ids, probs, labels, parts[0].vocab


def test_folds_are_stratified_and_drawn_once(tiny_data, tmp_path):
    folds = folds_for(tmp_path, tiny_data, K, seed=0)
    per_class_and_fold = Counter((p.parent.name, folds.fold_of[p.name]) for p in tiny_data.train_images)
    assert set(per_class_and_fold.values()) == {2}, "6 images per class: 2 in each of 3 folds"
    again = folds_for(tmp_path, tiny_data, K, seed=0)
    assert again.sha256 == folds.sha256 and again.fold_of == folds.fold_of
    assert [p.name for p in (tmp_path / FOLDS_FOLDER).iterdir()] == [folds.path.name], "one file, reused"
    elsewhere = folds_for(tmp_path / "other-out", tiny_data, K, seed=0)
    assert elsewhere.path.read_bytes() == folds.path.read_bytes(), "the same draw in any output folder"
    assert folds_for(tmp_path, tiny_data, K, seed=1).fold_of != folds.fold_of


def test_a_folds_file_of_other_data_is_refused(tiny_data, tmp_path):
    folds = folds_for(tmp_path, tiny_data, K, seed=0)
    text = folds.path.read_text()
    folds.path.write_text(text.replace("blast", "hispa", 1))
    with pytest.raises(PaddyError, match="lists other training images or labels; delete it"):
        folds_for(tmp_path, tiny_data, K, seed=0)
    folds.path.write_text(text.replace(",3\n", ",4\n"))
    with pytest.raises(PaddyError, match="is not a 3-fold assignment"):
        folds_for(tmp_path, tiny_data, K, seed=0)


def test_a_class_rarer_than_k_is_kept_with_a_warning_not_refused(tiny_data, tmp_path):
    folds = folds_for(tmp_path, tiny_data, 7, seed=0)  # 6 images per class, 7 folds
    assert sorted(folds.fold_of) == sorted(p.name for p in tiny_data.train_images), "every image in one fold"
    assert set(folds.fold_of.values()) == set(range(1, 8))
    assert len(tiny_data.classes) == 10 > NAMED_UP_TO, "more short classes than are named: one line"
    assert folds.warnings == (
        "10 classes are not held out in all 7 folds (e.g. class bacterial_leaf_blight has only 6 images: it is held "
        "out in 6 of 7 folds)",
    )
    assert folds_for(tmp_path, tiny_data, 7, seed=0).warnings == folds.warnings, "a reused file warns too"


def fold_input(labels, kind=TargetKind.single, **columns) -> FoldInput:
    """Folds inputs for `labels`, the images named 0.jpg, 1.jpg, ..."""
    return FoldInput(tuple(f"{i}.jpg" for i in range(len(labels))), tuple(labels), kind, **columns)


def held_out_sets(fold, k=5):
    return [np.flatnonzero(fold == f) for f in range(1, k + 1)]


@pytest.mark.parametrize("kind", [TargetKind.single, TargetKind.multi, TargetKind.regression])
def test_a_group_never_spans_two_folds(kind):
    rng = np.random.default_rng(3)
    groups = [f"patient{g}" for g in rng.integers(0, 25, 90)]  # 25 patients, about 3.6 images each
    texts = {TargetKind.single: ["a", "b", "c"], TargetKind.multi: ["x", "x y", "y"], TargetKind.regression: ["1", "5"]}
    labels = [texts[kind][i % len(texts[kind])] for i in range(90)]
    fold, _ = draw_folds(fold_input(labels, kind, groups=tuple(groups)), 5, seed=0)
    assert all(len(set(fold[[g == name for g in groups]])) == 1 for name in set(groups)), "one fold per group"
    assert set(fold) == {1, 2, 3, 4, 5}
    if kind is TargetKind.single:  # stratified as well as grouped: every class in every fold
        assert all({labels[i] for i in index} == {"a", "b", "c"} for index in held_out_sets(fold))
    other, _ = draw_folds(fold_input(labels, kind, groups=tuple(groups)), 5, seed=1)
    assert not np.array_equal(fold, other), "the fold seed decides the groups' folds"


def test_fewer_groups_or_images_than_folds_are_refused():
    with pytest.raises(PaddyError, match="folds 5: only 3 groups; every fold needs a group of its own"):
        draw_folds(fold_input(["a", "b"] * 6, groups=("p", "q", "r") * 4), 5, seed=0)
    with pytest.raises(PaddyError, match="folds 5: only 4 training images"):
        draw_folds(fold_input(["a", "b"] * 2), 5, seed=0)


def test_multi_label_folds_hold_out_every_tag_and_name_a_rare_one(tmp_path):
    combos = ["healthy", "scab", "rust", "scab frog_eye", "rust frog_eye", "frog_eye", ""]  # "" : no tag at all
    labels = [combos[i % len(combos)] for i in range(70)] + ["complex"] * 3
    inputs = fold_input(labels, TargetKind.multi)
    fold, notes = draw_folds(inputs, 5, seed=0)
    for index in held_out_sets(fold):
        held_tags = {tag for i in index for tag in labels[i].split()}
        assert held_tags >= {"healthy", "scab", "rust", "frog_eye"}, "every common tag in every fold"
    assert np.ptp(np.bincount(fold)[1:]) <= 3, "folds of about the same size"
    assert notes == ["tag complex has only 3 images: it is held out in 3 of 5 folds"]
    folds = folds_of(tmp_path, inputs, 5, seed=0)  # the file keeps "" (no tag) and tag lists as they are
    assert [folds.fold_of[i] for i in inputs.ids] == fold.tolist() and list(folds.warnings) == notes
    assert folds_of(tmp_path, inputs, 5, seed=0).sha256 == folds.sha256
    with pytest.raises(PaddyError, match="no training image has a tag"):
        draw_folds(fold_input([""] * 10, TargetKind.multi), 5, seed=0)


def test_user_folds_are_taken_as_they_are_zero_based_shifted_up(tmp_path):
    labels = ["a", "b", "c"] * 4
    zero_based = tuple(i % 3 for i in range(12))
    fold, _ = draw_folds(fold_input(labels, user_folds=zero_based), 3, seed=0)
    assert fold.tolist() == [f + 1 for f in zero_based]
    one_based, _ = draw_folds(fold_input(labels, user_folds=tuple(f + 1 for f in zero_based)), 3, seed=7)
    assert one_based.tolist() == fold.tolist(), "1..K kept, and no seed draws them"
    with pytest.raises(PaddyError, match=r"the fold column numbers 4 folds \(0..3\) but folds = 3; set folds = 4"):
        draw_folds(fold_input(labels, user_folds=tuple(i % 4 for i in range(12))), 3, seed=0)
    with pytest.raises(PaddyError, match=r"the fold column's values \(1, 2, 5\) are not folds 1..3 or 0..2"):
        draw_folds(fold_input(labels, user_folds=(1, 2, 5) * 4), 3, seed=0)
    grouped = folds_of(tmp_path, fold_input(labels, user_folds=zero_based), 3, seed=0)
    assert grouped.path != folds_of(tmp_path, fold_input(labels), 3, seed=0).path, "user folds: their own file"


def test_regression_folds_are_stratified_on_quantile_bins_of_the_target():
    values = np.random.default_rng(0).lognormal(3, 1, 100).round(1)  # skewed, as Pawpularity-like targets are
    fold, notes = draw_folds(fold_input([str(v) for v in values], TargetKind.regression), 5, seed=0)
    assert notes == [] and np.bincount(fold)[1:].tolist() == [20] * 5
    top_ten = np.argsort(values)[-10:]  # the highest bin (10 bins of 10): two in each fold
    assert np.bincount(fold[top_ten], minlength=6)[1:].tolist() == [2] * 5
    means = [values[index].mean() for index in held_out_sets(fold)]
    assert max(abs(m - values.mean()) for m in means) < 0.15 * values.mean()
    with pytest.raises(PaddyError, match="regression target 'tall' is not a number"):
        draw_folds(fold_input(["1", "tall"] * 5, TargetKind.regression), 2, seed=0)


@pytest.mark.parametrize("kind", list(TargetKind))
def test_folds_are_the_same_for_a_seed_and_differ_for_another(kind):
    labels = {"multi": ["a", "a b", "b", "c"], "regression": ["1.5", "2", "7", "9.25"]}.get(kind, ["0", "1"])
    inputs = fold_input([labels[i % len(labels)] for i in range(40)], kind)
    first, second, other = (draw_folds(inputs, 4, seed)[0] for seed in (0, 0, 1))
    assert np.array_equal(first, second) and not np.array_equal(first, other)


def test_a_rare_grade_is_named_as_a_grade():
    labels = ["0", "1", "2"] * 10 + ["4", "4"]
    fold, notes = draw_folds(fold_input(labels, TargetKind.ordinal), 5, seed=0)
    assert notes == ["grade 4 has only 2 images: it is held out in 2 of 5 folds"]
    assert len(set(fold[-2:])) == 2, "the two go to different folds"


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"folds": 1}, "folds: 1 must be at least 2"),
        ({"fold": 2}, "fold: needs folds"),
        ({"folds": 3, "fold": 4}, "fold: 4 is not one of 1..3"),
        ({"folds": 3, "fold": 0}, "fold: 0 is not one of 1..3"),
        ({"folds": "3"}, "folds: '3' is not a whole number"),
    ],
)
def test_bad_fold_settings_are_refused(settings, problem, tmp_path):
    lines = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in settings.items())
    (tmp_path / "c.toml").write_text(f'[[models]]\narch = "resnet18"\n{lines}\n')
    with pytest.raises(PaddyError, match=problem):
        load_config(tmp_path / "c.toml")


def test_an_entry_with_folds_trains_one_run_per_fold():
    entry = tiny_entry(folds=K)
    assert [e.fold for e in entry.per_fold()] == [1, 2, 3]
    assert entry.per_fold()[1].describe() == "test_resnet-32x32-squish-fold2of3"
    assert tiny_entry(folds=K, fold=2).per_fold() == [tiny_entry(folds=K, fold=2)]
    assert tiny_entry().per_fold() == [tiny_entry()]


def test_paddy_train_with_folds_prints_each_fold_and_the_cv_table(fold_runs):
    assert [f"fold{f}of3" in fold_runs.stdout for f in (1, 2, 3)] == [True] * 3
    lines = fold_runs.stdout.splitlines()
    starts = [next(i for i, line in enumerate(lines) if line.startswith(f"fold {f} of 3 (")) for f in (1, 2, 3)]
    ends = [next(i for i, line in enumerate(lines) if f"fold{f}of3 accum=1: valid" in line) for f in (1, 2, 3)]
    assert starts[0] < ends[0] < starts[1] < ends[1] < starts[2] < ends[2], "each fold announced, then its outcome"
    assert re.fullmatch(r"fold 2 of 3 \(\d+s elapsed, about \d+s left\)", lines[starts[1]]), lines[starts[1]]
    error, log_loss = cv_by_hand(fold_runs.runs)
    table = fold_runs.stdout[fold_runs.stdout.index("cross-validation (out-of-fold TTA)") :]
    assert f"{error:.4f}" in table and f"{log_loss:.4f}" in table, "the printed CV is the hand computation"


def test_out_of_fold_predictions_cover_every_training_image_once(fold_runs):
    data = fold_runs.data
    folds = folds_for(fold_runs.out, data, K, seed=0)
    assert [run.config()["fold"] for run in fold_runs.runs] == [1, 2, 3]
    for fold, run in enumerate(fold_runs.runs, start=1):
        config = run.config()
        assert (config["folds"], config["folds_sha256"]) == (K, folds.sha256)
        oof = load_predictions(run.oof_path)
        assert set(oof.image_ids) == folds.held_out(fold), "a run's OOF is exactly its held-out fold"
        assert oof.meta["folds_sha256"] == load_predictions(run.predictions_path).meta["folds_sha256"]
    ids, _, labels, _ = oof_by_hand(fold_runs.runs)
    assert len(ids) == len(data.train_images) == 200
    assert sorted(ids) == sorted(p.name for p in data.train_images), "every training image exactly once"
    assert dict(zip(ids, labels)) == {p.name: p.parent.name for p in data.train_images}


def cv_by_hand(runs) -> tuple[float, float]:
    """Error and log loss of every OOF row, computed row by row from the files."""
    ids, probs, labels, vocab = oof_by_hand(runs)
    target = [vocab.index(label) for label in labels]
    error = sum(int(np.argmax(row)) != t for row, t in zip(probs, target)) / len(ids)
    log_loss = -sum(math.log(max(float(row[t]), 1e-15)) for row, t in zip(probs, target)) / len(ids)
    return error, log_loss


def test_cv_error_and_log_loss_equal_a_hand_computation(fold_runs):
    error, log_loss = cv_by_hand(fold_runs.runs)
    scores = combined_oof(fold_runs.runs).scores()
    assert scores.error == pytest.approx(error, abs=1e-9)
    assert scores.log_loss == pytest.approx(log_loss, rel=1e-5)


def test_an_entrys_test_prediction_is_the_mean_of_its_folds(fold_runs, tmp_path):
    dest = tmp_path / "e.safetensors"
    _, members, report = build_ensemble(fold_runs.out, None, {}, None, dest)
    assert len(members) == 1 and list(members[0].runs) == fold_runs.runs
    folds = [load_predictions(run.predictions_path).probs for run in fold_runs.runs]
    np.testing.assert_allclose(load_predictions(dest).probs, np.mean(folds, axis=0), atol=1e-6)
    assert report.members[0].scores == combined_oof(fold_runs.runs).scores()


def test_a_run_outside_the_folds_is_reported_not_scored(fold_runs, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(fold_runs.out, out)
    trained(tiny_entry(bs=32), fold_runs.data, out, num_workers=0)  # a random split, on the same data
    _, members, report = build_ensemble(out, None, {}, None, out / "e.safetensors")
    assert len(members) == 2, "the test predictions are still ensembled"
    scored = {len(member.runs): line.scores is not None for member, line in zip(members, report.members)}
    assert scored == {K: True, 1: False}
    assert report.ensemble[0].scores is None and not report.without_folds, "one member has folds: a table says why"
    assert "has no out-of-fold predictions" in report.ensemble[0].why
    assert "trained without folds" in report.ensemble[0].why
    with pytest.raises(PaddyError, match="--fit-weights needs every member's out-of-fold predictions"):
        build_ensemble(out, None, {}, None, out / "e2.safetensors", fit_weights=True)
    assert not (out / "e2.safetensors").exists()


def test_an_ensemble_of_runs_without_folds_says_so_in_one_line_not_a_table(finished_run, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(finished_run.run.path, out / finished_run.run.name)
    result = CliRunner().invoke(app, ["ensemble", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert NO_CROSS_VALIDATION in result.stdout
    assert "cross-validation (out-of-fold TTA)" not in result.stdout and "ensemble predictions:" in result.stdout


def test_members_on_other_folds_are_reported_not_scored(fold_runs, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(fold_runs.out, out)
    for run in fold_runs.runs:  # the same entry with other settings, on folds drawn with another seed
        other = out / f"other-{run.name}"
        shutil.copytree(run.path, other)
        config = read_json(other / "config.json")
        write_json(other / "config.json", {**config, "item": "pad", "fold_seed": 1, "folds_sha256": "0123456789abcdef"})
    _, members, report = build_ensemble(out, None, {}, None, out / "e.safetensors")
    assert len(members) == 2 and all(line.scores is not None for line in report.members)
    assert report.ensemble[0].scores is None and "trained on different folds" in report.ensemble[0].why


def test_a_missing_fold_is_named(fold_runs, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(fold_runs.out, out)
    second = fold_runs.runs[1].name
    (out / second / "predictions.safetensors").unlink()
    _, members, report = build_ensemble(out, None, {}, None, out / "e.safetensors")
    assert len(members[0].runs) == 2
    assert "has folds [1, 3] of 3 (missing 2: train them)" in report.members[0].why


def test_paddy_run_trains_every_fold_shares_the_folds_and_resumes_per_fold(tiny_data, tmp_path):
    config = tmp_path / "folds.toml"
    config.write_text(
        "[defaults]\nbs = 8\nsize = 32\nepochs = 1\npretrained = false\nfinetune = false\nseed = 0\nfolds = 2\n"
        '[[models]]\narch = "test_resnet"\n[[models]]\narch = "test_resnet"\nitem = "pad"\nmixup = 0.4\n'
    )
    out = tmp_path / "runs"
    outcomes = run_config(load_config(config), tiny_data, out, KAGGLE_GPU_MIB, train_fn=train_in_process)
    assert [(o.index, o.entry.fold, o.status) for o in outcomes] == [
        (i, f, RunStatus.trained) for i in (0, 1) for f in (1, 2)
    ]
    folds_files = list((out / FOLDS_FOLDER).iterdir())
    assert len(folds_files) == 1, "both entries hold out the same folds"
    assert {o.run.config()["folds_sha256"] for o in outcomes} == {folds_for(out, tiny_data, 2, 0).sha256}
    drawn = folds_files[0].read_bytes()
    lines = entries_cv(outcomes)
    assert [line.index for line in lines] == [0, 1] and all(line.scores is not None for line in lines)
    (outcomes[2].run.predictions_path).unlink()  # entry 1's fold 1 did not finish
    again = run_config(load_config(config), tiny_data, out, KAGGLE_GPU_MIB, train_fn=train_in_process)
    assert [o.status for o in again] == [RunStatus.skipped, RunStatus.skipped, RunStatus.trained, RunStatus.skipped]
    assert folds_files[0].read_bytes() == drawn, "a re-run holds out the same images"
    _, members, report = build_ensemble(
        out, None, {}, load_config(config), out / "e.safetensors", tiny_data.root, fit_weights=True
    )
    assert [len(m.runs) for m in members] == [2, 2]
    assert report.scored and report.fitted is not None and sum(report.fitted) == pytest.approx(1)
    assert [m.weight for m in members] == list(report.fitted), "the saved ensemble uses the fitted weights"
    names = [line.name for line in report.ensemble]
    assert names[-1] == "ensemble, fitted weights (fold-out estimate)"
    honest, given = report.ensemble[-1].scores.log_loss, report.ensemble[0].scores.log_loss
    assert (report.fitting_does_not_help() is None) == (honest < given), "a warning exactly when fitting is worse"
    saved = load_predictions(out / "e.safetensors").meta["cv"]
    assert saved["log_loss"] == report.ensemble[-1].scores.log_loss, "the honest estimate, never the in-sample one"


def test_a_two_target_fold_keeps_label_probabilities_out_of_fold(tiny_data, tmp_path):
    (result,) = train_folds(tiny_entry(folds=K, fold=2, multi_target="variety"), tiny_data, tmp_path)
    oof = load_predictions(result.run.oof_path)
    assert oof.probs.shape == (len(tiny_data.train_images) // K, len(tiny_data.classes))
    assert set(oof.meta["targets"]) <= set(tiny_data.classes)


def test_predict_with_an_entrys_fold_runs_averages_them(fold_runs, tmp_path):
    from paddy.ensembling.predict import predict

    names = [run.name for run in fold_runs.runs]
    images = fold_runs.data.root / "test_images"
    preds, _ = predict(names, [images], fold_runs.out, tmp_path / "p.safetensors")
    folds = [load_predictions(run.predictions_path).probs for run in fold_runs.runs]
    np.testing.assert_allclose(preds.probs, np.mean(folds, axis=0), rtol=0, atol=1e-5)
    assert preds.meta["runs"] == names


def test_fitting_the_weights_of_one_member_is_said_to_change_nothing(fold_runs):
    """One entry's fold runs, --fit-weights: four ensemble lines of the same score and the warning 'fitting
    overfits here' before; now its one line and why nothing was fitted."""
    from paddy.ensembling.out_of_fold import cv_report

    report = cv_report(["entry 0"], [fold_runs.runs], (1.0,), fit=True)
    assert report.one_member and report.fitted is None and len(report.ensemble) == 1 and report.scored
    assert report.fitting_does_not_help() == "one member: there are no weights to fit; its own is the ensemble"
    assert not cv_report(["entry 0"], [fold_runs.runs], (1.0,)).one_member, "nothing was asked to be fitted"
