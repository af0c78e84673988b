"""Finding and checking competition data in the Kaggle layout, and the built-in demo dataset.

The layout is `train_images/<label>/*.jpg`, `test_images/*.jpg`, `sample_submission.csv`
(and usually `train.csv`). Everything is checked up front so a long run never dies an hour
in on a missing folder or a corrupt JPEG.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from paddy.config import BadImages
from paddy.errors import PaddyError
from paddy.files import read_csv

COMPETITION = "paddy-disease-classification"
KAGGLE_INPUT = Path("/kaggle/input")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

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


@dataclass(frozen=True)
class CompetitionData:
    """A checked competition folder: class folders with images, sorted test images."""

    root: Path
    classes: tuple[str, ...]
    train_images: tuple[Path, ...]
    test_images: tuple[Path, ...]
    is_demo: bool = False
    label_column: str = "label"  # the sample submission's second column
    images_checked: bool = False  # every image was decoded once (see without_bad_images)

    @property
    def train_dir(self) -> Path:
        return self.root / "train_images"

    @property
    def sample_submission(self) -> Path:
        return self.root / "sample_submission.csv"

    @property
    def test_ids(self) -> list[str]:
        """Kaggle's image_id of each test image, in the stable (sorted) test order."""
        return [p.name for p in self.test_images]

    @property
    def as_flag(self) -> str:
        """The --data option that names this folder in a suggested command ('' for the demo)."""
        return "" if self.is_demo else f" --data {self.root}"

    def identity(self) -> dict[str, str]:
        """What predictions record about their data, so submit can refuse another dataset's sample."""
        return {"data": str(self.root), "test_ids_sha256": ids_fingerprint(self.test_ids)}

    def smallest_class(self) -> str:
        """The class with the fewest training images (what the memory probe trains on)."""
        counts = {c: 0 for c in self.classes}
        for path in self.train_images:
            counts[path.parent.name] += 1
        return min(counts, key=lambda c: (counts[c], c))


def ids_fingerprint(ids: list[str] | tuple[str, ...]) -> str:
    """A short digest of a set of image ids (order does not matter)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def visible(path: Path) -> bool:
    """Hidden files and folders (`.ipynb_checkpoints`, macOS `._*` files, dotfiles) are not data."""
    return not path.name.startswith(".")


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name for a stable order."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and visible(p) and p.is_file())


def sample_label_column(root: Path, test_images: list[Path]) -> str:
    """The sample submission's label column, once its ids are checked against the test images."""
    sample_csv = root / "sample_submission.csv"
    if not sample_csv.is_file():
        raise PaddyError(f"{root} has no sample_submission.csv")
    sample = read_csv(sample_csv, dtype=str, keep_default_na=False)
    if len(sample.columns) != 2:
        raise PaddyError(f"{sample_csv} should have two columns (image id, label), not {list(sample.columns)}")
    id_column, label_column = sample.columns
    ids, test_ids = set(sample[id_column]), {p.name for p in test_images}
    no_image, not_listed = sorted(ids - test_ids), sorted(test_ids - ids)
    if no_image or not_listed:
        parts = [f"{len(no_image)} ids without a test image (e.g. {no_image[0]})"] if no_image else []
        parts += [f"{len(not_listed)} test images it does not list (e.g. {not_listed[0]})"] if not_listed else []
        raise PaddyError(f"{sample_csv} does not match test_images/: {' and '.join(parts)}")
    return label_column


def check_layout(root: Path) -> CompetitionData:
    """Validate the competition layout; raise one clear line naming what is missing."""
    if not root.is_dir():
        raise PaddyError(f"data folder not found: {root}")
    root = root.absolute()
    train_dir, test_dir = root / "train_images", root / "test_images"
    if not train_dir.is_dir():
        raise PaddyError(f"{root} has no train_images/ folder (expected train_images/<label>/*.jpg)")
    class_dirs = sorted(p for p in train_dir.iterdir() if visible(p) and p.is_dir())
    if not class_dirs:
        raise PaddyError(f"{train_dir} has no class folders (expected train_images/<label>/*.jpg)")
    train_images: list[Path] = []
    for class_dir in class_dirs:
        files = image_files(class_dir)
        if not files:
            raise PaddyError(f"class folder {class_dir} has no images")
        train_images += files
    if len(class_dirs) < 2:
        raise PaddyError(f"{train_dir} has only one class folder; a classifier needs at least two")
    if not test_dir.is_dir():
        raise PaddyError(f"{root} has no test_images/ folder")
    test_images = image_files(test_dir)
    if not test_images:
        raise PaddyError(f"{test_dir} has no images")
    return CompetitionData(
        root=root,
        classes=tuple(p.name for p in class_dirs),
        train_images=tuple(train_images),
        test_images=tuple(test_images),
        label_column=sample_label_column(root, test_images),
    )


def unreadable_images(paths: list[Path] | tuple[Path, ...]) -> list[Path]:
    """Images PIL cannot decode, found with fastai's parallel verify_images."""
    from fastai.vision.utils import verify_images

    return [Path(p) for p in verify_images(list(paths))]


def without_bad_images(data: CompetitionData, policy: BadImages) -> CompetitionData:
    """Fail on (policy 'fail') or drop (policy 'skip') corrupt training images, once per data.

    A corrupt test image always fails: a submission must cover every test image.
    """
    if data.images_checked:
        return data
    bad_test = unreadable_images(data.test_images)
    if bad_test:
        raise PaddyError(f"test image cannot be read: {bad_test[0]} ({len(bad_test)} in all)")
    bad_train = set(unreadable_images(data.train_images))
    if not bad_train:
        return replace(data, images_checked=True)
    if policy == BadImages.fail:
        first = sorted(bad_train)[0]
        raise PaddyError(
            f"image cannot be read: {first} ({len(bad_train)} in all); use --bad-images skip to train without them"
        )
    kept = tuple(p for p in data.train_images if p not in bad_train)
    return replace(data, train_images=kept, images_checked=True)


def training_split_size(n_images: int, valid_pct: float) -> int:
    """How many of `n_images` fastai's RandomSplitter leaves for training."""
    return n_images - int(valid_pct * n_images)


def extra_labels(data: CompetitionData, column: str) -> dict[str, str]:
    """image_id -> value of `column` in train.csv, for every training image (a second target)."""
    csv = data.root / "train.csv"
    if not csv.is_file():
        raise PaddyError(f"--multi-target needs {csv}")
    table = read_csv(csv, dtype=str)
    if column not in table.columns or column in ("image_id", "label"):
        usable = [c for c in table.columns if c not in ("image_id", "label")]
        raise PaddyError(f"train.csv has no extra column {column!r}; columns: {', '.join(usable)}")
    missing = table[column].isna()
    if missing.any():
        row = int(missing.idxmax()) + 2
        raise PaddyError(f"train.csv column {column!r} has {int(missing.sum())} missing values (first on line {row})")
    labels = dict(zip(table["image_id"], table[column]))
    unknown = [p.name for p in data.train_images if p.name not in labels]
    if unknown:
        raise PaddyError(f"train.csv has no row for {unknown[0]} ({len(unknown)} training images in all)")
    return labels


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
        write_demo_dataset(staging / "data")
        os.replace(staging / "data", root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def recorded_root(data: Path | None) -> Path:
    """The data folder as runs record it, without checking it: predicting and ensembling only need
    to know which runs were trained on it, not the training images themselves."""
    return data.expanduser().absolute() if data is not None else resolve_data(None).root


def resolve_data(
    data: Path | None, competition: str = COMPETITION, kaggle_input: Path = KAGGLE_INPUT
) -> CompetitionData:
    """The checked competition data: --data, else Kaggle's input folder, else the demo."""
    if data is not None:
        return check_layout(data.expanduser())
    on_kaggle = kaggle_input / competition
    if on_kaggle.is_dir():
        return check_layout(on_kaggle)
    return replace(check_layout(ensure_demo_dataset()), is_demo=True)
