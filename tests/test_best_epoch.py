"""The best epoch and early stopping (`keep`, `patience`): a run whose last epoch is worse keeps its best
one (the weights that epoch validated, the weight average's with EMA) for the saved model, the pictures
and the predictions, says so in result.json, resumes knowing it, and stops after `patience` epochs
without a better metric, whichever way the metric is better.

The last epoch is made worse honestly: its learning rate is blown up (1.0 instead of the one-cycle's
annealed rate), so it trains the model into a worse one."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import KAGGLE_GPU_MIB, tiny_entry, trained, with_callbacks
from fastai.vision.all import Callback, ParamScheduler
from test_checkpoints import StopAt, only_run
from typer.testing import CliRunner

import paddy.training.run
from paddy.cli.app import app
from paddy.cli.output import ordinal
from paddy.core.errors import PaddyError
from paddy.ensembling.predict import predict_run
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import load_predictions
from paddy.settings.checks import apply_overrides, entry_problems
from paddy.settings.competition import MetricName, greater_is_better
from paddy.settings.entry import ModelEntry
from paddy.settings.legacy import Recorded, upgraded
from paddy.training.callbacks import callback_of
from paddy.training.checkpoint import HistoryWriter, load_checkpoint
from paddy.training.run import resume
from paddy.training.saved_model import load_model
from paddy.training.schedule import training_phases

BLOWN_LR = 1.0


class BlownUp(Callback):
    """The learning rate of every training batch from epoch `first` (a history row, counted across fits and
    a resume, from 0) is BLOWN_LR, set after fastai's scheduler set its own."""

    order = ParamScheduler.order + 1

    def __init__(self, first: int):
        self.first = first

    def before_batch(self):
        if not self.training:
            return
        rows = callback_of(self.learn, HistoryWriter).records.rows
        if len(rows) >= self.first:
            self.opt.set_hyper("lr", BLOWN_LR)


MAKE_LEARNER = paddy.training.run.make_learner


def with_only(monkeypatch, *callbacks) -> None:
    """Every learner train() makes gets these callbacks (and none given before, as with_callbacks adds)."""
    monkeypatch.setattr(paddy.training.run, "make_learner", MAKE_LEARNER)
    with_callbacks(monkeypatch, *callbacks)


class Validated(Callback):
    """Every epoch's validated weights (after WeightAverage swapped the average in), the training weights
    (after it swapped them back) and the validation outputs, by epoch counted across fits; only while
    fitting (not the passes after training)."""

    order = 30  # after WeightAverage (MixedPrecision.order + 10) in before_validate

    def __init__(self):
        self.evaluated, self.training_weights, self.outputs = [], [], []
        self.fitting = self.trained = False

    def before_fit(self):
        self.fitting = True

    def after_fit(self):
        self.fitting = False

    def before_train(self):
        self.trained = True

    def before_validate(self):
        if self.fitting and self.trained:
            self.evaluated.append({k: v.detach().clone() for k, v in self.learn.model.state_dict().items()})
            self.outputs.append([])

    def after_batch(self):
        if self.fitting and self.trained and not self.training:
            self.outputs[-1].append(self.learn.loss_func.activation(self.learn.pred).detach().clone())

    def after_epoch(self):
        if self.fitting and self.trained:
            self.training_weights.append({k: v.detach().clone() for k, v in self.learn.model.state_dict().items()})
            self.outputs[-1] = torch.cat(self.outputs[-1]).numpy()
        self.trained = False


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].float(), b[k].float()) for k in a)


def saved_weights(run: RunFolder) -> dict:
    return load_model(run.model_path)[1]


def best_of(values: pd.Series, greater: bool) -> int:
    """The first best row, as fastai's tracker counts an improvement (strictly better)."""
    return int(values.to_numpy().argmax() if greater else values.to_numpy().argmin())


def on_log_loss(data):
    """The data scored on log loss: a blown-up epoch's confident mistakes make it surely the worse one, where
    its error rate on ten barely learnt classes is a coin toss (and differs from one CPU to another)."""
    return replace(data, spec=replace(data.spec, metric=MetricName.log_loss))


def worse_last_run(entry, data, out, monkeypatch, **options):
    """The run with its last epoch blown up, its Validated record, and the plotted validation outputs."""
    validated, plotted = Validated(), []
    real_plots = paddy.training.run.save_run_plots
    monkeypatch.setattr(paddy.training.run, "save_run_plots", lambda *a: (plotted.append(a[4][0]), real_plots(*a))[1])
    epochs = sum(phase.epochs for phase in training_phases(entry))
    with_only(monkeypatch, BlownUp(epochs - 1), validated)
    return trained(entry, data, out, num_workers=0, pictures=True, **options), validated, plotted


@pytest.mark.parametrize("ema", [None, 0.9], ids=["plain", "ema"])
def test_a_run_whose_last_epoch_is_worse_keeps_its_best(tiny_data, tmp_path, monkeypatch, ema):
    entry = tiny_entry(epochs=3, finetune=False, ema=ema)
    result, validated, plotted = worse_last_run(entry, on_log_loss(tiny_data), tmp_path, monkeypatch)
    history = result.history
    best = best_of(history.log_loss, greater=False)
    assert best < len(history) - 1, "the blown-up last epoch is not the best"
    assert result.kept.epoch == best and not result.kept.stopped_early
    recorded = json.loads((result.run.path / "result.json").read_text())
    assert recorded["keep"] == "best" and recorded["kept_epoch"] == best and recorded["epochs_run"] == 3
    assert recorded["valid_error"] == pytest.approx(history.log_loss.iloc[best]) == result.valid_error
    assert load_predictions(result.predictions_path).meta["valid_error"] == pytest.approx(result.valid_error)
    saved = saved_weights(result.run)
    assert same_weights(saved, validated.evaluated[best]), "the saved model is the best epoch's validated one"
    assert not same_weights(saved, validated.evaluated[-1])
    if ema:  # the validated weights were the average's, not those the optimizer trained
        assert not same_weights(saved, validated.training_weights[best])
    (outputs,) = plotted  # the confusion matrix's pass: the kept weights validated again, as that epoch did
    np.testing.assert_allclose(outputs, validated.outputs[best], atol=1e-5)
    assert not np.allclose(outputs, validated.outputs[-1], atol=1e-3)


@pytest.mark.parametrize(
    "settings", [{"sizes": "16,32"}, {"folds": 2, "fold": 1}], ids=["progressive-resizing", "fold"]
)
def test_an_earlier_kept_epoch_is_what_the_run_saves_and_predicts_with(tiny_data, tmp_path, monkeypatch, settings):
    """With progressive resizing (its first epoch at the last size, the third, kept: the only one there
    before the blown-up last) and in a fold's run (whose out-of-fold predictions the CV and fitted weights
    use): the saved model is the kept epoch's, and the run's test and out-of-fold predictions are what that
    model predicts."""
    entry = tiny_entry(epochs=4, finetune=False, **settings)
    result, validated, _ = worse_last_run(entry, on_log_loss(tiny_data), tmp_path, monkeypatch)
    best = 2 if "sizes" in settings else best_of(result.history.log_loss, greater=False)
    assert result.kept.epoch == best < len(result.history) - 1
    assert result.valid_error == pytest.approx(result.history.log_loss.iloc[best])
    assert same_weights(saved_weights(result.run), validated.evaluated[best])
    own = [load_predictions(result.predictions_path)]
    if result.run.oof_path.is_file():
        own.append(load_predictions(result.run.oof_path))
    for preds in own:
        paths = {p.name: p for p in [*tiny_data.test_images, *tiny_data.train_images]}
        again = predict_run(result.run, [paths[i] for i in preds.image_ids], tta=True)
        np.testing.assert_allclose(again.probs, preds.probs, atol=1e-5)
    assert len(own) == (2 if "folds" in settings else 1)


def test_with_progressive_resizing_only_epochs_at_the_last_size_are_compared(tiny_data, tmp_path, monkeypatch):
    """Every epoch from the second on blown up: the first, at the smaller size, scores best of all, and with
    patience 1 the run would stop after the second. Neither happens: the kept epoch is the better of the two
    at the last size, its score the run's, and every epoch trains."""
    entry = tiny_entry(epochs=4, finetune=False, sizes="16,32", patience=1)
    with_only(monkeypatch, BlownUp(1))
    result = trained(entry, on_log_loss(tiny_data), tmp_path, num_workers=0)
    history = result.history
    assert list(history["size"]) == ["16x16", "16x16", "32x32", "32x32"]
    assert best_of(history.log_loss, greater=False) == 0, "the blown-up epochs did not make the first the best"
    assert len(history) == 4 and not result.kept.stopped_early
    assert result.kept.epoch == 2 + best_of(history.log_loss.iloc[2:], greater=False)
    assert result.valid_error == pytest.approx(history.log_loss.iloc[result.kept.epoch])


def test_a_run_whose_last_epochs_are_no_better_did_not_stop_early(tiny_data, tmp_path, monkeypatch):
    """Patience runs out with the last epoch: no epoch was left untrained, so the run did not stop early."""
    entry = tiny_entry(epochs=2, finetune=False, patience=1)
    with_only(monkeypatch, BlownUp(1))
    result = trained(entry, on_log_loss(tiny_data), tmp_path, num_workers=0)
    assert len(result.history) == 2 and result.kept.epoch == 0
    assert (
        not result.kept.stopped_early
        and json.loads((result.run.path / "result.json").read_text())["stopped_early"] is False
    )


def test_keep_last_keeps_the_last_epoch(tiny_data, tmp_path, monkeypatch):
    entry = tiny_entry(epochs=3, finetune=False, keep="last")
    result, validated, plotted = worse_last_run(entry, tiny_data, tmp_path, monkeypatch)
    assert result.kept.epoch == 2 and result.valid_error == pytest.approx(result.history.error_rate.iloc[-1])
    assert json.loads((result.run.path / "result.json").read_text())["keep"] == "last"
    assert same_weights(saved_weights(result.run), validated.evaluated[-1])
    np.testing.assert_allclose(plotted[0], validated.outputs[-1], atol=1e-5)


def test_early_stopping_ends_the_run_after_patience_epochs_without_improvement(tiny_data, tmp_path, monkeypatch):
    entry = tiny_entry(epochs=6, finetune=False, patience=2)
    validated = Validated()
    with_only(monkeypatch, BlownUp(2), validated)  # from the third epoch on, every epoch is blown up
    result = trained(entry, on_log_loss(tiny_data), tmp_path, num_workers=0, keep_checkpoint=True)
    history = result.history
    best = best_of(history.log_loss, greater=False)
    assert len(history) == best + 1 + 2 < 6, "stopped after 2 epochs that were no better"
    assert (history.log_loss.iloc[best + 1 :] >= history.log_loss.iloc[best]).all()
    recorded = json.loads((result.run.path / "result.json").read_text())
    assert recorded["stopped_early"] is True and recorded["epochs_run"] == len(history)
    assert recorded["kept_epoch"] == best and same_weights(saved_weights(result.run), validated.evaluated[best])
    checkpoint = load_checkpoint(result.run.checkpoint_path).states["best"]
    assert checkpoint["epoch"] == best and checkpoint["value"] == pytest.approx(history.log_loss.iloc[best])
    assert same_weights(checkpoint["weights"], validated.evaluated[best]), "an earlier best is saved apart"


def test_a_resumed_run_knows_its_best_so_far(tiny_data, tmp_path, monkeypatch):
    """Interrupted after two epochs, before the blown-up third: the resumed run keeps the same best epoch
    with the same weights as the uninterrupted one."""
    entry = tiny_entry(epochs=3, finetune=False)
    full, _, _ = worse_last_run(entry, tiny_data, tmp_path / "full", monkeypatch)
    with_only(monkeypatch, BlownUp(2), StopAt(1, 2))
    with pytest.raises(KeyboardInterrupt):
        trained(entry, tiny_data, tmp_path / "cut", num_workers=0)
    cut = only_run(tmp_path / "cut")
    best_so_far = load_checkpoint(cut.checkpoint_path).states["best"]
    assert best_so_far["epoch"] == full.kept.epoch
    with_only(monkeypatch, BlownUp(2))
    resumed = resume(cut, KAGGLE_GPU_MIB, tiny_data, num_workers=0)
    assert resumed.kept == full.kept and resumed.valid_error == full.valid_error
    pd.testing.assert_frame_equal(resumed.history.drop(columns="time"), full.history.drop(columns="time"))
    assert same_weights(saved_weights(resumed.run), saved_weights(full.run))
    np.testing.assert_allclose(
        load_predictions(resumed.predictions_path).probs, load_predictions(full.predictions_path).probs, atol=1e-6
    )


def test_a_run_stopped_early_and_killed_in_tta_resumes_with_only_tta_left(tiny_data, tmp_path, monkeypatch):
    entry = tiny_entry(epochs=5, finetune=False, patience=1)
    with_only(monkeypatch, BlownUp(1))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(paddy.training.run, "tta_predictions", killed)
        with pytest.raises(KeyboardInterrupt):
            trained(entry, tiny_data, tmp_path, num_workers=0)
    cut = only_run(tmp_path)
    epochs = len(cut.history())
    assert epochs < 5
    resumed = resume(cut, KAGGLE_GPU_MIB, tiny_data, num_workers=0)
    assert len(resumed.history) == epochs and resumed.kept.stopped_early, "no epoch trained after the stop"


def test_paddy_train_keep_and_patience_flags(tiny_data_root, tmp_path, monkeypatch):
    with_only(monkeypatch, BlownUp(1))
    flags = ["--arch", "test_resnet", "--size", "32", "--bs", "8", "--epochs", "5", "--one-cycle", "--no-pretrained"]
    flags += ["--seed", "0", "--keep", "last", "--patience", "1"]
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_data_root), "--out", str(tmp_path), *flags])
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path)
    epochs = len(run.history())
    assert run.config()["keep"] == "last" and run.config()["patience"] == 1 and epochs < 5
    assert f"(last of {epochs} epochs: the {ordinal(epochs)}, stopped early)" in result.stdout


def test_the_metric_direction_decides_the_best(tiny_data, tmp_path, monkeypatch):
    """Accuracy is better higher: the kept epoch is the most accurate one (fine_tune's two fits together),
    where taking it as an error would keep the least accurate."""
    data = replace(tiny_data, spec=replace(tiny_data.spec, metric=MetricName.accuracy))
    entry = tiny_entry(epochs=3, finetune=True)
    result, _, _ = worse_last_run(entry, data, tmp_path, monkeypatch)
    history = result.history
    assert list(history.fit) == [1, 2, 2, 2]
    assert result.kept.epoch == best_of(history.accuracy, greater=True) != best_of(history.accuracy, greater=False)
    assert result.valid_error == pytest.approx(history.accuracy.max())


def test_which_way_each_epoch_metric_is_better():
    assert greater_is_better("roc_auc") and greater_is_better("accuracy")
    assert not greater_is_better("error_rate") and not greater_is_better("log_loss")
    assert not greater_is_better("label_error"), "a two-target model's error rate of its label"


def test_keep_and_patience_are_typed_settings():
    assert ModelEntry().keep == "best" and ModelEntry().patience is None
    assert apply_overrides(ModelEntry(), {"keep": "last", "patience": 3}).patience == 3
    for bad, message in [
        ({"keep": "worst"}, "keep: 'worst' is not one of best, last"),
        ({"patience": "3"}, "not a whole"),
    ]:
        with pytest.raises(PaddyError, match=message):
            apply_overrides(ModelEntry(), bad)
    assert "patience: 0 must be at least 1 (epochs without a better metric)" in entry_problems(
        replace(ModelEntry(), patience=0)
    )


def test_a_result_from_before_runs_kept_their_best_reads_as_keeping_the_last():
    old = upgraded(Recorded.result, {"valid_error": 0.5, "train_seconds": 1.0, "predict_seconds": 1.0})
    assert old["keep"] == "last" and old["kept_epoch"] is None and old["stopped_early"] is False
    assert old["valid_error"] == 0.5 and old["metric"] == "error_rate", "every run then was scored on the error rate"
