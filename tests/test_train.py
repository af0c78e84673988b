import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_entry
from fastai.vision.all import CrossEntropyLossFlat, DataLoaders, GradientAccumulation, Learner
from torch import nn

from paddy.errors import PaddyError
from paddy.predictions import load_predictions
from paddy.train import accumulation, build_dataloaders, build_learner, resolve_precision, train


def tiny_mlp() -> nn.Module:
    """A model without BatchNorm, whose result must not depend on how the batch is split."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def weights_after_training(bs: int, accum: int, callbacks=None) -> list[torch.Tensor]:
    """Train a BatchNorm-free MLP for 4 optimizer steps on fixed data, in a fixed order."""
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = (x[:, 0] + x[:, 1] > 0).long()
    step_bs, cbs = accumulation(bs, accum)
    dls = DataLoaders.from_dsets(list(zip(x, y)), list(zip(x[:8], y[:8])), bs=step_bs, shuffle=False, device="cpu")
    model = tiny_mlp()
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=callbacks if callbacks is not None else cbs)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 0.01)
    return [p.detach().clone() for p in model.parameters()]


def test_accumulation_gives_the_weights_of_the_full_batch():
    full = weights_after_training(bs=16, accum=1)
    accumulated = weights_after_training(bs=16, accum=4)
    initial = list(tiny_mlp().parameters())
    assert not all(torch.allclose(a, b) for a, b in zip(full, initial)), "training should change the weights"
    for a, b in zip(full, accumulated):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_counting_steps_instead_of_samples_would_differ():
    """Guards the test above: n_acc counts samples, so n_acc=accum (steps) is a real, detectable bug."""
    full = weights_after_training(bs=16, accum=1)
    wrong = weights_after_training(bs=16, accum=4, callbacks=[GradientAccumulation(n_acc=4)])
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full, wrong))


def test_accumulation_splits_the_batch_and_refuses_bad_factors():
    step_bs, cbs = accumulation(64, 4)
    assert step_bs == 16 and len(cbs) == 1 and cbs[0].n_acc == 64
    assert accumulation(64, 1) == (64, [])
    for bad in (0, 3, 128):
        with pytest.raises(PaddyError, match="positive divisor"):
            accumulation(64, bad)


def test_precision_auto_follows_the_device():
    assert resolve_precision("auto", cuda=True) == "fp16"
    assert resolve_precision("auto", cuda=False) == "fp32"
    with pytest.raises(PaddyError, match="needs a CUDA GPU"):
        resolve_precision("fp16", cuda=False)


def test_dataloaders_use_per_step_batch_and_all_classes(tiny_data):
    entry = tiny_entry(bs=8, accum=2, item="pad", presize="40x30")
    dls = build_dataloaders(tiny_data, entry, seed=0, step_bs=4, num_workers=0)
    xb, yb = dls.one_batch()
    assert xb.shape == (4, 3, 32, 32)
    assert list(dls.vocab) == list(tiny_data.classes)
    assert len(dls.valid_ds) == round(0.2 * len(tiny_data.train_images))


def test_same_seed_same_split(tiny_data):
    def split(seed):
        return [str(p) for p in build_dataloaders(tiny_data, tiny_entry(), seed, 8, 0).valid_ds.items]

    assert split(3) == split(3) and split(3) != split(4)


def test_local_weights_file_is_loaded(tiny_data, tmp_path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file(source.state_dict(), path)
    dls = build_dataloaders(tiny_data, tiny_entry(), 0, 8, 0)
    learn = build_learner(dls, tiny_entry(weights=str(path)), [])
    torch.testing.assert_close(learn.model[0].model.conv1.weight, source.conv1.weight)


def test_weights_for_another_arch_is_one_clear_error(tiny_data, tmp_path):
    import timm
    from safetensors.torch import save_file

    path = tmp_path / "resnet50.safetensors"
    save_file(timm.create_model("resnet50", pretrained=False).state_dict(), path)
    dls = build_dataloaders(tiny_data, tiny_entry(), 0, 8, 0)
    with pytest.raises(PaddyError, match="does not fit resnet18"):
        build_learner(dls, tiny_entry(weights=str(path)), [])


def test_offline_pretrained_download_is_one_clear_error(tiny_data, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    dls = build_dataloaders(tiny_data, tiny_entry(), 0, 8, 0)
    with pytest.raises(PaddyError, match="cannot get pretrained weights for resnet18"):
        build_learner(dls, tiny_entry(pretrained=True), [])


def test_finished_run_folder_holds_config_history_and_predictions(finished_run, tiny_data):
    run_dir = finished_run.run_dir
    config = json.loads((run_dir / "config.json").read_text())
    assert config["arch"] == "resnet18" and config["seed_used"] == 0 and config["step_bs"] == 8
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.fit) == [1, 2], "fine_tune: one frozen epoch, then one unfrozen"
    assert {"train_loss", "valid_loss", "error_rate"} <= set(history.columns)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["valid_error"] == pytest.approx(history.error_rate.iloc[-1])
    preds = load_predictions(finished_run.predictions_path)
    assert preds.image_ids == tuple(tiny_data.test_ids)
    assert preds.vocab == tiny_data.classes
    np.testing.assert_allclose(preds.probs.sum(axis=1), 1.0, rtol=1e-5)
    assert preds.meta["arch"] == "resnet18" and preds.meta["size"] == [32, 32] and preds.meta["accum"] == 1
    assert preds.meta["seed"] == 0 and preds.meta["valid_error"] == pytest.approx(finished_run.valid_error)
    assert set(preds.meta["versions"]) >= {"torch", "fastai", "timm"}


def test_unseeded_runs_draw_and_record_a_seed(tiny_data, tmp_path):
    result = train(tiny_entry(seed=None, finetune=False), tiny_data, tmp_path, num_workers=0)
    assert isinstance(result.seed, int)
    assert load_predictions(result.predictions_path).meta["seed"] == result.seed


def test_unwritable_output_fails_before_training(tiny_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PaddyError, match="cannot write to output folder"):
        train(tiny_entry(), tiny_data, blocker / "runs", num_workers=0)


def test_auto_accum_must_be_resolved_first(tiny_data, tmp_path):
    with pytest.raises(PaddyError, match="auto"):
        train(tiny_entry(accum="auto"), tiny_data, tmp_path, num_workers=0)
    assert not list(tmp_path.iterdir())
