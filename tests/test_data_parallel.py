"""`gpus = N`: one run trained by N processes (torchrun, fastai's distrib_ctx over Accelerate; gloo on
the CPU here). The effective batch stays `bs`: the same weights as one process, with and without
accumulation, and a control without the per-process correction differs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import KAGGLE_GPU_MIB, tiny_entry
from data_parallel_worker import BS, N, trained_weights
from fastai.vision.all import DataLoader

from paddy.core.errors import PaddyError
from paddy.orchestration.config_runs import run_config
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import load_predictions
from paddy.runs.probes import probe_key
from paddy.settings.config_file import EnsembleConfig
from paddy.training.archs import check_trainable
from paddy.training.distributed import bare_loader, bare_model, launch_data_parallel, launched_run_folder, needs_launch
from paddy.training.lr_find import in_one_process
from paddy.training.plan import accumulation
from paddy.training.run import plan_runs

TESTS = Path(__file__).parent
WORLD = 2


def interleaved(n: int = N, per_process: int = BS // WORLD) -> list[int]:
    """The order in which one process sees each step's images as 2 processes see them together: fastai's
    DistributedDL gives rank r the r-th contiguous half, each rank batching its own half."""
    half = n // WORLD
    return [
        r * half + k * per_process + j
        for k in range(half // per_process)
        for r in range(WORLD)
        for j in range(per_process)
    ]


def torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_processes_train_the_weights_of_one_with_and_without_accum(tmp_path):
    out = tmp_path / "weights.json"
    cases = ["paddy-1", "paddy-2", "control-2"]
    result = torchrun(str(TESTS / "data_parallel_worker.py"), str(out), *cases)
    assert result.returncode == 0, result.stderr[-3000:]
    two = {name: np.array(w) for name, w in json.loads(out.read_text()).items()}
    step_bs, callbacks = accumulation(BS, 1)
    one = np.array(trained_weights(interleaved(), step_bs, callbacks))
    step_bs, callbacks = accumulation(BS, 2)
    one_accum = np.array(trained_weights(interleaved(), step_bs, callbacks))
    np.testing.assert_allclose(one_accum, one, atol=1e-6)  # the single-process accum rule, as a check
    np.testing.assert_allclose(two["paddy-1"], one, atol=1e-6)
    np.testing.assert_allclose(two["paddy-2"], one, atol=1e-6)
    assert np.abs(two["control-2"] - one).max() > 1e-3, "counting bs images per process doubles the batch"


@pytest.mark.slow
def test_paddy_train_on_two_processes_writes_one_finished_run(tiny_data_root, tmp_path):
    out = tmp_path / "runs"
    flags = ["--arch", "test_resnet", "--size", "32", "--bs", "16", "--epochs", "2", "--no-pretrained", "--one-cycle"]
    command = [sys.executable, "-m", "paddy", "train", "--data", str(tiny_data_root), "--out", str(out), "--gpus", "2"]
    result = subprocess.run([*command, *flags, "--seed", "0"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (folder,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    run = RunFolder(folder)
    assert run.finished and run.config()["gpus"] == 2 and run.config()["step_bs"] == 8, "bs 16 over 2 processes"
    assert list(run.history()["epoch"]) == [0, 1], "one history, written by the main process"
    preds = load_predictions(run.predictions_path)
    assert list(preds.image_ids) == sorted(p.name for p in (tiny_data_root / "test_images").iterdir())
    np.testing.assert_allclose(preds.probs.sum(axis=1), 1, atol=1e-5)
    assert result.stdout.count("valid error_rate") == 1, "one result line, from the main process"


def test_the_accum_rule_applies_to_each_processs_share():
    assert tiny_entry(bs=16, gpus=2).process_bs == 8
    assert check_trainable(tiny_entry(bs=16, gpus=2, accum=4))  # 2 images per step and process
    with pytest.raises(PaddyError, match=r"accum: .* per process \(bs 16 over 2 GPUs\)"):
        check_trainable(tiny_entry(bs=16, gpus=2, accum=8))
    with pytest.raises(PaddyError, match="gpus: 3 does not divide bs 16"):
        check_trainable(tiny_entry(bs=16, gpus=3))
    with pytest.raises(PaddyError, match="gpus: 0 must be at least 1"):
        check_trainable(tiny_entry(gpus=0))


def test_probes_and_lr_find_see_one_process():
    """A probe measures one process (bs / gpus images); lr_find cannot run under DDP (fastai#3688), so it
    runs one process with the same per-step batch and the whole effective batch."""
    assert probe_key(tiny_entry(gpus=2), 16000)["gpus"] == 2 and "gpus" not in probe_key(tiny_entry(), 16000)
    one = in_one_process(tiny_entry(bs=16, gpus=2, accum=2))
    assert (one.gpus, one.bs, one.accum, one.process_bs // one.accum) == (1, 16, 4, 4)
    with pytest.raises(PaddyError, match="give --accum"):
        in_one_process(tiny_entry(bs=16, gpus=2, accum="auto"))


def test_paddy_run_refuses_a_data_parallel_entry(tiny_data, tmp_path):
    config = EnsembleConfig(models=[tiny_entry(), tiny_entry(bs=16, gpus=2)])
    with pytest.raises(PaddyError, match="entry 1 has gpus 2: paddy run trains each run in one process"):
        run_config(config, tiny_data, tmp_path, KAGGLE_GPU_MIB)


def test_one_gpu_launches_nothing_and_a_launched_process_does_not_launch_again(tiny_data, tmp_path, monkeypatch):
    assert launch_data_parallel(plan_runs(tiny_entry(), tiny_data, tmp_path, KAGGLE_GPU_MIB), []) is None
    assert needs_launch(2) and not needs_launch(1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("PADDY_RUN_FOLDER", str(tmp_path / "run"))
    assert not needs_launch(2) and launched_run_folder() == tmp_path / "run"
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.delenv("PADDY_RUN_FOLDER")
    folds = plan_runs(tiny_entry(bs=16, gpus=2, folds=3), tiny_data, tmp_path, KAGGLE_GPU_MIB)
    with pytest.raises(PaddyError, match=r"gpus 2 trains one run at a time: give the fold \(1..3\)"):
        launch_data_parallel(folds, [])


def test_bare_model_and_loader_see_through_the_ddp_wrappers():
    model = torch.nn.Linear(2, 2)
    assert bare_model(model) is model
    loader = DataLoader(list(range(4)), bs=2)
    assert bare_loader(loader) is loader
