"""Any Kaggle image competition: the five layouts of the issue read, trained and submitted as the real
competitions want them, and their bad inputs refused in one line."""

from __future__ import annotations

import re
import shutil
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import without_pictures
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.data.competition import check_layout
from paddy.data.demo_layouts import layout_spec, make_layout
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import load_predictions
from paddy.settings.competition import CompetitionSpec, MetricName, TargetKind

TINY_FLAGS = ["--arch", "test_resnet", "--size", "32", "--bs", "8", "--epochs", "1", "--no-pretrained", "--seed", "0"]

# layout: (kind, metric, submission shape, ids carry the extension)
FIVE = {
    "cassava": (TargetKind.single, MetricName.accuracy, "label", True),
    "dog-breed": (TargetKind.single, MetricName.log_loss, "class_probabilities", False),
    "plant-pathology-2021": (TargetKind.multi, MetricName.f1_samples, "label_list", True),
    "histopathologic": (TargetKind.binary, MetricName.roc_auc, "positive_probability", False),
    "aptos": (TargetKind.ordinal, MetricName.qwk, "number", False),
}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> Path:
    """The five demo competitions, each in a folder named after its competition (as Kaggle's downloads are)."""
    root = tmp_path_factory.mktemp("competitions")
    for name in FIVE:
        make_layout(name, root / str(layout_spec(name).slug), n_train=40, n_test=8, size=32)
    return root


def folder(layouts: Path, name: str) -> Path:
    return layouts / str(layout_spec(name).slug)


@pytest.mark.parametrize("name", FIVE)
def test_each_layout_is_read_as_its_competition_scores_it(layouts, name):
    kind, metric, shape, with_extension = FIVE[name]
    data = check_layout(folder(layouts, name))
    expected = layout_spec(name)
    assert (data.kind, data.metric) == (kind, metric)
    assert data.spec.labels_file == expected.labels_file and data.spec.id_column == expected.id_column
    assert (str(data.sample_format.shape), data.sample_format.ids_with_extension) == (shape, with_extension)
    assert len(data.train_images) == 40 and len(data.test_images) == 8


def test_without_the_competitions_name_the_labels_decide_and_flags_override(layouts, tmp_path):
    """A folder paddy does not know: integer grades are classes until the metric says they are grades."""
    copy = shutil.copytree(folder(layouts, "aptos"), tmp_path / "my-eyes")
    assert check_layout(copy).kind is TargetKind.single
    assert check_layout(copy, CompetitionSpec(metric=MetricName.qwk)).kind is TargetKind.ordinal
    assert check_layout(copy, CompetitionSpec(kind=TargetKind.regression)).metric is MetricName.rmse


def test_targets_of_each_kind_are_read_from_the_labels_file(layouts):
    multi = check_layout(folder(layouts, "plant-pathology-2021"))
    table = pd.read_csv(folder(layouts, "plant-pathology-2021") / "train.csv")
    first = table.iloc[0]
    assert multi.target_of()[first["image"]] == tuple(sorted(first["labels"].split()))
    aptos = check_layout(folder(layouts, "aptos"))
    grades = pd.read_csv(folder(layouts, "aptos") / "train.csv")
    assert aptos.target_of()[f"{grades.iloc[0]['id_code']}.png"] == float(grades.iloc[0]["diagnosis"])


def broken(layouts: Path, tmp_path: Path, name: str, change) -> Path:
    """A copy of a layout with one file changed by `change(root)`."""
    root = shutil.copytree(folder(layouts, name), tmp_path / str(layout_spec(name).slug))
    change(root)
    return root


def edit_csv(path: Path, edit) -> None:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(table)
    table.to_csv(path, index=False)


@pytest.mark.parametrize(
    "name, change, spec, fragment",
    [
        ("cassava", lambda r: None, CompetitionSpec(id_column="image"), "train.csv has no column 'image'"),
        (
            "cassava",
            lambda r: edit_csv(r / "train.csv", lambda t: t.__setitem__("image_id", "x" + t["image_id"])),
            CompetitionSpec(),
            "train.csv column 'image_id' against train_images/: 40 of 40 ids match no image (e.g. 'x",
        ),
        (
            "histopathologic",
            lambda r: edit_csv(r / "train_labels.csv", lambda t: t.loc.__setitem__((3, "label"), "")),
            CompetitionSpec(),
            "train_labels.csv column 'label' has 1 empty values (first on line 5)",
        ),
        ("aptos", lambda r: None, CompetitionSpec(metric=MetricName.roc_auc), "metric roc_auc does not fit a ordinal"),
        (
            "aptos",
            lambda r: edit_csv(r / "train.csv", lambda t: t.loc.__setitem__((2, "diagnosis"), "2.5")),
            CompetitionSpec(),
            "train.csv column 'diagnosis' must hold integer grades for a ordinal target (e.g. '2.5')",
        ),
        (
            "dog-breed",
            lambda r: edit_csv(r / "sample_submission.csv", lambda t: t.__setitem__("id", "zz" + t["id"])),
            CompetitionSpec(),
            "sample_submission.csv does not match test/: 8 of 8 ids match no image (e.g. 'zz",
        ),
    ],
    ids=[
        "missing-id-column",
        "ids-match-no-image",
        "empty-label",
        "metric-not-for-kind",
        "grade-not-an-integer",
        "sample-ids-neither-way",
    ],
)
def test_bad_competition_input_is_one_line_naming_file_column_and_example(
    layouts, tmp_path, name, change, spec, fragment
):
    root = broken(layouts, tmp_path, name, change)
    with pytest.raises(PaddyError) as raised:
        check_layout(root, spec)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("command", ["train", "run"])
def test_a_metric_flag_that_does_not_fit_the_kind_is_one_error_line(layouts, tmp_path, command):
    config = tmp_path / "one.toml"
    config.write_text('[[models]]\narch = "test_resnet"\n')
    args = TINY_FLAGS if command == "train" else [str(config)]
    result = CliRunner().invoke(
        app, [command, *args, "--data", str(folder(layouts, "histopathologic")), "--metric", "rmse"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "metric rmse does not fit a binary target" in result.stderr


def test_a_gpu_pools_workers_get_the_competition_flags_back():
    from paddy.cli.options import COMPETITION_OPTIONS, competition_args, competition_flags

    given = {"competition": "aptos2019-blindness-detection", "label_column": ["a", "b"], "metric": MetricName.qwk}
    described = competition_flags({**dict.fromkeys(COMPETITION_OPTIONS), **given})
    assert described == {"slug": given["competition"], "label_columns": ["a", "b"], "metric": MetricName.qwk}
    assert competition_args(described) == [
        "--competition", "aptos2019-blindness-detection", "--metric", "qwk",
        "--label-column", "a", "--label-column", "b",
    ]  # fmt: skip


def submitted(layouts: Path, name: str, out: Path) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    """`paddy train --data DIR` alone, then `paddy submit --dry-run`: the CSV, the sample, the predictions."""
    runner, root = CliRunner(), folder(layouts, name)
    trained = runner.invoke(app, ["train", "--data", str(root), "--out", str(out / "runs"), *TINY_FLAGS])
    assert trained.exit_code == 0, trained.output
    (preds_path,) = (out / "runs").glob("*/predictions.safetensors")
    sent = runner.invoke(
        app, ["submit", "--predictions", str(preds_path), "--dry-run", "--submissions", str(out / "s")]
    )
    assert sent.exit_code == 0, sent.output
    (csv,) = (out / "s").glob("submission-*.csv")
    read = {"dtype": str, "keep_default_na": False}
    return pd.read_csv(csv, **read), pd.read_csv(root / "sample_submission.csv", **read), load_predictions(preds_path)


# the pictures of a run of each kind: its loss, then the validation pictures that fit the kind
PICTURES = {
    TargetKind.single: {"loss.png", "confusion.png", "top_losses.png"},
    TargetKind.binary: {"loss.png", "confusion.png", "top_losses.png", "roc.png"},
    TargetKind.multi: {"loss.png", "f1_per_label.png"},
    TargetKind.ordinal: {"loss.png", "confusion.png"},
    TargetKind.regression: {"loss.png", "predicted_vs_true.png"},
}


def shown_pictures(runs: Path) -> set[str]:
    """The pictures `paddy show` lists for the one run under `runs`, each a PNG in its folder."""
    (run,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    shown = CliRunner().invoke(app, ["show", run.name, "--out", str(runs)])
    assert shown.exit_code == 0, shown.output
    paths = [Path(p) for p in re.findall(r"picture: (.+?\.png)", shown.stdout.replace("\n", ""))]
    assert all(p.parent == run and p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    return {p.name for p in paths}


def values_fit(name: str, column: pd.Series, vocab: tuple[str, ...]) -> bool:
    """Whether a submission column holds what the competition wants."""
    if name in ("dog-breed", "histopathologic"):
        numbers = column.astype(float)
        return bool(((numbers >= 0) & (numbers <= 1)).all())
    if name == "aptos":
        return bool(column.str.fullmatch(r"[0-4]").all())
    if name == "plant-pathology-2021":
        return all(tags and set(tags.split()) <= set(vocab) for tags in column)
    return set(column) <= set(vocab)


@pytest.mark.slow
@pytest.mark.pictures
@pytest.mark.parametrize("name", FIVE)
def test_train_alone_reports_the_metric_and_submits_the_samples_format(layouts, tmp_path, name):
    submission, sample, preds = submitted(layouts, name, tmp_path)
    kind, metric, _, _ = FIVE[name]
    assert preds.meta["kind"] == kind and preds.meta["metric"] == metric
    history = pd.read_csv(next((tmp_path / "runs").glob("*/history.csv")))
    assert str(metric) in history.columns  # each epoch's line and history.csv carry the competition's metric
    assert list(submission.columns) == list(sample.columns)
    assert list(submission.iloc[:, 0]) == list(sample.iloc[:, 0])  # ids as the sample writes them, its order
    assert all(values_fit(name, submission[c], preds.vocab) for c in submission.columns[1:])
    assert shown_pictures(tmp_path / "runs") == PICTURES[kind]
    if name == "dog-breed":
        assert np.allclose(submission.iloc[:, 1:].astype(float).sum(axis=1), 1, atol=1e-4)


FOLDS_CONFIG = """
data = "{data}"
[competition]
slug = "{slug}"
[defaults]
arch = "test_resnet"
size = 32
bs = 8
epochs = 1
pretrained = false
finetune = false
folds = 2
[[models]]
seed = 0
[[models]]
seed = 1
item = "crop"
"""


@dataclass(frozen=True)
class Folded:
    """One competition trained with `paddy run` on 2 folds x 2 entries and ensembled with --fit-weights."""

    name: str
    data: Path
    config: Path
    out: Path
    fitted_output: str

    def entries(self) -> list[list[RunFolder]]:
        """Each config entry's fold runs (seed 0's, then seed 1's)."""
        runs = [RunFolder(p.parent) for p in sorted(self.out.glob("*/oof.safetensors"))]
        return [[run for run in runs if run.config()["seed"] == seed] for seed in (0, 1)]


@pytest.fixture(scope="module", params=list(FIVE))
def folded(request, layouts, tmp_path_factory) -> Folded:
    """`paddy run CONFIG` whose `data` is the competition's files under a name paddy does not know and whose
    [competition] table names it (so the slug, kind and metric come from the config), then `paddy ensemble
    --config CONFIG --fit-weights`: trained once per competition for every test below."""
    name = request.param
    tmp = tmp_path_factory.mktemp(f"folds-{name}")
    data = shutil.copytree(folder(layouts, name), tmp / f"my-{name}")
    config = tmp / "folds.toml"
    config.write_text(FOLDS_CONFIG.format(data=data, slug=layout_spec(name).slug))
    out = tmp / "runs"
    with pytest.MonkeyPatch.context() as monkeypatch:  # the tests of these runs read no picture
        without_pictures(monkeypatch)
        ran = CliRunner().invoke(app, ["run", str(config), "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    assert f"scored on {FIVE[name][1]}" in ran.stdout  # the description table: the [competition] table's metric
    assert f"valid {FIVE[name][1]}" in ran.stdout and "valid_error" not in ran.stdout  # the run and CV tables
    fitted = CliRunner().invoke(app, ["ensemble", "--config", str(config), "--out", str(out), "--fit-weights"])
    assert fitted.exit_code == 0, fitted.output
    return Folded(name, data, config, out, fitted.stdout)


def by_hand(name: str, probs: np.ndarray, texts: list[str], vocab: tuple[str, ...]) -> float:
    """The competition's metric of out-of-fold outputs, computed here from the files, not by paddy; the
    thresholds and cut-points fitted (by paddy's fitters) on every out-of-fold row, not one fold's."""
    from sklearn.metrics import cohen_kappa_score, f1_score, roc_auc_score

    from paddy.scoring.decisions import fit_cutpoints, fit_thresholds

    if name == "cassava":
        return float(np.mean(probs.argmax(axis=1) == [vocab.index(t) for t in texts]))
    if name == "dog-breed":
        return float(-np.mean(np.log(np.clip(probs[np.arange(len(texts)), [vocab.index(t) for t in texts]], 1e-15, 1))))
    if name == "histopathologic":
        return roc_auc_score([vocab.index(t) for t in texts], probs[:, 1])
    if name == "plant-pathology-2021":
        truth = np.array([[tag in t.split() for tag in vocab] for t in texts], dtype=int)
        on = probs >= np.array(fit_thresholds(probs, truth))
        on[np.arange(len(on)), probs.argmax(axis=1)] |= ~on.any(axis=1)  # at least the most probable tag
        return f1_score(truth, on, average="samples", zero_division=0)
    truth = np.array([int(float(t)) for t in texts])
    cuts = fit_cutpoints(probs[:, 0], truth, (int(truth.min()), int(truth.max())))
    grades = truth.min() + np.searchsorted(cuts, probs[:, 0], side="right")
    return cohen_kappa_score(truth, grades, weights="quadratic")


def oof_files(runs: list[RunFolder]) -> tuple[np.ndarray, list[str], list[str], tuple[str, ...]]:
    """An entry's out-of-fold probabilities, labels and image ids as its fold runs' files hold them."""
    oofs = [load_predictions(run.oof_path) for run in runs]
    assert all(o.vocab == oofs[0].vocab for o in oofs)
    ids = [i for o in oofs for i in o.image_ids]
    return np.concatenate([o.probs for o in oofs]), [t for o in oofs for t in o.meta["targets"]], ids, oofs[0].vocab


@pytest.mark.slow
def test_every_table_heads_its_scores_with_the_competitions_metric(folded):
    """A 'valid_error' column held accuracy (higher is better) and a log-loss competition's CV table had its
    score twice ('CV log_loss' and 'CV log loss')."""
    metric = str(FIVE[folded.name][1])
    assert f"valid {metric}" in folded.fitted_output and "valid_error" not in folded.fitted_output
    assert ("CV log loss" in folded.fitted_output) == (metric != "log_loss")
    listed = CliRunner().invoke(app, ["runs", "--out", str(folded.out), "--sort", "valid"])
    assert f"valid {metric}" in listed.stdout and "valid_error" not in listed.stdout


@pytest.mark.slow
def test_folds_cv_equals_a_hand_computation_from_the_oof_files(folded):
    """Each entry's CV of its folds' OOF files together, on the competition's metric (accuracy, log loss of
    class probabilities, ROC AUC of a probability, mean F1 of thresholded tags, kappa of cut grades)."""
    from paddy.ensembling.out_of_fold import combined_oof

    for runs in folded.entries():
        probs, texts, ids, vocab = oof_files(runs)
        assert len(set(ids)) == len(ids) == 40  # every training image once
        scored = combined_oof(runs).scores()
        assert scored.metric == FIVE[folded.name][1]
        assert scored.value == pytest.approx(by_hand(folded.name, probs, texts, vocab), abs=1e-6)


@pytest.mark.slow
def test_fit_weights_on_the_competitions_metric_and_decisions_fitted_on_the_ensembles_oof(folded):
    """The ensemble's CV is on the competition's metric; its thresholds (cut-points), which the submission
    applies, are fitted on the out-of-fold mean of the members with the fitted weights, not taken from a fold."""
    from paddy.scoring.decisions import fit_decisions
    from paddy.scoring.recorded import target_array

    kind, metric = FIVE[folded.name][:2]
    assert str(metric) in folded.fitted_output
    ensemble = load_predictions(folded.out / "ensemble.safetensors")
    assert ensemble.meta["cv"]["metric"] == metric and ensemble.meta["kind"] == kind
    weights = [member["weight"] for member in ensemble.meta["members"]]
    assert sum(weights) == pytest.approx(1)  # fitted: shares of the greedy rounds
    (probs, texts, ids, vocab), (other, _, other_ids, _) = (oof_files(runs) for runs in folded.entries())
    other = other[[other_ids.index(i) for i in ids]]  # the same images (same folds), in the first's order
    mean = (weights[0] * probs + weights[1] * other) / sum(weights)
    expected = fit_decisions(kind, mean, target_array(kind, texts, vocab, "oof"))
    assert ensemble.meta.get("decisions") == (expected.to_json() if expected else None)


@pytest.mark.slow
def test_predict_with_the_saved_models_gives_the_runs_own_predictions(folded):
    (run, *_), _ = folded.entries()
    (test_folder,) = check_layout(folded.data, layout_spec(folded.name)).spec.test_folder
    args = ["predict", run.name, "--images", str(folded.data / test_folder), "--out", str(folded.out)]
    predicted = CliRunner().invoke(app, args)
    assert predicted.exit_code == 0, predicted.output
    again = load_predictions(folded.out / f"predictions-{test_folder}.safetensors")
    own = load_predictions(run.predictions_path)
    assert np.allclose(again.probs, own.probs, atol=1e-5) and again.image_ids == own.image_ids
    assert again.meta.get("decisions") == own.meta.get("decisions")  # cut as the run's own were


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.mark.slow
def test_the_inference_notebook_script_submits_what_the_ensemble_submits(folded, tmp_path, monkeypatch):
    """The script `paddy kaggle push --inference --config` sends, run in a simulated /kaggle tree (the
    competition and the models mounted as Kaggle mounts them; installing from the libs dataset is left to
    test_kaggle_offline): its submission.csv is the one `paddy ensemble --config` + `submit` make at home,
    in the competition's test folder and format."""
    from paddy.kaggle.kernels import KaggleGpu, inference_kernel, script_text, stage_models

    kernel, chosen = inference_kernel([], folded.config, None, [folded.out], "alice", None, KaggleGpu.t4x2, None)
    slug = str(layout_spec(folded.name).slug)
    assert kernel.settings["competition"] == slug and kernel.metadata["competition_sources"] == [slug]
    assert kernel.settings["test_folders"] == list(check_layout(folded.data, layout_spec(folded.name)).spec.test_folder)
    kaggle = tmp_path / "kaggle"
    (kaggle / "input" / "paddy-libs").mkdir(parents=True)
    (kaggle / "input" / "paddy-libs" / "paddy_trainer-0.0.0-py3-none-any.whl").touch()
    (kaggle / "input" / slug).symlink_to(folded.data)
    stage_models(chosen, kaggle / "input" / "models")
    (kaggle / "working").mkdir()
    script = types.ModuleType("paddy_kernel")
    exec(compile(script_text(kernel.settings), "paddy_kernel.py", "exec"), script.__dict__)
    monkeypatch.setattr(script, "install_paddy", lambda libs: None)  # paddy is this process's
    monkeypatch.setenv("PADDY_KAGGLE_ROOT", str(kaggle))
    script.main()

    at_home = tmp_path / "home"
    runner = CliRunner()
    made = runner.invoke(app, ["ensemble", "--config", str(folded.config), "--out", str(folded.out),
                                "--dest", str(at_home / "ensemble.safetensors")])  # fmt: skip
    assert made.exit_code == 0, made.output
    sent = runner.invoke(app, ["submit", "--dry-run", "--predictions", str(at_home / "ensemble.safetensors"),
                                "--submissions", str(at_home)])  # fmt: skip
    assert sent.exit_code == 0, sent.output
    (expected,) = at_home.glob("submission-*.csv")
    notebook, home = read_csv(kaggle / "working" / "submission.csv"), read_csv(expected)
    assert list(notebook.columns) == list(home.columns) and notebook.iloc[:, 0].tolist() == home.iloc[:, 0].tolist()
    if folded.name in ("dog-breed", "histopathologic"):  # probabilities: TTA again, to float precision
        assert np.allclose(notebook.iloc[:, 1:].astype(float), home.iloc[:, 1:].astype(float), atol=1e-4)
    else:  # labels, tag lists and grades, cut as the ensemble's (fitted on its OOF)
        assert notebook.equals(home)


@pytest.mark.slow
@pytest.mark.pictures
def test_a_regression_head_has_one_output_and_predicts_numbers_in_its_range(tmp_path):
    from paddy.training.saved_model import load_model

    root = make_layout("petfinder", tmp_path / "petfinder-pawpularity-score", n_train=40, n_test=8, size=32)
    result = CliRunner().invoke(app, ["train", "--data", str(root), "--out", str(tmp_path / "runs"), *TINY_FLAGS])
    assert result.exit_code == 0, result.output
    assert "valid rmse" in result.stdout
    (run,) = (tmp_path / "runs").glob("*/model.safetensors")
    card, _ = load_model(run)
    targets = pd.read_csv(root / "train.csv")["Pawpularity"]
    low, high = targets.min(), targets.max()
    margin = 0.05 * (high - low)
    assert card.n_out == 1 and card.y_range == pytest.approx([low - margin, high + margin])
    preds = load_predictions(run.with_name("predictions.safetensors"))
    assert preds.probs.shape == (8, 1) and preds.vocab == ("Pawpularity",)
    assert ((preds.probs >= low - margin) & (preds.probs <= high + margin)).all()
    assert shown_pictures(tmp_path / "runs") == PICTURES[TargetKind.regression]


def test_paddy_demo_makes_a_competition_under_its_slug_and_shows_how_it_reads(tmp_path):
    result = CliRunner().invoke(app, ["demo", "histopathologic", "--dest", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "histopathologic-cancer-detection"
    assert (root / "train_labels.csv").is_file() and "binary, scored on roc_auc" in result.stdout
    assert f"Train with: paddy train --data {root}" in result.stdout.replace("\n", "")


def test_the_group_column_keeps_each_patient_in_one_fold(tmp_path):
    from paddy.data.folds import folds_for

    root = make_layout("ranzcr", tmp_path / "ranzcr-clip-catheter-line-classification", n_train=60, size=16)
    data = check_layout(root, CompetitionSpec(group_column="PatientID"))
    folds = folds_for(tmp_path / "out", data, 3, seed=0)
    patients = pd.read_csv(root / "train.csv")
    fold_of_row = [folds.fold_of[f"{uid}.jpg"] for uid in patients["StudyInstanceUID"]]
    per_patient = pd.Series(fold_of_row).groupby(patients["PatientID"]).nunique()
    assert (per_patient == 1).all() and set(fold_of_row) == {1, 2, 3}
    no_groups = folds_for(tmp_path / "out", check_layout(root), 3, seed=0)
    assert no_groups.path != folds.path  # drawn without the groups: another file


@pytest.mark.slow
@pytest.mark.parametrize("metric, beta", [("f1_samples", 1.0), ("f2_samples", 2.0)])
def test_multi_label_thresholds_are_fitted_on_the_validation_rows_only(layouts, tmp_path, monkeypatch, metric, beta):
    import paddy.scoring.decisions

    seen: list[tuple[int, float]] = []
    real = paddy.scoring.decisions.fit_thresholds

    def spy(probs, targets, beta=1.0):
        seen.append((len(probs), beta))
        return real(probs, targets, beta)

    monkeypatch.setattr(paddy.scoring.decisions, "fit_thresholds", spy)
    root = folder(layouts, "plant-pathology-2021")
    command = ["train", "--data", str(root), "--out", str(tmp_path / "runs"), "--metric", metric, *TINY_FLAGS]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert seen == [(8, beta)]  # valid_pct 0.2 of the 40 training images, never the 32 it trained on; for F-beta
    (preds,) = (tmp_path / "runs").glob("*/predictions.safetensors")
    assert len(load_predictions(preds).meta["decisions"]["thresholds"]) == 4
