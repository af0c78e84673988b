"""Typed training settings, loadable from TOML files in configs/ and overridable by CLI flags.

Settings are layered: built-in defaults, then the demo preset (when no data is given),
then a config file entry, then CLI flags. Every layer is a plain dict of overrides so the
same validation runs whatever the source.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import tomllib

from paddy.errors import PaddyError

RESIZE_METHODS = ("squish", "crop", "pad")
PRECISIONS = ("auto", "fp16", "fp32")
BAD_IMAGE_POLICIES = ("fail", "skip")
AUTO = "auto"
MIN_STEP_BATCH = 2  # fastai's head has BatchNorm1d, which cannot train on one image per step


@dataclass(frozen=True)
class ModelEntry:
    """One model to train: the knobs of the course's `train(arch, size, item, accum)`."""

    arch: str = "convnext_small.fb_in22k"
    size: tuple[int, int] = (224, 224)
    item: str = "squish"
    presize: tuple[int, int] | None = None
    accum: int | str = 1
    bs: int = 64
    epochs: int = 12
    lr: float = 0.01
    finetune: bool = True
    seed: int | None = None
    valid_pct: float = 0.2
    precision: str = "auto"
    pretrained: bool = True
    weights: Path | None = None
    weight: float = 1.0
    multi_target: str | None = None
    label_smoothing: float = 0.0
    mixup: float | None = None

    @property
    def item_size(self) -> tuple[int, int]:
        """Size each image is resized to before batch augmentation (course: 480 for 224)."""
        h, w = self.size
        return self.presize or (2 * h, 2 * w)

    def describe(self) -> str:
        """Short human name, also used in run folder names."""
        h, w = self.size
        return f"{self.arch}-{h}x{w}-{self.item}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings, size as a list)."""
        d = asdict(self)
        d["size"] = list(self.size)
        d["presize"] = list(self.presize) if self.presize else None
        d["weights"] = str(self.weights) if self.weights else None
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
    elif isinstance(value, (list, tuple)) and all(isinstance(p, int) for p in value):
        parts = list(value)
    else:
        raise PaddyError(f"{name} {value!r} is not N or HxW (e.g. 224 or 288x224)")
    if len(parts) != 2 or min(parts) <= 0:
        raise PaddyError(f"{name} {value!r} must be one or two positive integers")
    return parts[0], parts[1]


def parse_accum(value: Any) -> int | str:
    """Accum is a positive integer or 'auto' (use the accum recorded by probe-memory)."""
    if value == AUTO:
        return AUTO
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PaddyError(f"accum {value!r} is not an integer or 'auto'") from None


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


def entry_problems(entry: ModelEntry) -> list[str]:
    """Every reason this entry cannot be trained, as 'field: problem' lines."""
    problems = []
    if problem := arch_problem(entry.arch):
        problems.append(f"arch: {problem}")
    if entry.item not in RESIZE_METHODS:
        problems.append(f"item: {entry.item!r} is not one of {', '.join(RESIZE_METHODS)}")
    if entry.bs < 1:
        problems.append(f"bs: {entry.bs} must be at least 1")
    if isinstance(entry.accum, int):
        if entry.accum < 1:
            problems.append(f"accum: {entry.accum} must be at least 1")
        elif entry.bs % entry.accum:
            problems.append(
                f"accum: {entry.accum} does not divide bs {entry.bs} (each step would overshoot the effective batch)"
            )
        elif entry.bs // entry.accum < MIN_STEP_BATCH:
            problems.append(
                f"accum: {entry.accum} leaves {entry.bs // entry.accum} image per step; "
                f"BatchNorm in the head needs at least {MIN_STEP_BATCH}"
            )
    if entry.epochs < 1:
        problems.append(f"epochs: {entry.epochs} must be at least 1")
    if entry.lr <= 0:
        problems.append(f"lr: {entry.lr} must be positive")
    if not 0 < entry.valid_pct < 1:
        problems.append(f"valid_pct: {entry.valid_pct} must be between 0 and 1")
    if entry.precision not in PRECISIONS:
        problems.append(f"precision: {entry.precision!r} is not one of {', '.join(PRECISIONS)}")
    if entry.weights is not None and not entry.weights.is_file():
        problems.append(f"weights: no file at {entry.weights}")
    if entry.weight < 0:
        problems.append(f"weight: {entry.weight} must not be negative")
    if not 0 <= entry.label_smoothing < 1:
        problems.append(f"label_smoothing: {entry.label_smoothing} must be in [0, 1)")
    if entry.mixup is not None and entry.mixup <= 0:
        problems.append(f"mixup: {entry.mixup} must be positive")
    if entry.mixup and entry.multi_target:
        problems.append("mixup: fastai's MixUp mixes one target; it cannot be combined with multi_target")
    return problems


def check_entry(entry: ModelEntry) -> ModelEntry:
    """Return the entry, or raise one PaddyError listing every problem."""
    if problems := entry_problems(entry):
        raise PaddyError("; ".join(problems))
    return entry


def apply_overrides(entry: ModelEntry, overrides: dict[str, Any]) -> ModelEntry:
    """A copy of `entry` with the given fields replaced; None values mean 'not given'."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - ENTRY_FIELDS)
    if unknown:
        raise PaddyError(f"unknown setting(s): {', '.join(unknown)}")
    for size_field in ("size", "presize"):
        if size_field in given:
            given[size_field] = parse_size(given[size_field], size_field)
    if "accum" in given:
        given["accum"] = parse_accum(given["accum"])
    if "weights" in given:
        given["weights"] = Path(given["weights"]).expanduser()
    return replace(entry, **given)


@dataclass(frozen=True)
class EnsembleConfig:
    """A TOML config: shared defaults plus a list of model entries."""

    models: list[ModelEntry]
    data: Path | None = None
    budget: str | None = None
    source: Path | None = field(default=None, compare=False)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning I/O and syntax problems into one clear line."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PaddyError(f"config file not found: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PaddyError(f"cannot read config {path}: {e}") from None


def load_config(path: Path, base: ModelEntry = ModelEntry()) -> EnsembleConfig:
    """Load and fully validate a config; every problem is reported with its entry and field."""
    raw = read_toml(path)
    defaults = raw.get("defaults", {})
    models = raw.get("models", [])
    if not isinstance(models, list) or not models:
        raise PaddyError(f"{path}: needs at least one [[models]] entry")
    problems: list[str] = []
    try:
        shared = apply_overrides(base, defaults)
    except PaddyError as e:
        raise PaddyError(f"{path} [defaults]: {e}") from None
    entries = []
    for i, model in enumerate(models):
        try:
            entry = apply_overrides(shared, model)
        except PaddyError as e:
            problems.append(f"models[{i}]: {e}")
            continue
        problems += [f"models[{i}] ({entry.arch}) {p}" for p in entry_problems(entry)]
        entries.append(entry)
    if problems:
        raise PaddyError(f"{path}: " + "; ".join(problems))
    data = raw.get("data")
    return EnsembleConfig(
        models=entries,
        data=Path(data).expanduser() if data else None,
        budget=raw.get("budget"),
        source=path,
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
