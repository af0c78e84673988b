"""The uint8 item pipeline (`decode`): each item method keeps fastai's meaning, the two decoders give
the pixels BENCHMARKS.md 2b measures, TTA decodes each image once with the draws it had, a resumed run
equals the uninterrupted one and `paddy predict` reproduces a run with either decoder, and a model
saved before `decode` existed keeps fastai's PIL pipeline."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import tiny_entry, trained
from fastai.vision.all import PILImage, Resize, TensorImage, set_seed
from PIL import Image, ImageFilter
from safetensors import safe_open
from safetensors.torch import save_file
from test_checkpoints import assert_same_run, interrupted_then_resumed
from test_predict import predict, predicted

import paddy.training.predicting
import paddy.training.transforms
from paddy.data.competition import check_layout
from paddy.data.demo import write_demo_dataset
from paddy.runs.predictions import load_predictions
from paddy.settings.entry import DecodeChoice, ModelEntry, ResizeMethod
from paddy.training.learner import build_dataloaders
from paddy.training.predicting import tta_predictions
from paddy.training.saved_model import load_model, rebuild_learner
from paddy.training.transforms import (
    PlaceItem,
    ReadImage,
    decoded,
    image_pipeline,
    item_readers,
    scaled_size,
    tta_chunk,
)

DECODERS = list(DecodeChoice)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 96x128 (height x width) JPEG of soft-edged blocks, so that a misplaced pixel shows."""
    blocks = np.kron(np.random.default_rng(0).integers(0, 256, (12, 16, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    Image.fromarray(blocks).filter(ImageFilter.GaussianBlur(2)).save(path, quality=95)
    return path


def fastai_item(path, item: str, target: tuple[int, int], split_idx: int) -> torch.Tensor:
    """What fastai's PIL pipeline (ImageBlock and Resize, paddy before `decode`) makes of the image."""
    _, (resize,), _ = image_pipeline(None, item, (8, 8), target, ModelEntry().augmentation())
    image = resize(PILImage.create(path), split_idx=split_idx)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def paddy_item(path, decode: DecodeChoice, item: str, target: tuple[int, int], split_idx: int) -> torch.Tensor:
    pixels = TensorImage(decoded(path, decode, ResizeMethod(item), target))
    return (
        pixels
        if item == "squish"
        else PlaceItem(ResizeMethod(item), target, centred=False)(pixels, split_idx=split_idx)
    )


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("item", ["squish", "crop", "pad"])
def test_each_item_method_gives_fastais_validation_image_up_to_interpolation(photo, decode, item):
    """Centred (validation) items against fastai's Resize: the same picture. Squish is the same resize;
    crop and pad scale first and then cut or pad whole pixels, so their window sits up to one source
    pixel from fastai's (which cuts the source, then resizes): 6 levels on average on these edges."""
    for target in [(64, 80), (72, 100)]:  # more than half the size: no decoder takes a smaller scale
        ours = paddy_item(photo, decode, item, target, split_idx=1).int()
        theirs = fastai_item(photo, item, target, split_idx=1).int()
        assert ours.shape == theirs.shape == (3, *target)
        difference = (ours - theirs).abs().float().as_subclass(torch.Tensor)
        assert float(difference.mean()) < (0.05 if item == "squish" else 8.0), f"{item} {target}"
        assert item != "squish" or float(difference.max()) <= 1, "squish: PIL's bilinear resize, to rounding"


def test_a_misplaced_crop_is_caught(photo):
    """Negative control for the test above: the crop's other end is another picture."""
    ours = paddy_item(photo, DecodeChoice.torchvision, "crop", (64, 80), split_idx=1)
    shifted = PlaceItem(ResizeMethod.crop, (64, 80), centred=False)
    shifted.before_call = lambda b, split_idx: setattr(shifted, "pcts", (0.0, 0.0))
    left = shifted(TensorImage(decoded(photo, DecodeChoice.torchvision, ResizeMethod.crop, (64, 80))))
    assert float((ours.int() - left.int()).abs().float().mean()) > 20


def test_crop_and_pad_are_random_in_training_and_centred_on_validation(photo):
    scaled = TensorImage(decoded(photo, DecodeChoice.torchvision, ResizeMethod.crop, (48, 48)))
    assert scaled.shape == (3, 48, 64), "the aspect kept, the target covered"
    crop = PlaceItem(ResizeMethod.crop, (48, 48), centred=False)
    assert torch.equal(crop(scaled, split_idx=1), scaled[:, :, 8:56]), "validation: the centre"
    set_seed(0)
    training = {crop(scaled, split_idx=0)[0, 0, :].numpy().tobytes() for _ in range(20)}
    assert len(training) > 5, "training: random positions"
    fitted = TensorImage(decoded(photo, DecodeChoice.torchvision, ResizeMethod.pad, (48, 48)))
    assert fitted.shape == (3, 36, 48), "the aspect kept, inside the target"
    padded = PlaceItem(ResizeMethod.pad, (48, 48), centred=False)(fitted, split_idx=1)
    assert torch.equal(padded[:, 6:42], fitted), "the whole image, centred"
    assert torch.equal(padded[:, 5], fitted[:, 1]) and torch.equal(padded[:, 42], fitted[:, -2]), "reflected"
    always = PlaceItem(ResizeMethod.crop, (48, 48), centred=True)
    assert torch.equal(always(scaled, split_idx=0), scaled[:, :, 8:56]), "without augmentation: centred in training"


def test_padding_more_than_the_image_has_reflects_again():
    thin = TensorImage(torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4))
    padded = PlaceItem(ResizeMethod.pad, (11, 4), centred=False)(thin, split_idx=1)
    assert padded.shape == (1, 11, 4)
    assert padded[:, :, 0].flatten().tolist() == [0, 4, 8, 4, 0, 4, 8, 4, 0, 4, 8], "as numpy's reflect"


def test_scaled_sizes():
    assert scaled_size(480, 640, ResizeMethod.squish, (224, 224)) == (224, 224)
    assert scaled_size(480, 640, ResizeMethod.crop, (240, 240)) == (240, 320)
    assert scaled_size(480, 640, ResizeMethod.pad, (240, 240)) == (180, 240)
    assert scaled_size(640, 480, ResizeMethod.crop, (224, 224)) == (299, 224)


def test_both_decoders_give_the_same_pixels_unless_pil_decodes_at_a_smaller_scale(photo):
    """Full-size decodes are the same libjpeg-turbo pixels; at most half the size PIL's `draft` decodes
    at 1/2 scale (BENCHMARKS.md 2b has the difference on the competition's images)."""
    for target in [(96, 128), (64, 64)]:  # more than half: both decode at full size
        assert torch.equal(
            decoded(photo, DecodeChoice.pil, ResizeMethod.squish, target),
            decoded(photo, DecodeChoice.torchvision, ResizeMethod.squish, target),
        )
    small = [decoded(photo, d, ResizeMethod.squish, (40, 48)).int() for d in DECODERS]
    difference = (small[0] - small[1]).abs().float()
    assert 0 < difference.mean() < 3.0


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    real = paddy.training.transforms.decoded

    def counting(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(paddy.training.transforms, "decoded", counting)
    return calls


@pytest.mark.parametrize("item", ["crop", "pad"])
def test_tta_decodes_each_image_once_with_the_draws_of_decoding_in_every_pass(
    tiny_data, item, count_decodes, monkeypatch
):
    """The passes draw their crops and augmentations on pixels decoded once; as fastai's `learn.tta` on
    the files, which decodes them in all 5 passes, the probabilities are exactly the same."""
    from paddy.training.learner import build_learner

    entry = tiny_entry(item=item, finetune=False)
    dls = build_dataloaders(tiny_data, entry, 0, 4, 0)
    learn = build_learner(dls, entry, [], tiny_data)
    images = list(tiny_data.test_images)
    count_decodes.clear()  # building the learner looked at a batch
    with learn.no_bar(), learn.no_logging():
        once = tta_predictions(learn, images, tiny_data.classes, {}, seed=3)
        assert sorted(count_decodes) == sorted(images), f"each image decoded once, not {count_decodes}"
        count_decodes.clear()
        test_dl = learn.dls.test_dl(images)
        set_seed(3)
        every_pass, _ = learn.tta(dl=test_dl)
        assert len(count_decodes) == 5 * len(images)
        set_seed(4)
        other_draws, _ = learn.tta(dl=learn.dls.test_dl(images))
    np.testing.assert_array_equal(once.probs, every_pass.numpy())
    assert not np.allclose(once.probs, other_draws.numpy()), "the draws matter: another seed differs"


def three_images_a_chunk(learn, monkeypatch) -> list[int]:
    """TTA_CHUNK_BYTES made three of the learner's decoded images; the sizes of the test loaders TTA makes."""
    (reader,) = item_readers(learn.dls)
    monkeypatch.setattr(paddy.training.transforms, "TTA_CHUNK_BYTES", 3 * (3 * reader.target[0] * reader.target[1]) + 1)
    assert tta_chunk(learn.dls) == 3
    loaders, real = [], paddy.training.predicting.test_loader

    def counted(dls, chunk):
        loaders.append(len(chunk))
        return real(dls, chunk)

    monkeypatch.setattr(paddy.training.predicting, "test_loader", counted)
    return loaders


def test_tta_holds_a_chunk_of_decoded_images_at_a_time_each_chunk_seeded_on(tiny_data, count_decodes, monkeypatch):
    """A hidden test set is not held decoded whole: TTA decodes and predicts three images at a time here,
    each image still decoded once, and chunk k's draws are fastai's `learn.tta` on those files seeded
    with seed + k."""
    from paddy.training.learner import build_learner

    entry = tiny_entry(item="crop", finetune=False)
    learn = build_learner(build_dataloaders(tiny_data, entry, 0, 4, 0), entry, [], tiny_data)
    loaders = three_images_a_chunk(learn, monkeypatch)
    images = list(tiny_data.test_images)
    count_decodes.clear()
    with learn.no_bar(), learn.no_logging():
        chunked = tta_predictions(learn, images, tiny_data.classes, {}, seed=3)
        assert sorted(count_decodes) == sorted(images) and loaders == [3, 3, 2]
        by_hand = []
        for k, start in enumerate(range(0, len(images), 3)):
            test_dl = learn.dls.test_dl(images[start : start + 3])
            set_seed(3 + k)
            by_hand.append(learn.tta(dl=test_dl)[0].numpy())
    np.testing.assert_array_equal(chunked.probs, np.concatenate(by_hand))


def test_predict_reproduces_a_runs_tta_made_in_chunks(tiny_data, tmp_path, monkeypatch):
    from paddy.ensembling.predict import predict_run
    from paddy.training.learner import build_learner

    entry = tiny_entry(item="crop", finetune=False)
    loaders = three_images_a_chunk(
        build_learner(build_dataloaders(tiny_data, entry, 0, 4, 0), entry, [], tiny_data), monkeypatch
    )
    result = trained(entry, tiny_data, tmp_path / "runs", num_workers=0)
    assert loaders == [3, 3, 2]
    again = predict_run(result.run, list(tiny_data.test_images), tta=True)
    np.testing.assert_array_equal(again.probs, load_predictions(result.predictions_path).probs)
    monkeypatch.setattr(paddy.training.transforms, "TTA_CHUNK_BYTES", 2**30)  # negative control: one chunk differs
    assert not np.allclose(predict_run(result.run, list(tiny_data.test_images), tta=True).probs, again.probs)


@pytest.mark.parametrize("decode", DECODERS)
def test_a_resumed_run_equals_the_uninterrupted_one_with_each_decoder(tiny_data, tmp_path, monkeypatch, decode):
    entry = tiny_entry(epochs=2, finetune=False, item="crop", decode=decode)
    full, resumed, full_lrs, resumed_lrs = interrupted_then_resumed(entry, tiny_data, tmp_path, monkeypatch, (1, 1))
    assert_same_run(full, resumed)
    assert resumed.entry.decode == decode and load_model(full.run.model_path)[0].decode == decode


@pytest.mark.parametrize("decode", DECODERS)
def test_predict_reproduces_the_runs_tta_exactly_with_each_decoder(tiny_data, tmp_path, decode):
    entry = tiny_entry(item="crop", finetune=False, decode=decode)
    run = trained(entry, tiny_data, tmp_path / "runs", num_workers=2).run
    dest = tmp_path / "p.safetensors"
    preds = predicted(predict(run, tiny_data.root / "test_images", "--dest", str(dest)), dest)
    np.testing.assert_array_equal(preds.probs, load_predictions(run.predictions_path).probs)


@pytest.fixture(scope="module")
def larger_data(tmp_path_factory):
    """Images four times the item size, where PIL's decoder takes a smaller scale."""
    root = write_demo_dataset(tmp_path_factory.mktemp("larger") / "data", per_class=3, n_test=6, size=(128, 96))
    return check_layout(root)


def predictions_with(run, images, decode: str | None) -> np.ndarray:
    card, state = load_model(run.model_path)
    learn = rebuild_learner(replace(card, decode=decode), state, images, run.model_path)
    with learn.no_bar(), learn.no_logging():
        return tta_predictions(learn, images, tuple(card.vocab), {}, card.seed).probs


def test_a_run_predicted_with_the_other_decoder_differs_by_interpolation_only(larger_data, tmp_path):
    entry = tiny_entry(size=(16, 16), finetune=False, decode="pil")
    run = trained(entry, larger_data, tmp_path / "runs", num_workers=0).run
    images = list(larger_data.test_images)
    own = load_predictions(run.predictions_path).probs
    np.testing.assert_array_equal(predictions_with(run, images, "pil"), own)
    other = predictions_with(run, images, "torchvision")
    assert 0 < np.abs(other - own).max() < 0.05, "PIL decoded at 1/2 scale; the probabilities barely move"


def test_a_model_saved_before_decode_keeps_fastais_pil_pipeline(finished_run, tiny_data, tmp_path):
    """A model.safetensors without `decode` is rebuilt on ImageBlock and Resize, and predicts."""
    import shutil

    from paddy.runs.folder import RunFolder

    old = RunFolder(shutil.copytree(finished_run.run.path, tmp_path / "runs" / finished_run.run.name))
    with safe_open(old.model_path, framework="pt") as f:
        header = json.loads(f.metadata()["paddy"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, old.model_path, metadata={"paddy": json.dumps({k: v for k, v in header.items() if k != "decode"})})
    card, state = load_model(old.model_path)
    assert card.decode is None
    learn = rebuild_learner(card, state, list(tiny_data.test_images), old.model_path)
    assert any(isinstance(t, Resize) for t in learn.dls.valid.after_item.fs), "fastai's Resize of PIL images"
    assert not any(isinstance(t, ReadImage) for t in learn.dls.valid_ds.tls[0].tfms.fs)
    dest = tmp_path / "p.safetensors"
    legacy = predicted(predict(old, tiny_data.root / "test_images", "--dest", str(dest)), dest).probs
    assert legacy.shape == (len(tiny_data.test_images), len(tiny_data.classes))
    assert np.abs(legacy - load_predictions(finished_run.predictions_path).probs).max() < 0.05
