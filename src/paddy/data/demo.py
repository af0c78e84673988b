"""The built-in demo dataset: a small generated competition in the paddy layout, made once in the
user cache, so `paddy train` runs with no data at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

DEMO_CLASSES = (
    "bacterial_leaf_blight",
    "bacterial_leaf_streak",
    "bacterial_panicle_blight",
    "blast",
    "brown_spot",
    "dead_heart",
    "downy_mildew",
    "hispa",
    "normal",
    "tungro",
)


DEMO_VARIETIES = ("ADT45", "KarnatakaPonni", "Ponni", "AtchayaPonni")


DEMO_VERSION = 2


DEMO_MARKER = "PADDY_DEMO.txt"  # in every demo competition paddy makes: no Kaggle competition's data


def mark_as_demo(root: Path) -> Path:
    """Mark a generated competition folder as paddy's demo data (its predictions can never be submitted)."""
    (root / DEMO_MARKER).write_text("Made by paddy to try it on: not a Kaggle competition's data.\n")
    return root


def is_demo_data(root: Path) -> bool:
    """Whether `root` is demo data paddy made: marked, or the built-in demo's folder (made before the marker)."""
    return (root / DEMO_MARKER).is_file() or root.absolute() == demo_dir().absolute()


def demo_dir() -> Path:
    """Where the generated demo dataset lives (PADDY_DEMO_DIR overrides the user cache)."""
    if env := os.environ.get("PADDY_DEMO_DIR"):
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "paddy" / f"demo-v{DEMO_VERSION}"


def _demo_image(rng: np.random.Generator, label_index: int, size: tuple[int, int]) -> Image.Image:
    """A 'leaf' whose colour and stripe frequency depend on the class, with noise."""
    h, w = size
    hue = np.array([0.2 + 0.6 * (label_index % 5) / 4, 0.8 - 0.5 * (label_index // 5), 0.3])
    rows = np.linspace(0, np.pi * (2 + label_index), h)[:, None, None]
    stripes = 0.25 * np.sin(rows + rng.uniform(0, np.pi)) * np.ones((h, w, 1))
    noise = rng.normal(0, 0.08, (h, w, 3))
    pixels = np.clip(hue + stripes + noise, 0, 1)
    return Image.fromarray((pixels * 255).astype(np.uint8))


def write_demo_dataset(
    root: Path, per_class: int = 20, n_test: int = 20, size: tuple[int, int] = (64, 48), seed: int = 0
) -> Path:
    """Generate a small dataset in the paddy layout (portrait images, 10 classes)."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, label in enumerate(DEMO_CLASSES):
        (root / "train_images" / label).mkdir(parents=True)
        for i in range(per_class):
            image_id = f"{100000 + index * 1000 + i}.jpg"
            _demo_image(rng, index, size).save(root / "train_images" / label / image_id, quality=90)
            rows.append((image_id, label, DEMO_VARIETIES[i % len(DEMO_VARIETIES)], 45 + i % 30))
    pd.DataFrame(rows, columns=["image_id", "label", "variety", "age"]).to_csv(root / "train.csv", index=False)
    (root / "test_images").mkdir()
    test_ids = [f"{200001 + i}.jpg" for i in range(n_test)]
    for i, image_id in enumerate(test_ids):
        _demo_image(rng, i % len(DEMO_CLASSES), size).save(root / "test_images" / image_id, quality=90)
    pd.DataFrame({"image_id": test_ids, "label": ""}).to_csv(root / "sample_submission.csv", index=False)
    return root


def ensure_demo_dataset(root: Path | None = None) -> Path:
    """The demo dataset, generated once into a temp folder and renamed into place."""
    root = root or demo_dir()
    if (root / "sample_submission.csv").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=root.parent))
    try:
        mark_as_demo(write_demo_dataset(staging / "data"))
        os.replace(staging / "data", root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
