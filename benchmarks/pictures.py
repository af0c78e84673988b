"""The confusion matrix of many classes: paddy's picture against sklearn's display drawn as paddy drew it
before (every cell's number, 0.6 inch a class), side by side in one run.

    python benchmarks/pictures.py --classes 10 120 --reps 1

With 120 classes (dog-breed) the old picture wrote 28,800 numbers on a 145 x 72 inch figure and took about a
minute every run; paddy now colours the cells only, from WRITTEN_CELLS_UP_TO classes on, on panels of at most
LARGEST_PANEL inches. Up to that many classes both draw the same picture.

    python benchmarks/pictures.py --classes 120 3000 15501 --reps 1

Beyond DRAWN_CLASSES_UP_TO classes (herbarium's 15,501, hotel-id's 7,770) paddy draws only the classes with the
most mistakes; the "every class" column is paddy's picture with that bound lifted, as it drew them until then.
The old picture, every number written, is only timed up to 120 classes (it took a minute there).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from paddy.training import plots  # noqa: E402
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
    gc.collect()  # the previous picture's artists (28,800 texts at 120 classes) are not this one's time
    started = time.perf_counter()
    save_figure(draw(actual, predicted, vocab, "run\narch at 224x224: error_rate 0.3000"), Path(tmp) / "confusion.png")
    return time.perf_counter() - started


def every_class(actual: np.ndarray, predicted: np.ndarray, vocab: list[str], title: str) -> plt.Figure:
    """paddy's picture with every class drawn, as before DRAWN_CLASSES_UP_TO bounded them."""
    bound = plots.DRAWN_CLASSES_UP_TO
    plots.DRAWN_CLASSES_UP_TO = len(vocab)
    try:
        return confusion_figure(actual, predicted, vocab, title)
    finally:
        plots.DRAWN_CLASSES_UP_TO = bound


OLD_PICTURE_UP_TO = 120  # classes: the old picture took a minute there


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, nargs="+", default=[10, 120])
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--work", default="/tmp/paddy-pictures")
    args = p.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    print(f"python benchmarks/pictures.py --classes {' '.join(map(str, args.classes))} --reps {args.reps}")
    print("| classes | before (s) | every class (s) | paddy (s) | before / paddy | every class / paddy |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.classes:
        drawers = {"before": before, "every": every_class, "paddy": confusion_figure}
        if n > OLD_PICTURE_UP_TO:
            del drawers["before"]
        times: dict[str, list[float]] = {name: [] for name in drawers}
        for _ in range(args.reps):  # A B C A B C
            for name, draw in drawers.items():
                times[name].append(seconds_to_png(draw, n, args.work))
        median = {name: statistics.median(seconds) for name, seconds in times.items()}
        old, every, new = median.get("before"), median["every"], median["paddy"]
        shown = (f"{old:.2f}", f"**{old / new:.1f}x**") if old else ("-", "-")
        print(f"| {n} | {shown[0]} | {every:.2f} | {new:.2f} | {shown[1]} | **{every / new:.1f}x** |")


if __name__ == "__main__":
    main()
