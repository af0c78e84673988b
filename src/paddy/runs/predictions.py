"""Test-set probabilities with the metadata later stages check (ids, class order, model).

Stored as safetensors (a tensor `probs`) with a JSON header in the safetensors metadata:
one file, no pickle, written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from paddy.core.errors import PaddyError
from paddy.core.files import atomic_write_bytes

FORMAT = "paddy-predictions-1"
PREDICTIONS_FILE = "predictions.safetensors"
SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Predictions:
    """Model outputs, one row per image (in `image_ids` order), one column per `vocab` name: class or tag
    probabilities, or the one predicted number (meta["kind"] says which)."""

    probs: np.ndarray
    image_ids: tuple[str, ...]
    vocab: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.probs.shape != (len(self.image_ids), len(self.vocab)):
            raise PaddyError(
                f"probabilities of shape {self.probs.shape} do not match "
                f"{len(self.image_ids)} images x {len(self.vocab)} classes"
            )

    @property
    def kind(self) -> str:
        """The target kind these predict (files of releases before 0.3 predicted single-label classes)."""
        return str(self.meta.get("kind", "single"))

    def run_names(self) -> list[str]:
        """The runs these came from: an ensemble's members, an entry's fold runs, or the one run."""
        if members := self.meta.get("members"):
            return [str(member["run"]) for member in members]
        return [str(run) for run in self.meta.get("runs") or [self.meta.get("run")]]

    def output_problem(self) -> str | None:
        """Why these cannot be the outputs of their target kind, or None: class probabilities are softmax rows,
        tag probabilities lie in [0, 1], numbers are finite."""
        if not np.isfinite(self.probs).all():
            return "predictions contain NaN or infinite values"
        if self.kind in ("regression", "ordinal"):
            return None
        if (self.probs < 0).any() or (self.kind == "multi" and (self.probs > 1 + SUM_TOLERANCE).any()):
            return "predictions contain values outside [0, 1] (not probabilities)"
        if self.kind == "multi":
            return None
        sums = self.probs.sum(axis=1)
        worst = int(np.abs(sums - 1).argmax()) if len(sums) else 0
        if len(sums) and abs(sums[worst] - 1) > SUM_TOLERANCE:
            return f"row for {self.image_ids[worst]} sums to {sums[worst]:.4f}, not 1 (not softmax probabilities)"
        return None

    def labels(self) -> list[str]:
        """The most probable class of each image."""
        return [self.vocab[i] for i in self.probs.argmax(axis=1)]


def reordered(
    probs: np.ndarray, ids: tuple[str, ...], vocab: tuple[str, ...], to_ids: tuple[str, ...], to_vocab: tuple[str, ...]
) -> np.ndarray:
    """`probs` (rows `ids`, columns `vocab`) in the row order `to_ids` and column order `to_vocab`: predictions
    are joined on image ids and class names, never on position. Every name asked for must be there."""
    rows = {image_id: i for i, image_id in enumerate(ids)}
    columns = {label: j for j, label in enumerate(vocab)}
    return probs[np.ix_([rows[i] for i in to_ids], [columns[c] for c in to_vocab])]


def save_predictions(preds: Predictions, path: Path) -> Path:
    """Write `preds` atomically as safetensors with a JSON header; never probabilities that cannot be right."""
    if problem := preds.output_problem():
        raise PaddyError(f"not saving {path}: {problem}")
    header = {"format": FORMAT, "image_ids": list(preds.image_ids), "vocab": list(preds.vocab), "meta": preds.meta}
    data = save({"probs": np.ascontiguousarray(preds.probs, dtype=np.float32)}, metadata={"paddy": json.dumps(header)})
    return atomic_write_bytes(path, data)


def read_header(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """The JSON header and the probabilities of a safetensors predictions file."""
    try:
        with safe_open(path, framework="np") as f:
            header = json.loads((f.metadata() or {}).get("paddy", "{}"))
            probs = f.get_tensor("probs")
    except FileNotFoundError:
        raise PaddyError(f"no predictions file at {path}") from None
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise PaddyError(f"{path} is not a readable predictions file ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise PaddyError(f"{path} is not a paddy predictions file (format {found!r})")
    return header, probs


def load_predictions(path: Path) -> Predictions:
    """Read a predictions file written by `save_predictions` (no unpickling involved), checked whole:
    a malformed header or probabilities that are not softmax rows are one PaddyError naming the file."""
    header, probs = read_header(path)
    ids, vocab, meta = header.get("image_ids"), header.get("vocab"), header.get("meta")
    if not (isinstance(ids, list) and isinstance(vocab, list) and isinstance(meta, dict)):
        raise PaddyError(f"{path}: malformed header (needs image_ids and vocab lists and a meta table)")
    if not all(isinstance(name, str) for name in [*ids, *vocab]):
        raise PaddyError(f"{path}: malformed header (image ids and class names must be text)")
    try:
        preds = Predictions(probs, tuple(ids), tuple(vocab), meta)
    except PaddyError as e:
        raise PaddyError(f"{path}: {e}") from None
    if problem := preds.output_problem():
        raise PaddyError(f"{path}: {problem}")
    return preds
