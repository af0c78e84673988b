"""Reading a competition's layout: what `check_layout` (every command's first step) takes on a paddy-layout
folder of 20,000 training and 3,000 test images, against the least any reader must do: list every file once
(os.walk) and read train.csv and the sample with pandas.

    python benchmarks/layout.py --reps 5 --work /tmp/paddy-layout

The images are empty files named .jpg (the layout is read from names; decoding is the image check's,
benchmarks/image_checks.py). Ratios side by side in one run (A B A B), medians of `--reps`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import pandas as pd

from paddy.data.competition import COMPETITION, check_layout

CLASSES, PER_CLASS, TESTS = 10, 2000, 3000


def make_layout(root: Path) -> Path:
    """train_images/<class>/*.jpg beside a train.csv that agrees, test_images/*.jpg and the sample."""
    if (root / "sample_submission.csv").is_file():
        return root
    rows = []
    for c in range(CLASSES):
        folder = root / "train_images" / f"class{c}"
        folder.mkdir(parents=True)
        for k in range(PER_CLASS):
            (folder / f"{c}{k:05d}.jpg").touch()
            rows.append((f"{c}{k:05d}.jpg", f"class{c}"))
    pd.DataFrame(rows, columns=["image_id", "label"]).to_csv(root / "train.csv", index=False)
    (root / "test_images").mkdir()
    tests = [f"t{k:05d}.jpg" for k in range(TESTS)]
    for name in tests:
        (root / "test_images" / name).touch()
    pd.DataFrame({"image_id": tests, "label": "class0"}).to_csv(root / "sample_submission.csv", index=False)
    return root


def plain_read(root: Path) -> None:
    """Every file listed once, and the two CSVs read."""
    for _ in os.walk(root):
        pass
    pd.read_csv(root / "train.csv")
    pd.read_csv(root / "sample_submission.csv")


def seconds(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--work", type=Path, default=Path("/tmp/paddy-layout"))
    args = p.parse_args()
    root = make_layout(args.work / COMPETITION)
    check_layout(root), plain_read(root)  # warm the file system's caches for both
    paddy, plain = [], []
    for _ in range(args.reps):
        paddy.append(seconds(lambda: check_layout(root)))
        plain.append(seconds(lambda: plain_read(root)))
    a, b = statistics.median(paddy), statistics.median(plain)
    print(f"check_layout on {CLASSES * PER_CLASS} + {TESTS} images: {a:.3f} s; plain listing + CSVs: {b:.3f} s")
    print(f"check_layout / plain = {a / b:.2f}x")
    print(f"reproduce: python benchmarks/layout.py --reps {args.reps} --work {args.work}")


if __name__ == "__main__":
    main()
