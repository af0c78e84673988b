"""Pictures of a run (loss curves, confusion matrix, lr-find), saved as PNG files atomically.

Drawn on matplotlib's Agg canvas, so they work on headless Kaggle and CI machines.
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

from paddy.core.files import atomic_write_bytes

# noqa: E402


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Render to PNG in memory, write atomically, and release the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def save_loss_plot(history: pd.DataFrame, path: Path) -> Path:
    """Training and validation loss per epoch, fine_tune's frozen epochs included."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history) + 1)
    ax.plot(epochs, history["train_loss"], marker="o", label="train")
    ax.plot(epochs, history["valid_loss"], marker="o", label="valid")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    return save_figure(fig, path)


def save_confusion_matrix(actual: np.ndarray, predicted: np.ndarray, vocab: list[str], path: Path) -> Path:
    """Validation-set confusion matrix with class names (sklearn's display)."""
    size = max(5, len(vocab) * 0.6)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        actual,
        predicted,
        labels=list(range(len(vocab))),
        display_labels=vocab,
        ax=ax,
        xticks_rotation="vertical",
        colorbar=False,
    )
    return save_figure(fig, path)


def save_current_figure(path: Path) -> Path:
    """Save the figure a library just drew with pyplot (fastai's lr_find plot)."""
    return save_figure(plt.gcf(), path)
