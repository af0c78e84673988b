"""The confusion matrix of many classes: paddy's picture against sklearn's display drawn as paddy drew it
before (every cell's number, 0.6 inch a class), side by side in one run.

    python benchmarks/pictures.py --classes 10 120 --reps 1

With 120 classes (dog-breed) the old picture wrote 28,800 numbers on a 145 x 72 inch figure and took about a
minute every run; paddy now colours the cells only, from WRITTEN_CELLS_UP_TO classes on, on panels of at most
LARGEST_PANEL inches. Up to that many classes both draw the same picture.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from paddy.training.plots import confusion_figure, save_figure  # noqa: E402


def before(actual: np.ndarray, predicted: np.ndarray, vocab: list[str], title: str) -> plt.Figure:
    """The picture as paddy drew it before: both panels with every cell written, 0.6 inch a class."""
    side = max(5, len(vocab) * 0.6)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for ax, normalize, values in ((axes[0], None, "d"), (axes[1], "true", ".0%")):
        ConfusionMatrixDisplay.from_predictions(
            actual, predicted, labels=list(range(len(vocab))), display_labels=vocab, normalize=normalize,
            values_format=values, cmap="Blues", ax=ax, xticks_rotation="vertical", colorbar=False,
        )  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def seconds_to_png(draw, n_classes: int, tmp: str) -> float:
    """Draw and save one picture of `n_classes` classes (5 validation images a class, 70% right)."""
    rng = np.random.default_rng(0)
    actual = np.repeat(np.arange(n_classes), 5)
    predicted = np.where(rng.random(len(actual)) < 0.7, actual, rng.integers(0, n_classes, len(actual)))
    vocab = [f"class_name_{i}" for i in range(n_classes)]
    started = time.perf_counter()
    save_figure(draw(actual, predicted, vocab, "run\narch at 224x224: error_rate 0.3000"), Path(tmp) / "confusion.png")
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, nargs="+", default=[10, 120])
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--work", default="/tmp/paddy-pictures")
    args = p.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    print(f"python benchmarks/pictures.py --classes {' '.join(map(str, args.classes))} --reps {args.reps}")
    print("| classes | before (s) | paddy (s) | before / paddy |\n|---:|---:|---:|---:|")
    for n in args.classes:
        old, new = [], []
        for _ in range(args.reps):  # A B A B
            old.append(seconds_to_png(before, n, args.work))
            new.append(seconds_to_png(confusion_figure, n, args.work))
        a, b = statistics.median(old), statistics.median(new)
        print(f"| {n} | {a:.2f} | {b:.2f} | **{a / b:.1f}x** |")


if __name__ == "__main__":
    main()
