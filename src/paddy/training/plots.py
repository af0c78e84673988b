"""Pictures of a run (loss curves; per target kind the validation pictures that fit it: confusion matrix, top
losses, ROC curve, F1 per label, predicted against true; lr-find), saved as PNG files atomically.

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
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay, confusion_matrix, f1_score, roc_auc_score  # noqa: E402

from paddy.core.files import atomic_write_bytes  # noqa: E402
from paddy.runs.folder import metric_columns  # noqa: E402


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
    for column in metric_columns(history):
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


WRITTEN_CELLS_UP_TO = 25  # classes; beyond, the colours alone (120 dog breeds: 28,800 numbers took a minute)
LARGEST_PANEL = 18.0  # inches a side: 120 classes at 0.6 in each made a 14,400-pixel-wide PNG
PANELS = ("counts", "share of row")
DRAWN_CLASSES_UP_TO = 120  # beyond (herbarium's 15,501): those with the most mistakes (3,000 classes took 42 s, 1.3 GB)


def drawn_classes(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """The classes a confusion matrix draws, in vocab order: all of them, else the DRAWN_CLASSES_UP_TO with the
    most validation mistakes, as the truth or as the prediction (ties: the first in vocab order)."""
    if n_classes <= DRAWN_CLASSES_UP_TO:
        return np.arange(n_classes)
    wrong = actual != predicted
    mistakes = np.bincount(actual[wrong], minlength=n_classes) + np.bincount(predicted[wrong], minlength=n_classes)
    return np.sort(np.argsort(-mistakes, kind="stable")[:DRAWN_CLASSES_UP_TO])


def confusion_counts(actual: np.ndarray, predicted: np.ndarray, drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The drawn classes' confusion counts, and each row as a share of all its true class's images (of every
    prediction, drawn or not, so a share means the same whichever classes are drawn; 0 for an empty row)."""
    counts = confusion_matrix(actual, predicted, labels=drawn)
    totals = np.bincount(actual, minlength=int(drawn.max()) + 1)[drawn][:, None]
    return counts, np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)


def confusion_figure(actual: np.ndarray, predicted: np.ndarray, vocab: list[str], title: str) -> plt.Figure:
    """The validation confusion matrix twice: counts, and each row normalised to the share of that true
    class (a small class's mistakes show as clearly as a big one's). sklearn's display writes each cell in
    the light or dark end of the colour map, whichever contrasts with the cell; with more classes than
    WRITTEN_CELLS_UP_TO the cells are only coloured, and the class names smaller, on panels of at most
    LARGEST_PANEL inches; with more than DRAWN_CLASSES_UP_TO, only the classes with the most mistakes."""
    drawn = drawn_classes(actual, predicted, len(vocab))
    names = [vocab[i] for i in drawn]
    side = min(LARGEST_PANEL, max(5, len(names) * 0.6))
    written = len(names) <= WRITTEN_CELLS_UP_TO
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for ax, matrix, values, name in zip(axes, confusion_counts(actual, predicted, drawn), ("d", ".0%"), PANELS):
        ConfusionMatrixDisplay(matrix, display_labels=names).plot(
            values_format=values,
            cmap="Blues",
            ax=ax,
            xticks_rotation="vertical",
            colorbar=False,
            include_values=written,
        )
        ax.set_title(name)
        if not written:
            ax.tick_params(labelsize=min(10.0, max(3.0, 0.6 * 72 * side / len(names))))  # points: fits its row
    axes[1].set(yticklabels=[], ylabel="")  # the same rows as beside it
    shown = f"\nthe {len(names)} of {len(vocab)} classes with the most mistakes" if len(names) < len(vocab) else ""
    fig.suptitle(title + shown)
    fig.tight_layout()  # the panels' titles clear of a title of three lines
    return fig


def top_losses_figure(
    images: list[np.ndarray], actual: list[str], predicted: list[str], probs: np.ndarray, losses: np.ndarray, title: str
) -> plt.Figure:
    """The validation images with the highest loss (fastai's plot_top_losses, drawn here: it predicts its
    images again and draws on a figure of its own, titled by fastai), each captioned with its label, the
    prediction with its probability, and its loss, the worst first, three to a row."""
    columns = min(3, len(images))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.6 * columns, 3.6 * rows + 0.6), squeeze=False, layout="constrained"
    )  # constrained: no caption runs into its neighbour's
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, truth, guess, prob, loss in zip(axes.flat, images, actual, predicted, probs, losses):
        ax.imshow(image)
        ax.set_title(f"label {truth}\npredicted {guess} ({prob:.2f})\nloss {loss:.2f}", fontsize="small")
    fig.suptitle(f"{title}\nvalidation images with the highest loss")
    return fig


def roc_figure(positive_probs: np.ndarray, actual: np.ndarray, positive: str, title: str) -> plt.Figure:
    """The validation ROC curve of a binary target (sklearn's display, with the chance diagonal), its AUC in
    the title. Both classes must be among `actual`: with one, no curve exists."""
    auc = roc_auc_score(actual, positive_probs)
    fig, ax = plt.subplots(figsize=(6, 6))
    RocCurveDisplay.from_predictions(actual, positive_probs, pos_label=1, name="validation", ax=ax,
                                     plot_chance_level=True)  # fmt: skip
    ax.set(xlabel="false positive rate", ylabel=f"true positive rate (positive: {positive})")
    ax.set_title(f"{title}\nvalidation ROC AUC {auc:.4f}")
    return fig


def label_f1_figure(
    on: np.ndarray, truth: np.ndarray, vocab: list[str], thresholds: tuple[float, ...], title: str
) -> plt.Figure:
    """Each tag's validation F1 when it is on at its fitted threshold (`on`: the decided 0/1 matrix), one
    bar per tag named with its threshold, the mean over tags in the title."""
    f1 = f1_score(truth, on, average=None, zero_division=0)
    fig, ax = plt.subplots(figsize=(7, max(3, 0.5 * len(vocab) + 1.5)))
    names = [f"{tag} (at {threshold:.2f})" for tag, threshold in zip(vocab, thresholds)]
    bars = ax.barh(names, f1)
    ax.bar_label(bars, fmt="%.2f", padding=2)
    ax.invert_yaxis()  # the first tag on top, as the vocab lists them
    ax.set(xlim=(0, 1.08), xlabel="F1 (validation)", ylabel="label (threshold)")
    ax.set_title(f"{title}\nF1 per label at the fitted thresholds (mean {f1.mean():.4f})")
    return fig


def scatter_figure(predicted: np.ndarray, actual: np.ndarray, name: str, title: str) -> plt.Figure:
    """Each validation image's prediction against its true value, with the line where they are equal and the
    RMSE in the title."""
    predicted, actual = np.ravel(predicted), np.ravel(actual)
    rmse = float(np.sqrt(np.mean((predicted - actual) ** 2)))
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(actual, predicted, s=12, alpha=0.7, label="validation image")
    low, high = min(actual.min(), predicted.min()), max(actual.max(), predicted.max())
    ax.plot([low, high], [low, high], color="grey", ls="--", lw=0.8, label="predicted = true")
    ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}")
    ax.legend(fontsize="small")
    ax.set_title(f"{title}\nvalidation RMSE {rmse:.4f}")
    return fig


def save_current_figure(path: Path) -> Path:
    """Save the figure a library just drew with pyplot (fastai's lr_find plot)."""
    return save_figure(plt.gcf(), path)
