"""Finding and checking competition data in the Kaggle layout, and the built-in demo dataset.

The layout is `train_images/<label>/*.jpg`, `test_images/*.jpg`, `sample_submission.csv`
(and usually `train.csv`). Everything is checked up front so a long run never dies an hour
in on a missing folder or a corrupt JPEG.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from paddy.core.errors import PaddyError
from paddy.core.files import read_csv
from paddy.data.demo import ensure_demo_dataset

COMPETITION = "paddy-disease-classification"


KAGGLE_INPUT = Path("/kaggle/input")


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


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
    def named_root(self) -> Path | None:
        """The folder a suggested command names (None for the demo, which needs no --data)."""
        return None if self.is_demo else self.root

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


def read_sample(sample_csv: Path) -> pd.DataFrame:
    """sample_submission.csv as strings: an image id column, then the label column."""
    sample = read_csv(sample_csv, dtype=str, keep_default_na=False)
    if len(sample.columns) != 2:
        raise PaddyError(f"{sample_csv} should have two columns (image id, label), not {list(sample.columns)}")
    return sample


def sample_label_column(root: Path, test_images: list[Path]) -> str:
    """The sample submission's label column, once its ids are checked against the test images."""
    sample_csv = root / "sample_submission.csv"
    if not sample_csv.is_file():
        raise PaddyError(f"{root} has no sample_submission.csv")
    sample = read_sample(sample_csv)
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
