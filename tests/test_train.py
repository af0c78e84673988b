import json
import re
import types
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_entry, trained, with_callbacks
from fastai.vision.all import (
    Callback,
    CrossEntropyLossFlat,
    DataLoaders,
    GradientAccumulation,
    Learner,
    Normalize,
    imagenet_stats,
)
from torch import nn

import paddy.training.learner
import paddy.training.plan
from paddy.core.errors import PaddyError
from paddy.data.folds import folds_for
from paddy.runs.predictions import load_predictions
from paddy.settings.entry import BadImages
from paddy.training.learner import RefuseNonFiniteLoss, build_dataloaders, build_learner, make_learner
from paddy.training.plan import accumulation, check_against_data, plan_training, resolve_precision
from paddy.training.run import loaders_at_sizes, plan_run
from paddy.training.schedule import training_phases


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
    for bad, reason in ((0, "at least 1"), (3, "does not divide bs 64"), (64, "1 image per step")):
        with pytest.raises(PaddyError, match=reason):
            accumulation(64, bad)


def test_precision_auto_follows_the_device():
    assert resolve_precision("auto", cuda=True) == "fp16"
    assert resolve_precision("auto", cuda=False) == "fp32"
    with pytest.raises(PaddyError, match="needs a CUDA GPU"):
        resolve_precision("fp16", cuda=False)


def test_dataloaders_use_per_step_batch_and_all_classes(tiny_data):
    plan = plan_training(tiny_entry(bs=8, accum=2, item="pad", item_size="40x30"))
    dls = build_dataloaders(tiny_data, plan.entry, seed=0, step_bs=plan.step_bs, num_workers=0)
    xb, yb = dls.one_batch()
    assert xb.shape == (8 // 2, 3, 32, 32), "each step sees bs // accum images"
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
    learn = build_learner(dls, tiny_entry(arch="resnet18", pretrained_file=str(path)), [], tiny_data)
    for name, value in learn.model[0].model.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[name])


def test_weights_for_another_arch_is_one_clear_error(tiny_data, tmp_path):
    import timm
    from safetensors.torch import save_file

    path = tmp_path / "resnet50.safetensors"
    save_file(timm.create_model("resnet50", pretrained=False).state_dict(), path)
    dls = build_dataloaders(tiny_data, tiny_entry(), 0, 8, 0)
    with pytest.raises(PaddyError, match="does not fit resnet18"):
        build_learner(dls, tiny_entry(arch="resnet18", pretrained_file=str(path)), [], tiny_data)


def save_state(state: dict, path) -> str:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return str(path)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda state: state.pop("layer4.1.bn2.weight"), "1 backbone weights missing (e.g. layer4.1.bn2.weight)"),
        (lambda state: state.update(extra=torch.zeros(1)), "1 unexpected (e.g. extra)"),
        (
            lambda state: {state.pop(k) for k in [k for k in state if k.startswith("layer4")]},
            "backbone weights missing",
        ),
    ],
)
def test_a_weights_file_that_leaves_any_backbone_weight_unloaded_is_refused(tiny_data, tmp_path, change, fragment):
    """timm loads the file non-strictly (fastai builds the body without a classifier): paddy checks every key."""
    import timm

    state = timm.create_model("resnet18", pretrained=False).state_dict()
    change(state)
    path = save_state(state, tmp_path / "partial.safetensors")
    dls = build_dataloaders(tiny_data, tiny_entry(), 0, 8, 0)
    with pytest.raises(PaddyError, match=re.escape(fragment)):
        build_learner(dls, tiny_entry(arch="resnet18", pretrained_file=path), [], tiny_data)


def test_the_classifier_of_a_weights_file_may_be_dropped(tiny_data, tmp_path):
    import timm

    state = timm.create_model("resnet18", pretrained=False).state_dict()
    assert {"fc.weight", "fc.bias"} <= set(state)
    dls = build_dataloaders(tiny_data, tiny_entry(), 0, 8, 0)
    build_learner(
        dls, tiny_entry(arch="resnet18", pretrained_file=save_state(state, tmp_path / "w.safetensors")), [], tiny_data
    )


@pytest.mark.parametrize(
    "content, name",
    [(b"\x00" * 10, "truncated.safetensors"), (b"not a pickle", "junk.pth"), (b"", "empty.safetensors")],
)
def test_a_damaged_or_mislabelled_weights_file_is_one_error(tiny_data, tmp_path, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    dls = build_dataloaders(tiny_data, tiny_entry(), 0, 8, 0)
    with pytest.raises(PaddyError, match="cannot read pretrained_file"):
        build_learner(dls, tiny_entry(arch="resnet18", pretrained_file=str(path)), [], tiny_data)


def test_safetensors_content_named_pth_is_refused_not_unpickled(tiny_data, tmp_path):
    import timm

    path = tmp_path / "mislabelled.pth"
    save_state(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    dls = build_dataloaders(tiny_data, tiny_entry(), 0, 8, 0)
    with pytest.raises(PaddyError, match="cannot read pretrained_file"):
        build_learner(dls, tiny_entry(arch="resnet18", pretrained_file=str(path)), [], tiny_data)


def trainable_share(learn) -> float:
    params = list(learn.model.parameters())
    return sum(p.numel() for p in params if p.requires_grad) / sum(p.numel() for p in params)


def test_one_cycle_with_pretrained_weights_trains_every_layer(tiny_data, tmp_path):
    """The course unfreezes before fit_one_cycle; without it only the head and BatchNorm (~5%) would train."""
    import timm

    path = save_state(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "w.safetensors")
    one_cycle = plan_training(tiny_entry(arch="resnet18", pretrained_file=path, finetune=False))
    learn = make_learner(one_cycle, tiny_data, [], num_workers=0)
    assert trainable_share(learn) == 1.0
    before = learn.model[0].model.conv1.weight.detach().clone()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 0.01)
    assert not torch.allclose(before, learn.model[0].model.conv1.weight), "the backbone's first layer should train"
    finetune = make_learner(
        plan_training(tiny_entry(arch="resnet18", pretrained_file=path)), tiny_data, [], num_workers=0
    )
    assert trainable_share(finetune) < 0.1, "fine_tune starts frozen (its first epoch trains the head)"


def test_offline_pretrained_download_is_one_clear_error(tiny_data, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    dls = build_dataloaders(tiny_data, tiny_entry(), 0, 8, 0)
    with pytest.raises(PaddyError, match="cannot get pretrained weights for test_resnet"):
        build_learner(dls, tiny_entry(pretrained=True), [], tiny_data)


def test_finished_run_folder_holds_config_history_and_predictions(finished_run, tiny_data):
    run_dir = finished_run.run.path
    config = json.loads((run_dir / "config.json").read_text())
    assert config["arch"] == "test_resnet" and config["seed_used"] == 0 and config["step_bs"] == 8
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.fit) == [1, 2], "fine_tune: one frozen epoch, then one unfrozen"
    assert {"train_loss", "valid_loss", "error_rate"} <= set(history.columns)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["keep"] == "best" and result["epochs_run"] == 2 and result["stopped_early"] is False
    assert result["valid_error"] == pytest.approx(history.error_rate.iloc[result["kept_epoch"]])
    assert result["valid_error"] == pytest.approx(history.error_rate.min())
    assert result["train_seconds"] > 0 and result["predict_seconds"] > 0
    preds = load_predictions(finished_run.predictions_path)
    assert preds.image_ids == tuple(tiny_data.test_ids)
    assert preds.vocab == tiny_data.classes
    np.testing.assert_allclose(preds.probs.sum(axis=1), 1.0, rtol=1e-5)
    assert preds.meta["arch"] == "test_resnet" and preds.meta["size"] == [32, 32] and preds.meta["accum"] == 1
    assert preds.meta["seed"] == 0 and preds.meta["valid_error"] == pytest.approx(finished_run.valid_error)
    assert set(preds.meta["versions"]) >= {"torch", "fastai", "timm"}
    assert (
        preds.meta["data"] == str(tiny_data.root)
        and preds.meta["test_ids_sha256"] == tiny_data.identity()["test_ids_sha256"]
    )


def test_unseeded_runs_draw_and_record_a_seed(tiny_data, tmp_path):
    result = trained(tiny_entry(seed=None, finetune=False), tiny_data, tmp_path, num_workers=0)
    assert isinstance(result.seed, int)
    assert load_predictions(result.predictions_path).meta["seed"] == result.seed


def test_unwritable_output_fails_before_training(tiny_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PaddyError, match="cannot write to output folder"):
        trained(tiny_entry(), tiny_data, blocker / "runs", num_workers=0)


def test_auto_accum_must_be_resolved_first(tiny_data, tmp_path):
    with pytest.raises(PaddyError, match="auto"):
        trained(tiny_entry(accum="auto"), tiny_data, tmp_path, num_workers=0)
    assert not list(tmp_path.iterdir())


def test_a_batch_larger_than_the_training_split_is_refused_before_anything_is_written(tiny_data, tmp_path):
    """48 training images (60 less 20%): bs 64 would make zero optimizer steps and still 'finish'."""
    with pytest.raises(PaddyError, match="bs 64 is larger than the 48 training images.*no optimizer step"):
        trained(tiny_entry(bs=64), tiny_data, tmp_path, num_workers=0)
    assert not list(tmp_path.iterdir())


def test_test_probabilities_larger_than_the_memory_are_refused_before_anything_is_written(tiny_data, tmp_path):
    """herbarium 2022's 210k test images x 15,501 classes are 13 GB of float32 probabilities, twice that while
    TTA gathers them: a run on a smaller machine would die after its last epoch. Refused up front."""
    n, classes = len(tiny_data.test_images), len(tiny_data.classes)
    needed = 2 * n * classes * 4  # two float32 copies of every test image's every class
    check_against_data(tiny_data, tiny_entry(), memory=needed)  # just fits
    with pytest.raises(PaddyError, match=f"the probabilities of {n} images x {classes} classes \\(float32\\)"):
        check_against_data(tiny_data, tiny_entry(), memory=needed - 1)
    available = types.SimpleNamespace(available=needed - 1)
    with pytest.MonkeyPatch.context() as patch:  # what a run asks psutil
        patch.setattr(paddy.training.plan.psutil, "virtual_memory", lambda: available)
        with pytest.raises(PaddyError, match="GiB of memory available: predict on a machine with more"):
            trained(tiny_entry(), tiny_data, tmp_path, num_workers=0)
    assert not list(tmp_path.iterdir())


def test_a_held_out_fold_larger_than_the_test_set_is_what_must_fit(tiny_data, tmp_path):
    """A fold run also predicts its held-out fold with TTA (out-of-fold): half of 60 images against 20 test ones."""
    folds = folds_for(tmp_path, tiny_data, 2, seed=0)
    entry, n, classes = tiny_entry(folds=2, fold=1), len(folds.held_out(1)), len(tiny_data.classes)
    assert n > len(tiny_data.test_images)
    check_against_data(tiny_data, entry, folds, memory=2 * n * classes * 4)
    with pytest.raises(PaddyError, match=f"the probabilities of {n} images x {classes} classes"):
        check_against_data(tiny_data, entry, folds, memory=2 * n * classes * 4 - 1)


def test_a_nan_loss_stops_training_and_leaves_no_finished_run(tiny_data, tmp_path, monkeypatch):

    real = paddy.training.learner.kind_loss

    def nan_loss(kind, label_smoothing):
        loss = real(kind, label_smoothing)
        return lambda out, *targets: loss(out, *targets) * float("nan")

    monkeypatch.setattr(paddy.training.learner, "kind_loss", nan_loss)
    with pytest.raises(PaddyError, match="training loss became nan at epoch 1, batch 1"):
        trained(tiny_entry(finetune=False), tiny_data, tmp_path, num_workers=0)
    (run,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert (run / "config.json").exists()
    assert not (run / "predictions.safetensors").exists() and not (run / "result.json").exists()


def first_train_batch(dls):
    """The first training batch in a fixed order, augmented as training augments it."""
    return dls.train.new(shuffle=False).one_batch()[0]


def test_without_augmentation_nothing_is_random(tiny_data):
    """--no-aug: each image resized straight to `size`; two passes give the same batch (and TTA adds nothing)."""
    dls = build_dataloaders(tiny_data, tiny_entry(aug=False, item="pad"), 0, 8, 0)
    assert first_train_batch(dls).shape[-2:] == (32, 32)
    torch.testing.assert_close(first_train_batch(dls), first_train_batch(dls), rtol=0, atol=0)
    augmented = build_dataloaders(tiny_data, tiny_entry(item="pad"), 0, 8, 0)
    assert not torch.equal(first_train_batch(augmented), first_train_batch(augmented))


@pytest.mark.parametrize(
    ("settings", "flips"),
    [({}, {"Flip"}), ({"flip": False}, set()), ({"flip_vert": True}, {"Dihedral"})],
)
def test_flip_settings_choose_fastais_flip_transform(tiny_data, settings, flips):
    dls = build_dataloaders(tiny_data, tiny_entry(**settings), 0, 8, 0)
    names = {type(t).__name__ for t in dls.train.after_batch.fs}
    assert names & {"Flip", "Dihedral"} == flips


class TrainingBatchSizes(Callback):
    """The height and width of every training batch, per (fit, epoch), and of the last batches predicted."""

    def __init__(self):
        self.fits, self.trained, self.predicted = 0, {}, None

    def before_fit(self):
        self.fits += 1

    def before_batch(self):
        shape = tuple(self.xb[0].shape[-2:])
        if self.training:
            self.trained.setdefault((self.fits, self.epoch), set()).add(shape)
        else:
            self.predicted = shape


def test_progressive_resizing_trains_at_each_size_in_order(tiny_data, tmp_path, monkeypatch):
    """sizes 16, 24, 32 over 4 epochs: 1, 1 and 2 epochs, each a fit; the last size validates and predicts."""
    seen = TrainingBatchSizes()
    with_callbacks(monkeypatch, seen)
    entry = tiny_entry(epochs=4, finetune=False, sizes="16,24,32")
    result = trained(entry, tiny_data, tmp_path, num_workers=0)
    assert seen.trained == {(1, 0): {(16, 16)}, (2, 0): {(24, 24)}, (3, 0): {(32, 32)}, (3, 1): {(32, 32)}}
    assert seen.predicted == (32, 32), "TTA at the final size"
    assert list(result.history["size"]) == ["16x16", "24x24", "32x32", "32x32"]
    assert result.run.config()["sizes"] == [[16, 16], [24, 24], [32, 32]]


def test_progressive_resizing_fine_tunes_the_head_at_the_first_size():
    phases = training_phases(tiny_entry(epochs=10, sizes=[16, 24, 32]))
    assert [(p.frozen, p.epochs, p.size) for p in phases] == [
        (True, 1, (16, 16)),
        (False, 3, (16, 16)),
        (False, 3, (24, 24)),
        (False, 4, (32, 32)),
    ], "the frozen epoch, then the unfrozen epochs split, the remainder to the largest size"
    assert sum(p.epochs for p in training_phases(tiny_entry(epochs=10))) == 11, "one size: fine_tune as before"


def test_loaders_at_another_size_keep_the_learners_normalisation(tiny_data, tmp_path):
    """fastai adds Normalize to a pretrained model's loaders; loaders made later for a new size need it too."""
    plan = plan_run(tiny_entry(epochs=2, sizes="16,32"), tiny_data, tmp_path, 16000, BadImages.fail)
    learn = make_learner(plan.training, plan.data, [], num_workers=0)
    learn.dls.add_tfms([Normalize.from_stats(*imagenet_stats)], "after_batch")
    resized = loaders_at_sizes(learn, plan, 0)((16, 16))
    assert resized.train.one_batch()[0].shape[-2:] == (16, 16)
    assert any(isinstance(t, Normalize) for t in resized.valid.after_batch.fs)


class NoHostSync(torch.Tensor):
    """A loss whose value the host may not read (nor anything computed from it) until `allowed`: a NaN check
    that syncs every batch would touch it."""

    allowed = False

    def __bool__(self):
        if not NoHostSync.allowed:
            raise AssertionError("read on the host")
        return bool(self.as_subclass(torch.Tensor))

    def item(self):
        if not NoHostSync.allowed:
            raise AssertionError("read on the host")
        return self.as_subclass(torch.Tensor).item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())


def test_the_nan_guard_reads_nothing_on_the_host_until_it_checks():
    """Per batch the guard only queues device operations; it looks (one sync) every CHECK_EVERY batches and
    when the epoch's training ends, and then reports the first bad batch."""
    guard = RefuseNonFiniteLoss()
    guard.learn = types.SimpleNamespace(training=True, epoch=0, loss=None, iter=0)
    guard.before_epoch()
    for batch, value in enumerate([1.0, float("nan"), 2.0, float("inf")]):
        guard.learn.iter, guard.learn.loss = batch, torch.tensor(value).as_subclass(NoHostSync)
        guard.after_loss()  # would raise AssertionError if it read the loss on the host
    NoHostSync.allowed = True  # the epoch's training ends: the guard looks, once
    try:
        with pytest.raises(PaddyError, match="training loss became nan at epoch 1, batch 2"):
            guard.after_train()
    finally:
        NoHostSync.allowed = False


@pytest.mark.parametrize("settings", [{}, {"ema": 0.9, "epochs": 2, "sizes": ((16, 16), (32, 32))}])
def test_the_confusion_matrix_reuses_the_last_epochs_validation_pass(tiny_data, tmp_path, monkeypatch, settings):
    """After the epochs no second pass runs over the validation set: the outputs the last epoch validated
    (the average with EMA, the last size with progressive resizing) are those a fresh pass gives. (A run that
    keeps an earlier epoch validates it again: tests/test_best_epoch.py.)"""
    from fastai.vision.all import Learner

    import paddy.training.run

    passes, compared = [], []
    real_get_preds, real_outputs = Learner.get_preds, paddy.training.run.validation_outputs

    def counted(self, *args, **kwargs):
        passes.append(kwargs.get("ds_idx"))
        return real_get_preds(self, *args, **kwargs)

    def kept_and_fresh(learn, **options):
        kept = real_outputs(learn, **options)
        made = list(passes)  # the passes validation_outputs made: none
        outputs, targets = real_get_preds(learn, ds_idx=1)
        compared.append((kept, made, outputs.numpy(), targets.numpy()))
        return kept

    monkeypatch.setattr(Learner, "get_preds", counted)
    monkeypatch.setattr(paddy.training.run, "validation_outputs", kept_and_fresh)
    trained(
        replace(tiny_entry(finetune=False, keep="last"), **settings), tiny_data, tmp_path, num_workers=0, pictures=True
    )
    (((kept_outputs, kept_targets), made, outputs, targets),) = compared
    assert made == []
    np.testing.assert_allclose(kept_outputs, outputs, atol=1e-5)
    np.testing.assert_array_equal(kept_targets, targets)
