"""`channels_last` and `compile`: the model (and batches) really are in channels_last while fitting, the
model is compiled, and either way the saved model keeps its names and predicts as the run did."""

from __future__ import annotations

import json

import numpy as np
import torch
from conftest import tiny_entry, trained, with_callbacks
from fastai.vision.all import Callback
from safetensors import safe_open
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.ensembling.predict import predict_run
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import load_predictions


class LayoutProbe(Callback):
    """Records, at every training batch, whether the batch and a 3x3 conv weight are channels_last."""

    order = 0  # after ChannelsLastWhileFitting (-1)

    def __init__(self):
        self.batches, self.weights = [], []

    def before_batch(self) -> None:
        if self.training:
            weight = next(p for p in self.learn.model.parameters() if p.dim() == 4 and p.shape[-1] > 1)
            self.batches.append(self.xb[0].is_contiguous(memory_format=torch.channels_last))
            self.weights.append(weight.is_contiguous(memory_format=torch.channels_last))


def model_names(path) -> set[str]:
    with safe_open(path, framework="pt") as f:
        return set(f.keys())


def assert_predicts_as_trained(run, tiny_data) -> None:
    """`paddy predict`'s rebuilt model gives the run's own TTA predictions (as tests/test_predict.py)."""
    preds = predict_run(run, list(tiny_data.test_images), tta=True)
    np.testing.assert_allclose(preds.probs, load_predictions(run.predictions_path).probs, rtol=0, atol=1e-6)


def test_channels_last_from_the_command_line_trains_in_it_and_predicts_as_trained(
    tiny_data, tiny_data_root, finished_run, tmp_path, monkeypatch
):
    probe = LayoutProbe()
    with_callbacks(monkeypatch, probe)
    flags = ["--arch", "test_resnet", "--size", "32", "--bs", "8", "--epochs", "1", "--no-pretrained", "--seed", "0"]
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["train", "--data", str(tiny_data_root), "--out", str(out), *flags, "--one-cycle", "--channels-last"]
    )
    assert result.exit_code == 0, result.output
    assert probe.batches and all(probe.batches) and all(probe.weights)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert json.loads((run_dir / "config.json").read_text())["channels_last"] is True
    run = RunFolder(run_dir)
    assert model_names(run.model_path) == model_names(finished_run.run.model_path)
    assert_predicts_as_trained(run, tiny_data)


def test_the_default_layout_is_not_channels_last(tiny_data, tmp_path, monkeypatch):
    """Negative control: the probe does tell the layouts apart."""
    probe = LayoutProbe()
    with_callbacks(monkeypatch, probe)
    trained(tiny_entry(finetune=False), tiny_data, tmp_path / "runs", num_workers=0)
    assert probe.batches and not any(probe.batches) and not any(probe.weights)
    assert probe.learn.model._compiled_call_impl is None


def test_a_compiled_model_saves_its_usual_names_and_predicts_as_trained(tiny_data, finished_run, tmp_path, monkeypatch):
    """Compiled with dynamo and AOT autograd (where fastai's TensorImage broke inductor) but without
    inductor's C++ code generation, which takes minutes on 2 CPU cores."""
    real_compile = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda module: real_compile(module, backend="aot_eager"))
    probe = LayoutProbe()
    with_callbacks(monkeypatch, probe)
    result = trained(tiny_entry(finetune=False, compile=True), tiny_data, tmp_path / "runs", num_workers=0)
    assert probe.learn.model._compiled_call_impl is not None  # nn.Module.compile: compiled in place
    assert model_names(result.run.model_path) == model_names(finished_run.run.model_path)
    assert_predicts_as_trained(result.run, tiny_data)
