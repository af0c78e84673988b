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

from paddy.errors import PaddyError
from paddy.files import atomic_write_bytes

FORMAT = "paddy-predictions-1"
PREDICTIONS_FILE = "predictions.safetensors"


@dataclass(frozen=True)
class Predictions:
    """Probabilities, one row per test image (in `image_ids` order), one column per class."""

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

    def labels(self) -> list[str]:
        """The most probable class of each image."""
        return [self.vocab[i] for i in self.probs.argmax(axis=1)]


def save_predictions(preds: Predictions, path: Path) -> Path:
    """Write `preds` atomically as safetensors with a JSON header."""
    header = {"format": FORMAT, "image_ids": list(preds.image_ids), "vocab": list(preds.vocab), "meta": preds.meta}
    data = save({"probs": np.ascontiguousarray(preds.probs, dtype=np.float32)}, metadata={"paddy": json.dumps(header)})
    return atomic_write_bytes(path, data)


def load_predictions(path: Path) -> Predictions:
    """Read a predictions file written by `save_predictions` (no unpickling involved)."""
    try:
        with safe_open(path, framework="np") as f:
            header = json.loads((f.metadata() or {}).get("paddy", "{}"))
            probs = f.get_tensor("probs")
    except FileNotFoundError:
        raise PaddyError(f"no predictions file at {path}") from None
    except (SafetensorError, OSError, json.JSONDecodeError, KeyError) as e:
        raise PaddyError(f"{path} is not a readable predictions file ({e})") from None
    if header.get("format") != FORMAT:
        raise PaddyError(f"{path} is not a paddy predictions file (format {header.get('format')!r})")
    return Predictions(probs, tuple(header["image_ids"]), tuple(header["vocab"]), header["meta"])
