"""Images given as pixel columns of CSVs, as the MNIST-style competitions give them (digit-recognizer: train.csv
of a label and pixel0..pixel783, test.csv of the pixels alone, its row k the sample's ImageId k+1; Kannada-MNIST:
test.csv's own id column). paddy trains on image files, so `paddy presize` writes them once as PNGs in a layout
paddy reads (a class folder each under train/, test/<id>.png, the sample copied), and the copy is trained on.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image

from paddy.core.errors import PaddyError
from paddy.core.files import atomic_write_bytes, read_csv

PIXEL = re.compile(r"pixel\d+", re.IGNORECASE)
TRAIN_CSV, TEST_CSV = "train.csv", "test.csv"


@dataclass(frozen=True)
class PixelTables:
    """A competition's pixel CSVs: which column is the label, which the test ids, and the images' side."""

    train_csv: Path
    test_csv: Path
    label: str  # the training CSV's one column besides the pixels
    test_id: str | None  # the test CSV's id column; None: the sample's ids, in the test CSV's row order
    side: int  # the images are side x side pixels (784 columns: 28)

    def problem(self) -> str:
        """What check_layout says of such a folder: where the images are, and how to train on them."""
        n = self.side * self.side
        return (
            f"{self.train_csv} holds its images as {n} pixel columns ({self.side}x{self.side}), not as image "
            "files: write them as images with paddy presize, and train on its copy"
        )


def pixel_tables(root: Path) -> PixelTables | None:
    """The pixel CSVs of `root` (train.csv with pixel columns beside test.csv); None where there are none. Only
    their headers are read."""
    train_csv, test_csv = root / TRAIN_CSV, root / TEST_CSV
    if not (train_csv.is_file() and test_csv.is_file()):
        return None
    train_columns = [str(c) for c in read_csv(train_csv, nrows=0).columns]
    pixels = [c for c in train_columns if PIXEL.fullmatch(c)]
    if not pixels:
        return None
    side = math.isqrt(len(pixels))
    if side * side != len(pixels):
        raise PaddyError(f"{train_csv} has {len(pixels)} pixel columns: not a square image's")
    if len(labels := [c for c in train_columns if c not in pixels]) != 1:
        raise PaddyError(f"{train_csv} needs one label column beside its pixel columns, not {labels or 'none'}")
    test_columns = [str(c) for c in read_csv(test_csv, nrows=0).columns]
    ids = [c for c in test_columns if not PIXEL.fullmatch(c)]
    if [c for c in test_columns if PIXEL.fullmatch(c)] != pixels or len(ids) > 1:
        raise PaddyError(f"{test_csv} needs {train_csv.name}'s pixel columns and at most an id column beside them")
    return PixelTables(train_csv, test_csv, labels[0], ids[0] if ids else None, side)


def png_of(row: np.ndarray, side: int) -> bytes:
    """One row of pixels as a greyscale PNG."""
    buffer = io.BytesIO()
    Image.fromarray(row.reshape(side, side).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def pixel_rows(table: pd.DataFrame, csv: Path) -> np.ndarray:
    """The pixel columns as rows of integers 0..255; anything else is one line naming the CSV."""
    values = table[[c for c in table.columns if PIXEL.fullmatch(str(c))]].to_numpy()
    if values.dtype.kind not in "iu" or values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise PaddyError(f"{csv}'s pixel columns must hold whole numbers from 0 to 255")
    return values


def images_to_write(root: Path, tables: PixelTables, sample_ids: list[str]) -> list[tuple[Path, np.ndarray]]:
    """Each image's path in the copy (train/<label>/<row>.png, test/<id>.png) and its pixels. The test CSV's
    rows are the sample's ids in order where it has no id column (digit-recognizer), so their numbers must
    agree."""
    train, test = read_csv(tables.train_csv), read_csv(tables.test_csv)
    if tables.test_id is None and len(test) != len(sample_ids):
        raise PaddyError(
            f"{tables.test_csv} has {len(test)} rows and no id column, and the sample lists {len(sample_ids)} ids: "
            "its rows cannot be the sample's ids in order"
        )
    if (empty := train[tables.label].isna()).any():
        raise PaddyError(f"{tables.train_csv} column {tables.label!r} is empty on line {int(empty.argmax()) + 2}")
    test_ids = sample_ids if tables.test_id is None else test[tables.test_id].astype(str).tolist()
    labels = train[tables.label].astype(str).tolist()
    train_files = [Path("train", label, f"{row}.png") for row, label in enumerate(labels)]
    files = [*train_files, *(Path("test", f"{image_id}.png") for image_id in test_ids)]
    rows = np.concatenate([pixel_rows(train, tables.train_csv), pixel_rows(test, tables.test_csv)])
    return list(zip(files, rows))


def write_pixel_images(
    files: list[tuple[Path, np.ndarray]],
    side: int,
    sample_csv: Path,
    dest: Path,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Write every image (images_to_write) as a PNG under `dest`, and the sample beside them; those already there
    (an interrupted run's, each written atomically) are kept. Returns (written, already there)."""
    written = skipped = 0
    for done, (file, row) in enumerate(files, 1):
        if (dest / file).exists():
            skipped += 1
        else:
            atomic_write_bytes(dest / file, png_of(row, side))
            written += 1
        if on_progress and (done % 1000 == 0 or done == len(files)):
            on_progress(done, len(files))
    atomic_write_bytes(dest / sample_csv.name, sample_csv.read_bytes())
    return written, skipped
