"""A finished run's model (`model.safetensors`): its weights and what is needed to use it again
without the training data, and the learner rebuilt from it for `paddy predict`.

Weights are safetensors; everything else (arch, sizes, item transform, vocab, normalisation,
head) is JSON in its metadata: nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from fastai.layers import SigmoidRange
from fastai.vision.all import (
    CategoryBlock,
    DataBlock,
    Learner,
    Normalize,
    default_split,
)
from fastai.vision.learner import create_timm_model
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from paddy.core.errors import PaddyError
from paddy.core.files import atomic_write_bytes
from paddy.data.competition import CompetitionData
from paddy.settings.competition import TargetKind
from paddy.settings.entry import ModelEntry
from paddy.training.targets import TwoTargetLoss, kind_loss
from paddy.training.transforms import image_pipeline

FORMAT = "paddy-model-1"


@dataclass(frozen=True)
class ModelCard:
    """What a saved model needs besides its weights: the model, its inputs and its outputs."""

    arch: str
    size: list[int]
    item: str
    item_size: list[int]
    step_bs: int  # TTA draws its augmentations per batch: the same batches give the same predictions
    num_workers: int  # and item transforms (crop) in the loader's workers, seeded per worker
    vocab: list[str]
    n_out: int
    n_first: int | None  # a two-target model: the label is the first n_first outputs
    normalize: dict[str, list[float]] | None
    seed: int
    # aug_transforms arguments (None: no augmentation); a model saved before they were settings had the default
    augmentation: dict[str, Any] | None = field(default_factory=ModelEntry().augmentation)
    # the decoder of the item pipeline (None: a model saved before `decode`, fastai's PIL pipeline)
    decode: str | None = None
    kind: str = "single"  # the target kind (models saved before 0.3 were single-label classifiers)
    y_range: list[float] | None = None  # the sigmoid range of a number head


def normalizers(learn: Learner) -> list[Normalize]:
    """The Normalize the learner applies to batches (fastai adds one for pretrained models), if any."""
    return [t for t in learn.dls.after_batch.fs if isinstance(t, Normalize)]


def normalisation(learn: Learner) -> dict[str, list[float]] | None:
    """The learner's normalisation statistics, as a saved model keeps them."""
    found = normalizers(learn)
    if not found:
        return None
    return {"mean": found[0].mean.flatten().tolist(), "std": found[0].std.flatten().tolist()}


def save_model(learn: Learner, path: Path, card: ModelCard) -> Path:
    """The learner's weights and `card`, atomically, as safetensors."""
    state = {k: v.detach().float().cpu().contiguous() for k, v in learn.model.state_dict().items()}
    header = {"format": FORMAT, **asdict(card)}
    return atomic_write_bytes(path, save(state, metadata={"paddy": json.dumps(header)}))


def load_model(path: Path) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """A model saved by `save_model`; a missing, truncated or foreign file is one PaddyError."""
    if not path.is_file():
        raise PaddyError(f"{path.parent} has no model.safetensors (trained before paddy kept models?): train it again")
    try:
        with safe_open(path, framework="pt") as f:
            header = json.loads((f.metadata() or {}).get("paddy", "{}"))
            state = {k: f.get_tensor(k) for k in f.keys()}
        if header.pop("format", None) != FORMAT:
            raise ValueError("not a paddy model")
        return ModelCard(**header), state
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise PaddyError(f"{path} is not a readable paddy model ({type(e).__name__}: {e})") from None


def rebuild_learner(card: ModelCard, state: dict[str, torch.Tensor], images: list[Path], path: Path) -> Learner:
    """The trained model on a data pipeline of `images` built as training built it (decoder, item
    resize, batch transforms, normalisation), with no training data at all."""
    y_range = tuple(card.y_range) if card.y_range else None
    model, _ = create_timm_model(card.arch, card.n_out, default_split, pretrained=False, y_range=y_range)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[0]
        raise PaddyError(f"{path} does not fit {card.arch} with {card.n_out} outputs: {reason}") from None
    images_block, item_tfms, batch_tfms = image_pipeline(
        card.decode, card.item, tuple(card.size), tuple(card.item_size), card.augmentation
    )
    block = DataBlock(
        blocks=(images_block, CategoryBlock(vocab=card.vocab)),
        get_y=lambda _: card.vocab[0],  # no labels: only the test pipeline of these loaders is used, whatever the kind
        item_tfms=item_tfms,
        batch_tfms=batch_tfms,
    )
    dls = block.dataloaders(images, bs=card.step_bs, num_workers=card.num_workers)
    if card.normalize:
        dls.add_tfms([Normalize.from_stats(card.normalize["mean"], card.normalize["std"])], "after_batch")
    loss = TwoTargetLoss(card.n_first) if card.n_first else kind_loss(TargetKind(card.kind), 0.0)
    return Learner(dls, model, loss_func=loss)  # the loss gives TTA its activation (softmax, sigmoid, none)


def head_range(learn: Learner) -> tuple[float, float] | None:
    """The (low, high) of the model's number head (its SigmoidRange), as build_learner chose it from the
    targets: read back, never worked out a second time; None for a head of classes."""
    ranges = [m for m in learn.model.modules() if isinstance(m, SigmoidRange)]
    return (float(ranges[-1].low), float(ranges[-1].high)) if ranges else None


def card_for(learn: Learner, entry: ModelEntry, step_bs: int, data: CompetitionData, seed: int) -> ModelCard:
    """The card of a model `train` just trained."""
    loss, y_range = learn.loss_func, head_range(learn)
    return ModelCard(
        arch=entry.arch,
        size=list(entry.size),
        item=str(entry.item),
        item_size=list(entry.resize_to),
        step_bs=step_bs,
        num_workers=learn.dls.train.fake_l.num_workers,  # its processes (fastai's num_workers is 1 here)
        vocab=list(data.classes),
        n_out=learn.n_out,  # vision_learner records it
        n_first=loss.n_first if isinstance(loss, TwoTargetLoss) else None,
        normalize=normalisation(learn),
        seed=seed,
        augmentation=entry.augmentation(),
        decode=str(entry.decode),
        kind=str(data.kind),
        y_range=list(y_range) if y_range else None,
    )
