"""Pictures of a run (loss curves, confusion matrix, lr-find), saved as PNG files atomically.

Each is a figure first (tests read its titles, labels and data), then a PNG. Drawn on matplotlib's Agg
canvas, so they work on headless Kaggle and CI machines.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from paddy.core.files import atomic_write_bytes  # noqa: E402

NOT_METRICS = ("fit", "size", "epoch", "train_loss", "valid_loss", "time")  # history.csv's other columns


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Render to PNG in memory, write atomically, and release the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def run_title(run: str, arch: str, size: str, metric: str, score: float) -> str:
    """What every picture of a run is titled with: which run, which model, how it scored."""
    return f"{run}\n{arch} at {size}: {metric} {score:.4f}"


def phase_starts(history: pd.DataFrame) -> list[tuple[int, str]]:
    """The rows where a fit (fine_tune's frozen and unfrozen fits) or a size (progressive resizing)
    begins, each with its label."""
    starts, previous = [], None
    for index, (fit, size) in enumerate(zip(history["fit"], history["size"])):
        if (fit, size) != previous:
            starts.append((index, f"fit {fit}, {size}"))
        previous = (fit, size)
    return starts


def loss_figure(history: pd.DataFrame, steps: pd.DataFrame, title: str) -> plt.Figure:
    """Loss per batch and per epoch, the metrics per epoch and the learning rates per batch, on one epoch
    axis: epoch i (history.csv's row i) is at x = i, its batches spread over [i - 0.5, i + 0.5), and the
    ticks are numbered as history.csv numbers the epochs (from 0 in each fit). Where a fit or a size
    begins is marked and labelled."""
    fig, (loss, metric, lr) = plt.subplots(3, 1, figsize=(8, 9), sharex=True, height_ratios=(3, 2, 2))
    epochs = np.arange(len(history))
    if len(steps):
        loss.plot(steps["epoch"] - 0.5, steps["train_loss"], lw=0.8, alpha=0.6, label="train (per batch, smoothed)")
        for column in [c for c in steps.columns if c.startswith("lr_")]:
            lr.plot(steps["epoch"] - 0.5, steps[column], label=f"parameter group {column[3:]}")
        lr.legend(fontsize="small")
    loss.plot(epochs, history["train_loss"], marker="o", label="train (epoch)")
    loss.plot(epochs, history["valid_loss"], marker="o", label="valid (epoch)")
    for column in [c for c in history.columns if c not in NOT_METRICS]:
        metric.plot(epochs, history[column], marker="o", label=column)
    loss.set(ylabel="loss", title=title)
    metric.set(ylabel="metric")
    lr.set(ylabel="learning rate", xlabel="epoch (as history.csv numbers them)")
    for ax in (loss, metric):
        ax.legend(fontsize="small")
    for index, label in phase_starts(history):
        for ax in (loss, metric, lr):
            ax.axvline(index - 0.5, color="grey", ls="--", lw=0.8)
        loss.annotate(label, (index - 0.5, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                      textcoords="offset points", fontsize="small", color="grey")  # fmt: skip
    lr.set_xticks(epochs, [str(e) for e in history["epoch"]])
    lr.set_xlim(-0.6, len(history) - 0.4)
    fig.align_ylabels()
    return fig


def confusion_figure(actual: np.ndarray, predicted: np.ndarray, vocab: list[str], title: str) -> plt.Figure:
    """The validation confusion matrix twice: counts, and each row normalised to the share of that true
    class (a small class's mistakes show as clearly as a big one's). sklearn's display writes each cell in
    the light or dark end of the colour map, whichever contrasts with the cell."""
    side = max(5, len(vocab) * 0.6)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for ax, normalize, values, name in ((axes[0], None, "d", "counts"), (axes[1], "true", ".0%", "share of row")):
        ConfusionMatrixDisplay.from_predictions(
            actual,
            predicted,
            labels=list(range(len(vocab))),
            display_labels=vocab,
            normalize=normalize,
            values_format=values,
            cmap="Blues",
            ax=ax,
            xticks_rotation="vertical",
            colorbar=False,
        )
        ax.set_title(name)
    axes[1].set(yticklabels=[], ylabel="")  # the same rows as beside it
    fig.suptitle(title)
    return fig


def save_current_figure(path: Path) -> Path:
    """Save the figure a library just drew with pyplot (fastai's lr_find plot)."""
    return save_figure(plt.gcf(), path)
