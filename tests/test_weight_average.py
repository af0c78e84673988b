"""`ema`: timm's ModelEmaV3 updated once per real optimizer step (never per accumulation micro-batch),
validated in place of the training weights, and saved as the run's model."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_entry, trained, with_callbacks
from fastai.vision.all import Callback, CancelStepException
from safetensors.torch import load_file
from timm.utils import ModelEmaV3

from paddy.core.errors import PaddyError
from paddy.runs.probes import probe_key
from paddy.training.archs import check_trainable
from paddy.training.checkpoint import load_checkpoint
from paddy.training.ema import WeightAverage, swap_weights


@pytest.fixture
def updates(monkeypatch) -> list:
    """The `step` of every update of any ModelEmaV3, in order."""
    seen, update = [], ModelEmaV3.update
    monkeypatch.setattr(
        ModelEmaV3, "update", lambda self, model, step=None: (seen.append(step), update(self, model, step))
    )
    return seen


class CountSteps(Callback):
    """Training micro-batches, and the optimizer steps that really ran (its `step` wrapped)."""

    def __init__(self):
        self.micro_batches, self.optimizer_steps = 0, 0

    def before_fit(self):
        step = self.learn.opt.step

        def counted_step(*args, **kwargs):
            self.optimizer_steps += 1
            return step(*args, **kwargs)

        self.learn.opt.step = counted_step

    def after_loss(self):
        self.micro_batches += self.training


class ValidatedWeights(Callback):
    """The average after the last step of each epoch, and the weights the epoch's validation ran with
    (the validations after training, for the confusion matrix and TTA, follow no step)."""

    order = WeightAverage.order + 1

    def __init__(self):
        self.averaged, self.validated, self.last_average = [], [], None

    def after_step(self):
        average = self.learn.weight_average.average.module
        self.last_average = {k: v.clone() for k, v in average.state_dict().items()}

    def before_validate(self):
        if self.last_average is not None:
            self.averaged.append(self.last_average)
            self.validated.append({k: v.clone() for k, v in self.learn.model.state_dict().items()})
        self.last_average = None


class SkipEveryOtherStep(Callback):
    """Cancel every other optimizer step, as fp16's gradient scaler does on an overflow."""

    order = WeightAverage.order - 1

    def __init__(self):
        self.steps = 0

    def before_step(self):
        self.steps += 1
        if self.steps % 2:
            raise CancelStepException()


def test_the_average_is_updated_once_per_real_step_with_accum_4(tiny_data, tmp_path, monkeypatch, updates):
    counter = CountSteps()
    with_callbacks(monkeypatch, counter)
    trained(tiny_entry(ema=0.9, accum=4, epochs=2, finetune=False), tiny_data, tmp_path, num_workers=0)
    assert counter.optimizer_steps > 0 and counter.micro_batches == 4 * counter.optimizer_steps
    assert updates == list(range(1, counter.optimizer_steps + 1)), "one update per real step, counted for warm-up"


def test_steps_the_gradient_scaler_skips_are_not_averaged(tiny_data, tmp_path, monkeypatch, updates):
    counter = CountSteps()
    with_callbacks(monkeypatch, SkipEveryOtherStep(), counter)
    trained(tiny_entry(ema=0.9, accum=2, finetune=False), tiny_data, tmp_path, num_workers=0)
    assert counter.optimizer_steps > 0 and counter.micro_batches == 4 * counter.optimizer_steps
    assert updates == list(range(1, counter.optimizer_steps + 1))


def test_each_epoch_validates_the_average_and_the_run_saves_it(tiny_data, tmp_path, monkeypatch):
    seen = ValidatedWeights()
    with_callbacks(monkeypatch, seen)
    result = trained(
        # the last epoch's average is saved (keeping the best epoch's average: tests/test_best_epoch.py)
        tiny_entry(ema=0.9, epochs=2, finetune=False, keep="last"),
        tiny_data,
        tmp_path,
        num_workers=0,
        keep_checkpoint=True,
    )
    assert len(seen.validated) == 2
    for averaged, validated in zip(seen.averaged, seen.validated):
        for name, weight in averaged.items():
            torch.testing.assert_close(validated[name], weight, rtol=0, atol=0)
    states = load_checkpoint(result.run.checkpoint_path).states
    saved = load_file(result.run.model_path)
    assert states["ema"]["steps"] > 0
    for name, weight in states["ema"]["weights"].items():
        torch.testing.assert_close(saved[name], weight.float(), rtol=0, atol=0)
    weights = states["model"]
    assert any(not torch.equal(saved[k], v.float()) for k, v in weights.items() if v.is_floating_point()), (
        "the saved model is the average, not the last training weights"
    )


def test_swapping_twice_restores_both_models_without_copies():
    a, b = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        b.weight.fill_(2.0)
        b.running_mean.fill_(5.0)
    storage = a.weight.data_ptr()
    swap_weights(a, b)
    assert a.weight[0] == 2.0 and a.running_mean[0] == 5.0 and b.weight.data_ptr() == storage
    swap_weights(a, b)
    assert a.weight[0] == 1.0 and b.running_mean[0] == 5.0 and a.weight.data_ptr() == storage


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_a_decay_outside_0_1_is_refused(decay):
    with pytest.raises(PaddyError, match=r"ema: .* must be in \(0, 1\)"):
        check_trainable(tiny_entry(ema=decay))


def test_a_probe_for_an_averaged_model_is_its_own_record():
    """The average is a second copy of the weights: a probe without it must not decide accum for it."""
    assert probe_key(tiny_entry(), 16000) != probe_key(tiny_entry(ema=0.999), 16000)
    assert "ema" not in probe_key(tiny_entry(), 16000), "probes recorded before ema still match"
