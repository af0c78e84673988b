"""A run's pictures, read through their figures (titles, labels, ticks, the data drawn) and their PNG
sizes: loss per batch and per epoch, metric and learning rate on one epoch axis numbered as history.csv
numbers it, fits and sizes marked; the confusion matrix in counts and row shares, legible."""

from __future__ import annotations

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_entry, trained
from PIL import Image
from sklearn.metrics import confusion_matrix

import paddy.training.predicting
from paddy.training.plots import confusion_figure, loss_figure, run_title

# fine_tune with progressive resizing: the frozen fit at 32, then one unfrozen fit per size
HISTORY = pd.DataFrame(
    {
        "fit": [1, 2, 3, 3],
        "size": ["32x32", "32x32", "64x64", "64x64"],
        "epoch": [0, 0, 0, 1],
        "train_loss": [2.5, 2.0, 1.6, 1.2],
        "valid_loss": [2.4, 2.1, 1.8, 1.5],
        "error_rate": [0.9, 0.7, 0.5, 0.4],
        "time": ["00:01"] * 4,
    }
)


def steps_of(history: pd.DataFrame, per_epoch: int) -> pd.DataFrame:
    n = len(history) * per_epoch
    return pd.DataFrame(
        {
            "step": range(n),
            "epoch": [i / per_epoch for i in range(n)],
            "train_loss": np.linspace(3, 1, n),
            "lr_0": np.linspace(0.001, 0.01, n),
            "lr_1": np.linspace(0.01, 0.1, n),
        }
    )


def lines_by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_loss_picture_has_every_epoch_batch_metric_and_learning_rate():
    steps = steps_of(HISTORY, per_epoch=5)
    title = run_title("20261201-run", "resnet18", "64x64", "error_rate", 0.4)
    fig = loss_figure(HISTORY, steps, title)
    loss, metric, lr = fig.axes
    assert loss.get_title() == "20261201-run\nresnet18 at 64x64: error_rate 0.4000"
    assert [t.get_text() for t in lr.get_xticklabels()] == ["0", "0", "0", "1"], "history.csv's epochs, from 0"
    assert list(lr.get_xticks()) == [0, 1, 2, 3], "one integer tick per epoch"
    assert lr.get_xlabel().startswith("epoch") and loss.get_ylabel() == "loss" and lr.get_ylabel() == "learning rate"
    lines = lines_by_label(loss)
    assert list(lines["valid (epoch)"].get_ydata()) == list(HISTORY["valid_loss"])
    assert list(lines["train (epoch)"].get_xdata()) == [0, 1, 2, 3]
    batches = lines["train (per batch, smoothed)"]
    assert len(batches.get_xdata()) == 20 and list(batches.get_ydata()) == list(steps["train_loss"])
    x = np.asarray(batches.get_xdata())
    assert x.min() == -0.5 and x.max() < 3.5, "epoch i's batches over [i - 0.5, i + 0.5)"
    assert list(lines_by_label(metric)["error_rate"].get_ydata()) == list(HISTORY["error_rate"])
    assert list(lines_by_label(lr)["parameter group 1"].get_ydata()) == list(steps["lr_1"])
    marks = sorted(line.get_xdata()[0] for line in loss.get_lines() if line.get_label().startswith("_"))
    assert marks == [-0.5, 0.5, 1.5], "where each fit and each size begins"
    assert [t.get_text() for t in loss.texts] == ["fit 1, 32x32", "fit 2, 32x32", "fit 3, 64x64"]


def luminance(color) -> float:
    r, g, b = matplotlib.colors.to_rgb(color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_confusion_picture_in_counts_and_row_shares_with_legible_text():
    actual = np.array([0] * 8 + [1] * 2 + [2] * 4)
    predicted = np.array([0] * 6 + [1] * 2 + [1, 0] + [2] * 4)
    fig = confusion_figure(actual, predicted, ["blast", "hispa", "normal"], "run\nresnet18 at 64x64: error_rate 0.2")
    counts, shares = fig.axes
    assert fig._suptitle.get_text() == "run\nresnet18 at 64x64: error_rate 0.2"
    assert (counts.get_title(), shares.get_title()) == ("counts", "share of row")
    assert [t.get_text() for t in counts.get_yticklabels()] == ["blast", "hispa", "normal"]
    expected = confusion_matrix(actual, predicted)
    cells = [[int(t.get_text()) for t in row] for row in np.array(counts.texts).reshape(3, 3)]
    assert cells == expected.tolist()
    share = np.array(
        [[float(t.get_text().rstrip("%")) / 100 for t in row] for row in np.array(shares.texts).reshape(3, 3)]
    )
    np.testing.assert_allclose(share.sum(axis=1), 1.0)
    np.testing.assert_allclose(share[1], [0.5, 0.5, 0.0])
    full_cell, empty_cell = shares.texts[8], shares.texts[2]  # normal -> normal (1.00) and blast -> normal (0)
    assert luminance(full_cell.get_color()) > 0.5 > luminance(empty_cell.get_color()), "light on dark, dark on light"


def test_a_run_saves_its_pictures_titled_with_its_score(tiny_data, tmp_path, monkeypatch):
    drawn = []
    real = paddy.training.predicting.save_figure
    monkeypatch.setattr(
        paddy.training.predicting, "save_figure", lambda fig, path: drawn.append(fig) or real(fig, path)
    )
    result = trained(tiny_entry(), tiny_data, tmp_path, num_workers=0)
    loss, confusion = drawn
    title = f"{result.run.name}\ntest_resnet at 32x32: error_rate {result.valid_error:.4f}"
    assert loss.axes[0].get_title() == title and confusion._suptitle.get_text() == title
    batches = lines_by_label(loss.axes[0])["train (per batch, smoothed)"]
    per_epoch = int(len(tiny_data.train_images) * 0.8) // 8
    assert len(batches.get_xdata()) == 2 * per_epoch and len(result.history) == 2, "every batch of both fits"
    assert np.all(np.diff(batches.get_xdata()) > 0), "the second fit's batches after the first's"
    assert [t.get_text() for t in loss.axes[0].texts] == ["fit 1, 32x32", "fit 2, 32x32"]
    with Image.open(result.run.path / "loss.png") as png:
        width, height = png.size
    assert 600 < width < 1000 and height > width, "three panels stacked"
    with Image.open(result.run.path / "confusion.png") as png:
        width, height = png.size
    assert width > 1.6 * height, "counts and shares side by side"
    assert sum(int(t.get_text()) for t in confusion.axes[0].texts) == pytest.approx(
        len(tiny_data.train_images) * 0.2, abs=1
    )
