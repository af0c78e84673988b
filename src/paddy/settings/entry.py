"""The model entry: the knobs of one training run, the only place their defaults are written, and
the accum rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Union


class ResizeMethod(StrEnum):
    """How each image is resized to `item_size` before batch augmentation (fastai's Resize)."""

    squish = "squish"
    crop = "crop"
    pad = "pad"


class DecodeChoice(StrEnum):
    """How each image file becomes pixels before the item resize (on uint8 tensors either way):
    torchvision's decoder, or PIL's (with `Image.draft` when the item size is at most half the image)."""

    pil = "pil"
    torchvision = "torchvision"


class Precision(StrEnum):
    """auto: fp16 mixed precision on CUDA, fp32 on the CPU."""

    auto = "auto"
    fp16 = "fp16"
    fp32 = "fp32"


class OptimizerChoice(StrEnum):
    """fastai's Adam (one parameter tensor at a time), or torch's AdamW with the same maths in
    multi-tensor (foreach) or fused kernels."""

    fastai = "fastai"
    adamw_foreach = "adamw-foreach"
    adamw_fused = "adamw-fused"


class BadImages(StrEnum):
    """What to do with training images PIL cannot decode."""

    fail = "fail"
    skip = "skip"


class Tracker(StrEnum):
    """Experiment trackers a run can log to (`--tracker`), each offline by default."""

    tensorboard = "tensorboard"
    wandb = "wandb"
    mlflow = "mlflow"
    csv = "csv"


class Keep(StrEnum):
    """Which epoch's weights a run keeps: the best on the competition's metric (its validation set: paddy
    always holds images out, a `valid_pct` share or a fold), or the last one trained."""

    best = "best"
    last = "last"


AUTO = "auto"


Accum = Union[int, Literal["auto"]]


MIN_STEP_BATCH = 2  # fastai's head has BatchNorm1d, which cannot train on one image per step


@dataclass(frozen=True)
class ModelEntry:
    """One model to train: the knobs of the course's `train(arch, size, item, accum)`.

    The only place a default setting is written; help texts and docs read them from here."""

    arch: str = "convnext_small.fb_in22k"
    size: tuple[int, int] = (224, 224)
    item: ResizeMethod = ResizeMethod.squish
    item_size: tuple[int, int] | None = None  # None: twice `size`, as the course's Resize(480) for 224
    decode: DecodeChoice = DecodeChoice.torchvision  # the fastest on BENCHMARKS.md's machine (section 2b)
    accum: Accum = 1
    bs: int = 64
    epochs: int = 12
    lr: float = 0.01
    finetune: bool = True
    seed: int | None = None
    valid_pct: float = 0.2
    precision: Precision = Precision.auto
    pretrained: bool = True
    pretrained_file: Path | None = None
    ensemble_weight: float = 1.0
    multi_target: str | None = None
    label_smoothing: float = 0.0
    mixup: float | None = None
    folds: int | None = None  # k-fold CV: train one run per fold on stratified folds instead of valid_pct
    fold: int | None = None  # which fold (1..folds) this run holds out; None: every fold, one run each
    fold_seed: int = 0  # draws the folds: every entry with the same folds and fold_seed shares them
    opt: OptimizerChoice = OptimizerChoice.adamw_fused  # the fastest on BENCHMARKS.md's machine, same maths
    # Batch augmentation (fastai's aug_transforms); aug = false: none at all, each image resized to `size`
    aug: bool = True
    flip: bool = True  # left-right; wrong for text, digits, or where a side means something
    flip_vert: bool = False  # also up-down (and 90-degree turns): aerial or microscope images
    max_rotate: float = 10.0
    max_zoom: float = 1.1
    max_warp: float = 0.2
    max_lighting: float = 0.2
    min_scale: float = 0.75  # the course's random crop keeps at least this share of the image
    # Progressive resizing: the sizes trained at, smallest first, the epochs split across them; the last is `size`
    sizes: tuple[tuple[int, int], ...] | None = None
    keep: Keep = Keep.best  # the epoch whose weights are saved and predict (timm's model_best, Ultralytics' best.pt)
    patience: int | None = None  # stop after this many epochs without a better metric; None: train every epoch
    ema: float | None = None  # decay of an average of the weights (e.g. 0.9998) that validates, predicts and is saved
    trackers: tuple[Tracker, ...] = ()  # experiment trackers logged to; they never change what the run learns
    gpus: int = 1  # data-parallel processes (one per GPU) that train this one run; each takes bs / gpus images
    channels_last: bool = False  # model and batches in torch.channels_last while fitting (BENCHMARKS.md 7)
    compile: bool = False  # torch.compile the model: minutes of compiling first, then faster steps on a GPU

    @property
    def resize_to(self) -> tuple[int, int]:
        """Size each image is resized to before batch augmentation (course: 480 for 224)."""
        h, w = self.size
        return self.item_size or (2 * h, 2 * w)

    @property
    def process_bs(self) -> int:
        """Each data-parallel process's share of the effective batch (all of it with one GPU)."""
        return self.bs // self.gpus

    def describe(self) -> str:
        """Short human name, also used in run folder names."""
        h, w = self.size
        fold = f"-fold{self.fold}of{self.folds}" if self.fold is not None else ""
        return f"{self.arch}-{h}x{w}-{self.item}{fold}"

    def augmentation(self) -> dict[str, Any] | None:
        """fastai aug_transforms arguments, or None without augmentation."""
        if not self.aug:
            return None
        return {
            "do_flip": self.flip,
            "flip_vert": self.flip_vert,
            "max_rotate": self.max_rotate,
            "max_zoom": self.max_zoom,
            "max_warp": self.max_warp,
            "max_lighting": self.max_lighting,
            "min_scale": self.min_scale,
        }

    def stages(self) -> list[tuple[tuple[int, int], int]]:
        """Each training size with its epochs: `sizes` share the epochs (the later, larger sizes get
        what does not divide evenly), or every epoch at `size`."""
        sizes = self.sizes or (self.size,)
        base, extra = divmod(self.epochs, len(sizes))
        return [(size, base + (i >= len(sizes) - extra)) for i, size in enumerate(sizes)]

    def per_fold(self) -> list[ModelEntry]:
        """The runs this entry trains: one per fold with `folds` and no `fold`, else itself."""
        if self.folds is None or self.fold is not None:
            return [self]
        return [replace(self, fold=fold) for fold in range(1, self.folds + 1)]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings, sizes as lists, choices as their names)."""
        d = asdict(self)
        d["size"] = list(self.size)
        d["item_size"] = list(self.item_size) if self.item_size else None
        d["sizes"] = [list(size) for size in self.sizes] if self.sizes else None
        d["pretrained_file"] = str(self.pretrained_file) if self.pretrained_file else None
        d["item"], d["precision"], d["opt"] = str(self.item), str(self.precision), str(self.opt)
        d["keep"] = str(self.keep)
        d["trackers"] = [str(tracker) for tracker in self.trackers]

        d["decode"] = str(self.decode)
        return d


DEMO_PRESET: dict[str, Any] = {
    "arch": "resnet18",
    "size": (64, 64),
    "bs": 16,
    "epochs": 4,
    "lr": 0.005,
    "finetune": False,
    "pretrained": False,
}


ENTRY_FIELDS = {f.name for f in fields(ModelEntry)}


def default_of(name: str) -> Any:
    """The default of a ModelEntry field, for help texts (written once, in the dataclass)."""
    return getattr(ModelEntry(), name)


def accum_problem(bs: int, accum: int) -> str | None:
    """Why `accum` cannot split an effective batch of `bs` images, or None: the accum rule. With several
    data-parallel processes, `bs` is one process's share (`ModelEntry.process_bs`)."""
    if accum < 1:
        return f"{accum} must be at least 1"
    if bs % accum:
        return f"{accum} does not divide bs {bs} (each step would overshoot the effective batch)"
    if bs // accum < MIN_STEP_BATCH:
        return f"{accum} leaves {bs // accum} image per step; BatchNorm in the head needs at least {MIN_STEP_BATCH}"
    return None


def accum_choices(bs: int) -> list[int]:
    """accum = 1, 2, 4, ... that the accum rule allows for `bs` (what probes and OOM retries try)."""
    choices, accum = [], 1
    while accum_problem(bs, accum) is None:
        choices.append(accum)
        accum *= 2
    return choices
