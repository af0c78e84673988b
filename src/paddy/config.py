"""Typed training settings, loadable from TOML files in configs/ and overridable by CLI flags.

Settings are layered: built-in defaults, then the demo preset (when no data is given),
then a config file entry, then CLI flags. Every layer is a plain dict of overrides so the
same typed validation runs whatever the source: a value of the wrong type is an error
naming its field, never coerced.
"""

from __future__ import annotations

import difflib
import math
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union

from paddy.errors import PaddyError


class ResizeMethod(StrEnum):
    """How each image is resized to `item_size` before batch augmentation (fastai's Resize)."""

    squish = "squish"
    crop = "crop"
    pad = "pad"


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


AUTO = "auto"
Accum = Union[int, Literal["auto"]]
MIN_STEP_BATCH = 2  # fastai's head has BatchNorm1d, which cannot train on one image per step
# Old TOML keys, still read for one release with a warning: key -> its new name.
RENAMED_KEYS = {"weights": "pretrained_file", "weight": "ensemble_weight", "presize": "item_size"}
CONFIG_KEYS = ("data", "budget", "defaults", "models")


@dataclass(frozen=True)
class ModelEntry:
    """One model to train: the knobs of the course's `train(arch, size, item, accum)`.

    The only place a default setting is written; help texts and docs read them from here."""

    arch: str = "convnext_small.fb_in22k"
    size: tuple[int, int] = (224, 224)
    item: ResizeMethod = ResizeMethod.squish
    item_size: tuple[int, int] | None = None  # None: twice `size`, as the course's Resize(480) for 224
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
    ema: float | None = None  # decay of an average of the weights (e.g. 0.9998) that validates, predicts and is saved
    gpus: int = 1  # data-parallel processes (one per GPU) that train this one run; each takes bs / gpus images

    @property
    def resize_to(self) -> tuple[int, int]:
        """Size each image is resized to before batch augmentation (course: 480 for 224)."""
        h, w = self.size
        return self.item_size or (2 * h, 2 * w)

    @property
    def process_bs(self) -> int:
        """Each data-parallel process's share of the effective batch (all of it with one GPU)."""
        return self.bs // self.gpus

    @property
    def resolved_accum(self) -> int:
        """The accum factor, once 'auto' has been replaced by the memory probe's choice."""
        if self.accum == AUTO:
            raise PaddyError("accum 'auto' must be resolved from a memory probe before training")
        return self.accum

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
        return d


# Settings added since paddy 0.2: a run that did not record one was trained with what 0.2 did, which is
# the default except where BEHAVIOUR_OF_0_2 says otherwise.
SETTINGS_SINCE_0_2 = (
    *("folds", "fold", "fold_seed", "opt"),
    *("aug", "flip", "flip_vert", "max_rotate", "max_zoom", "max_warp", "max_lighting", "min_scale"),
    *("sizes", "ema", "gpus"),
)
BEHAVIOUR_OF_0_2 = {"opt": str(OptimizerChoice.fastai)}


def unrecorded_settings() -> dict[str, Any]:
    """What a run that records none of the settings added since paddy 0.2 was trained with."""
    defaults = ModelEntry().to_json()
    return {k: BEHAVIOUR_OF_0_2.get(k, defaults[k]) for k in SETTINGS_SINCE_0_2}


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


def parse_size(value: Any, name: str = "size") -> tuple[int, int]:
    """Accept 224, "224", "288x224" (height x width) or [288, 224]."""
    if isinstance(value, bool):
        raise PaddyError(f"{name} {value!r} is not a size")
    if isinstance(value, int):
        parts = [value, value]
    elif isinstance(value, str):
        try:
            parts = [int(p) for p in value.lower().split("x")]
        except ValueError:
            raise PaddyError(f"{name} {value!r} is not N or HxW (e.g. 224 or 288x224)") from None
        if len(parts) == 1:
            parts = parts * 2
    elif isinstance(value, (list, tuple)) and all(isinstance(p, int) and not isinstance(p, bool) for p in value):
        parts = list(value)
    else:
        raise PaddyError(f"{name} {value!r} is not N or HxW (e.g. 224 or 288x224)")
    if len(parts) != 2 or min(parts) <= 0:
        raise PaddyError(f"{name} {value!r} must be one or two positive integers")
    return parts[0], parts[1]


def parse_sizes(value: Any) -> tuple[tuple[int, int], ...]:
    """Accept [128, 192, 256] (TOML; HxW sizes as text or pairs) or "128,192,256" (a flag)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise PaddyError(f"sizes {value!r} is not a list of sizes (e.g. [128, 192, 256] or 128,192,256)")
    return tuple(parse_size(item.strip() if isinstance(item, str) else item, "sizes") for item in items)


def parse_accum(value: Any) -> Accum:
    """Accum is a whole number or 'auto' (use the accum recorded by probe-memory)."""
    if value == AUTO or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise PaddyError(f"accum {value!r} is not a whole number or 'auto'")


def typed_value(name: str, value: Any, hint: Any) -> Any:
    """`value` checked against the field's type hint: no coercion but int -> float and text -> Path."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        options = [h for h in typing.get_args(hint) if h is not type(None)]
        return typed_value(name, value, options[0]) if len(options) == 1 else value
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        if value in list(hint):
            return hint(value)
        raise PaddyError(f"{name}: {value!r} is not one of {', '.join(hint)}")
    if hint is bool and not isinstance(value, bool):
        raise PaddyError(f"{name}: {value!r} is not true or false")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise PaddyError(f"{name}: {value!r} is not a whole number")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PaddyError(f"{name}: {value!r} is not a number")
        if not math.isfinite(value):
            raise PaddyError(f"{name}: {value!r} is not a finite number")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise PaddyError(f"{name}: {value!r} is not text")
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise PaddyError(f"{name}: {value!r} is not a file path")
        return Path(value).expanduser()
    return value


@lru_cache(maxsize=1)
def entry_hints() -> dict[str, Any]:
    return typing.get_type_hints(ModelEntry)


def field_value(name: str, value: Any) -> Any:
    """One setting, parsed (sizes, accum) or type-checked against ModelEntry's annotation."""
    if name in ("size", "item_size"):
        return parse_size(value, name)
    if name == "sizes":
        return parse_sizes(value)
    if name == "accum":
        return parse_accum(value)
    return typed_value(name, value, entry_hints()[name])


def unknown_key_problem(key: str, known: set[str] | tuple[str, ...], what: str) -> str:
    """'unknown setting colour' with the closest known names, so a typo is never silently ignored."""
    close = difflib.get_close_matches(key, sorted(known), n=2, cutoff=0.6)
    return f"unknown {what} {key!r}" + (f"; did you mean {' or '.join(close)}?" if close else "")


def override_problems(overrides: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The given (non-None) overrides parsed and typed, and a 'field: problem' line for each bad one."""
    parsed, problems = {}, []
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in ENTRY_FIELDS:
            problems.append(unknown_key_problem(name, ENTRY_FIELDS, "setting"))
            continue
        try:
            parsed[name] = field_value(name, value)
        except PaddyError as e:
            message = str(e)
            problems.append(message if message.startswith(f"{name}") else f"{name}: {message}")
    return parsed, problems


def apply_overrides(entry: ModelEntry, overrides: dict[str, Any]) -> ModelEntry:
    """A copy of `entry` with the given fields replaced; None values mean 'not given'."""
    parsed, problems = override_problems(overrides)
    if problems:
        raise PaddyError("; ".join(problems))
    return replace(entry, **parsed)


@lru_cache(maxsize=1)
def _timm_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def arch_problem(arch: str) -> str | None:
    """Why `arch` is not a timm model name (with close suggestions), or None if it is."""
    import timm

    if timm.is_model(arch):
        if "." not in arch or arch in timm.list_pretrained():
            return None
        return f"{arch!r} has an unknown pretrained tag; see timm.list_pretrained({arch.split('.')[0]!r} + '*')"
    close = difflib.get_close_matches(arch, _timm_names(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    return f"unknown arch {arch!r}{hint}"


def augmentation_problems(entry: ModelEntry) -> list[str]:
    """Augmentation amounts aug_transforms would take but that make no sense."""
    problems = []
    if entry.max_rotate < 0:
        problems.append(f"max_rotate: {entry.max_rotate} must not be negative (degrees)")
    if entry.max_zoom < 1:
        problems.append(f"max_zoom: {entry.max_zoom} must be at least 1 (1: no zoom)")
    for name in ("max_warp", "max_lighting"):
        if not 0 <= getattr(entry, name) < 1:
            problems.append(f"{name}: {getattr(entry, name)} must be in [0, 1)")
    if not 0 < entry.min_scale <= 1:
        problems.append(f"min_scale: {entry.min_scale} must be in (0, 1]")
    return problems


def sizes_problem(entry: ModelEntry) -> str | None:
    """Why progressive resizing's `sizes` cannot train this entry, or None."""
    sizes = entry.sizes
    if not sizes:
        return None
    if sizes[-1] != entry.size:
        return (
            f"ends at {'x'.join(map(str, sizes[-1]))} but size is {'x'.join(map(str, entry.size))}: the last size "
            f"is the one the model validates, predicts and is saved at; set size to it"
        )
    if any(a > b for small, large in zip(sizes, sizes[1:]) for a, b in zip(small, large)):
        return f"{[list(s) for s in sizes]} must grow (smallest first), as progressive resizing does"
    if entry.epochs < len(sizes):
        return f"{len(sizes)} sizes need at least {len(sizes)} epochs (one per size), not {entry.epochs}"
    return None


def entry_problems(entry: ModelEntry) -> list[str]:
    """Every reason this entry cannot be trained, as 'field: problem' lines."""
    problems = []
    if problem := arch_problem(entry.arch):
        problems.append(f"arch: {problem}")
    if entry.gpus < 1:
        problems.append(f"gpus: {entry.gpus} must be at least 1")
    elif entry.bs % entry.gpus:
        problems.append(f"gpus: {entry.gpus} does not divide bs {entry.bs} (each process takes bs / gpus images)")
    if entry.bs < 1:
        problems.append(f"bs: {entry.bs} must be at least 1")
    elif entry.gpus >= 1 and entry.accum != AUTO and (problem := accum_problem(entry.process_bs, entry.accum)):
        where = f" per process (bs {entry.bs} over {entry.gpus} GPUs)" if entry.gpus > 1 else ""
        problems.append(f"accum: {problem}{where}")
    if entry.epochs < 1:
        problems.append(f"epochs: {entry.epochs} must be at least 1")
    if entry.lr <= 0:
        problems.append(f"lr: {entry.lr} must be positive")
    if not 0 < entry.valid_pct < 1:
        problems.append(f"valid_pct: {entry.valid_pct} must be between 0 and 1")
    if entry.pretrained_file is not None and not entry.pretrained_file.is_file():
        problems.append(f"pretrained_file: no file at {entry.pretrained_file}")
    if entry.ensemble_weight < 0:
        problems.append(f"ensemble_weight: {entry.ensemble_weight} must not be negative")
    if not 0 <= entry.label_smoothing < 1:
        problems.append(f"label_smoothing: {entry.label_smoothing} must be in [0, 1)")
    if entry.mixup is not None and entry.mixup <= 0:
        problems.append(f"mixup: {entry.mixup} must be positive")
    if entry.folds is not None and entry.folds < 2:
        problems.append(f"folds: {entry.folds} must be at least 2")
    if entry.fold is not None and entry.folds is None:
        problems.append("fold: needs folds (how many folds the training images are split into)")
    elif entry.fold is not None and entry.folds is not None and not 1 <= entry.fold <= entry.folds:
        problems.append(f"fold: {entry.fold} is not one of 1..{entry.folds}")
    problems += augmentation_problems(entry)
    if problem := sizes_problem(entry):
        problems.append(f"sizes: {problem}")
    if entry.ema is not None and not 0 < entry.ema < 1:
        problems.append(f"ema: {entry.ema} must be in (0, 1), e.g. 0.9998")
    if entry.mixup and entry.multi_target:
        problems.append("mixup: fastai's MixUp mixes one target; it cannot be combined with multi_target")
    return problems


def check_entry(entry: ModelEntry) -> ModelEntry:
    """Return the entry, or raise one PaddyError listing every problem."""
    if problems := entry_problems(entry):
        raise PaddyError("; ".join(problems))
    return entry


@dataclass(frozen=True)
class EnsembleConfig:
    """A TOML config: shared defaults plus a list of model entries."""

    models: list[ModelEntry]
    data: Path | None = None
    budget: str | None = None
    source: Path | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)  # e.g. old key names still read

    @property
    def name(self) -> str:
        """The config's name in run folder names."""
        return self.source.stem if self.source else "config"


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning I/O, encoding and syntax problems into one clear line."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PaddyError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise PaddyError(f"config {path} is a folder, not a TOML file") from None
    except UnicodeDecodeError:
        raise PaddyError(f"cannot read config {path}: not UTF-8 text") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PaddyError(f"cannot read config {path}: {e}") from None


def renamed_keys(table: dict[str, Any], where: str, warnings: list[str]) -> dict[str, Any]:
    """`table` with old key names replaced by their new ones, each noted in `warnings`."""
    renamed = {}
    for key, value in table.items():
        new = RENAMED_KEYS.get(key)
        if new and new in table:
            raise PaddyError(f"{where}: both {key!r} and its new name {new!r} are set; keep {new!r}")
        if new:
            warnings.append(f"{where}: {key!r} is now called {new!r}; the old name will stop working in 0.3")
        renamed[new or key] = value
    return renamed


def config_table(raw: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    """A top-level value of the expected TOML kind ([defaults] a table, [[models]] a list of tables)."""
    value = raw.get(key, kind())
    if not isinstance(value, kind) or (kind is list and not all(isinstance(m, dict) for m in value)):
        shape = "a [defaults] table" if kind is dict else "[[models]] tables"
        raise PaddyError(f"{path}: {key} must be {shape}, not {type(value).__name__}")
    return value


def top_level_problems(raw: dict[str, Any]) -> list[str]:
    """Unknown top-level keys or sections (a misspelled [[model]] must not fall back to defaults)."""
    problems = [unknown_key_problem(key, CONFIG_KEYS, "key or section") for key in raw if key not in CONFIG_KEYS]
    for key in ("data", "budget"):
        if key in raw and not isinstance(raw[key], (str, int, float) if key == "budget" else str):
            problems.append(f"{key}: {raw[key]!r} is not text")
    return problems


def load_config(path: Path, base: ModelEntry = ModelEntry()) -> EnsembleConfig:
    """Load and fully validate a config; every problem is reported with its entry and field."""
    raw = read_toml(path)
    if problems := top_level_problems(raw):
        raise PaddyError(f"{path}: " + "; ".join(problems))
    warnings: list[str] = []
    defaults = renamed_keys(config_table(raw, "defaults", dict, path), "[defaults]", warnings)
    models = config_table(raw, "models", list, path)
    if not models:
        raise PaddyError(f"{path}: needs at least one [[models]] entry")
    parsed_defaults, problems = override_problems(defaults)
    if problems:
        raise PaddyError(f"{path} [defaults]: " + "; ".join(problems))
    shared = replace(base, **parsed_defaults)
    entries = []
    for i, model in enumerate(models):
        parsed, bad = override_problems(renamed_keys(model, f"models[{i}]", warnings))
        entry = replace(shared, **parsed)
        problems += [f"models[{i}] ({entry.arch}) {p}" for p in bad + entry_problems(entry)]
        entries.append(entry)
    if problems:
        raise PaddyError(f"{path}: " + "; ".join(problems))
    data = raw.get("data")
    return EnsembleConfig(
        models=entries,
        data=Path(data).expanduser() if data else None,
        budget=str(raw["budget"]) if "budget" in raw else None,
        source=path,
        warnings=tuple(warnings),
    )


def select_entry(config: EnsembleConfig, which: str | None) -> ModelEntry:
    """Pick one entry of a config by index or arch name (the only one if there is one)."""
    if which is None:
        if len(config.models) == 1:
            return config.models[0]
        raise PaddyError(f"{config.source} has {len(config.models)} entries: choose one with --entry INDEX|ARCH")
    if which.isdigit() and int(which) < len(config.models):
        return config.models[int(which)]
    matches = [m for m in config.models if m.arch == which]
    if not matches:
        raise PaddyError(f"no entry {which!r} in {config.source}")
    return matches[0]
