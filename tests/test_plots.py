"""A run's pictures, read through their figures (titles, labels, ticks, the data drawn) and their PNG
sizes: loss per batch and per epoch, metric and learning rate on one epoch axis numbered as history.csv
numbers it, fits and sizes marked; the confusion matrix in counts and row shares, legible; the images with
the highest loss; per target kind the ROC curve, the F1 per label, the grades' confusion matrix and the
predictions against the truth, each equal to scikit-learn's numbers on the same outputs."""

from __future__ import annotations

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_entry, trained
from fastai.vision.all import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat, Learner
from PIL import Image
from sklearn.metrics import confusion_matrix, f1_score, roc_curve, root_mean_squared_error

import paddy.training.predicting
import paddy.training.run
from paddy.core.decisions import grades, labels_on
from paddy.scoring.decisions import Decisions
from paddy.settings.competition import TargetKind
from paddy.training.plots import (
    DRAWN_CLASSES_UP_TO,
    LARGEST_PANEL,
    WRITTEN_CELLS_UP_TO,
    confusion_figure,
    loss_figure,
    run_title,
    save_figure,
    top_losses_figure,
)
from paddy.training.predicting import (
    CONFUSION_PLOT,
    F1_PLOT,
    ROC_PLOT,
    SCATTER_PLOT,
    TOP_LOSSES_PLOT,
    item_losses,
    thumbnail,
    validation_figures,
)
from paddy.training.targets import TwoTargetLoss

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

pytestmark = pytest.mark.pictures  # every test here looks at pictures


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


def log_loss_per_image(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return -np.log(probs[np.arange(len(targets)), targets])


def test_a_run_saves_its_pictures_titled_with_its_score(tiny_data, tmp_path, monkeypatch):
    drawn, plotted = [], []
    real, real_plots = paddy.training.predicting.save_figure, paddy.training.run.save_run_plots
    monkeypatch.setattr(
        paddy.training.predicting, "save_figure", lambda fig, path: drawn.append(fig) or real(fig, path)
    )
    passes, real_get_preds = [], Learner.get_preds
    monkeypatch.setattr(Learner, "get_preds", lambda *a, **k: passes.append(k) or real_get_preds(*a, **k))

    def plots(*args):
        before = len(passes)
        plotted.append(args)
        saved = real_plots(*args)
        assert len(passes) == before, "the pictures predicted nothing: the kept validation pass is all they use"
        return saved

    monkeypatch.setattr(paddy.training.run, "save_run_plots", plots)
    result = trained(tiny_entry(), tiny_data, tmp_path, num_workers=0, pictures=True)
    loss, confusion, top_losses = drawn
    title = f"{result.run.name}\ntest_resnet at 32x32: error_rate {result.valid_error:.4f}"
    assert loss.axes[0].get_title() == title and confusion._suptitle.get_text() == title
    assert top_losses._suptitle.get_text() == f"{title}\nvalidation images with the highest loss"
    ((learn, _, classes, _, (probs, targets), _, _),) = plotted
    worst = np.argsort(-log_loss_per_image(probs, targets), kind="stable")[:9]
    images = [ax for ax in top_losses.axes if ax.images]
    assert len(images) == 9, "the nine worst of the twelve validation images"
    for ax, i in zip(images, worst):
        guess = probs[i].argmax()
        caption, loss_line = ax.get_title().rsplit("\n", 1)
        assert caption == f"label {classes[targets[i]]}\npredicted {classes[guess]} ({probs[i, guess]:.2f})"
        assert float(loss_line.removeprefix("loss ")) == pytest.approx(-np.log(probs[i, targets[i]]), abs=0.006)
        assert np.array_equal(ax.images[0].get_array(), thumbnail(learn.dls.valid.items[i])), "its own image"
    batches = lines_by_label(loss.axes[0])["train (per batch, smoothed)"]
    per_epoch = int(len(tiny_data.train_images) * 0.8) // 8
    assert len(batches.get_xdata()) == 2 * per_epoch and len(result.history) == 2, "every batch of both fits"
    assert np.all(np.diff(batches.get_xdata()) > 0), "the second fit's batches after the first's"
    assert [t.get_text() for t in loss.axes[0].texts] == ["fit 1, 32x32", "fit 2, 32x32"]
    with Image.open(result.run.path / "loss.png") as png:
        width, height = png.size
    assert 600 < width < 1000 and height > width, "three panels stacked"
    with Image.open(result.run.path / "top_losses.png") as png:
        width, height = png.size
    assert 900 < width < 1200 and 0.9 * width < height < 1.4 * width, "three rows of three"
    with Image.open(result.run.path / "confusion.png") as png:
        width, height = png.size
    assert width > 1.6 * height, "counts and shares side by side"
    assert sum(int(t.get_text()) for t in confusion.axes[0].texts) == pytest.approx(
        len(tiny_data.train_images) * 0.2, abs=1
    )


def png_size(fig, path) -> tuple[int, int]:
    with Image.open(save_figure(fig, path)) as png:
        return png.size


@pytest.mark.parametrize(
    "loss_func, smoothing",
    [(CrossEntropyLossFlat(), 0.0), (LabelSmoothingCrossEntropyFlat(eps=0.1), 0.1), (TwoTargetLoss(4, 0.1), 0.1)],
)
def test_each_images_loss_comes_from_the_kept_probabilities_as_from_the_logits(loss_func, smoothing):
    """The model's logits are gone; the kept softmax gives the same loss per image (the label's, of two)."""
    logits = torch.randn(12, 4, generator=torch.Generator().manual_seed(0)) * 3
    targets = torch.arange(12) % 4
    losses = item_losses(loss_func, F.softmax(logits, dim=1).numpy(), targets.numpy())
    expected = F.cross_entropy(logits, targets, reduction="none", label_smoothing=smoothing)
    assert losses.shape == (12,)
    torch.testing.assert_close(losses, expected, rtol=1e-4, atol=1e-5)
    if hasattr(loss_func, "reduction"):
        assert loss_func.reduction == "mean", "the learner's loss is left reducing"


def test_top_losses_picture_captions_each_image_with_label_prediction_probability_and_loss(tmp_path):
    images = [np.full((20 + i, 30, 3), 20 * i, dtype=np.uint8) for i in range(5)]
    losses = np.array([3.2, 2.5, 1.25, 0.5, 0.1])
    fig = top_losses_figure(images, list("abcde"), list("bcdea"), np.array([0.9, 0.8, 0.7, 0.6, 0.5]), losses, "run")
    assert fig._suptitle.get_text() == "run\nvalidation images with the highest loss"
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and len(drawn) == 5, "three to a row, the empty cell blank"
    assert drawn[0].get_title() == "label a\npredicted b (0.90)\nloss 3.20"
    assert drawn[4].get_title() == "label e\npredicted a (0.50)\nloss 0.10"
    assert all(np.array_equal(ax.images[0].get_array(), image) for ax, image in zip(drawn, images))
    width, height = png_size(fig, tmp_path / "top.png")
    assert 900 < width < 1200 and 0.6 * width < height < width, "two rows of three"


def test_a_thumbnail_keeps_the_aspect_within_its_bound(tmp_path):
    Image.new("RGB", (1000, 500), (10, 200, 30)).save(tmp_path / "wide.png")
    pixels = thumbnail(tmp_path / "wide.png")
    assert pixels.shape == (128, 256, 3) and tuple(pixels[0, 0]) == (10, 200, 30)


TITLE = "run\nresnet18 at 64x64: metric 0.5"


def test_a_binary_targets_roc_curve_is_sklearns_with_its_auc_in_the_title(tmp_path, monkeypatch):
    monkeypatch.setattr(paddy.training.predicting, "top_losses_of", lambda *args: None)  # needs a learner
    rng = np.random.default_rng(0)
    actual = rng.integers(0, 2, 40)
    positive = np.clip(0.3 * actual + rng.uniform(0, 0.7, 40), 0, 1)
    outputs = np.stack([1 - positive, positive], axis=1)
    figures = validation_figures(None, TargetKind.binary, ("0", "1"), (outputs, actual), None, TITLE)
    assert set(figures) == {CONFUSION_PLOT, TOP_LOSSES_PLOT, ROC_PLOT}
    (ax,) = figures[ROC_PLOT].axes
    fpr, tpr, _ = roc_curve(actual, positive)
    curve = next(line for line in ax.get_lines() if line.get_label().startswith("validation"))
    np.testing.assert_allclose(curve.get_xdata(), fpr)
    np.testing.assert_allclose(curve.get_ydata(), tpr)
    auc = np.trapezoid(tpr, fpr)
    assert ax.get_title() == f"{TITLE}\nvalidation ROC AUC {auc:.4f}"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("false positive rate", "true positive rate (positive: 1)")
    width, height = png_size(figures[ROC_PLOT], tmp_path / "roc.png")
    assert 400 < width < 800 and abs(width - height) < 0.3 * width, "a square plot"
    one_class = validation_figures(None, TargetKind.binary, ("0", "1"), (outputs, actual * 0), None, TITLE)
    assert ROC_PLOT not in one_class, "no curve when the validation set holds one class"


def test_multi_label_f1_bars_are_sklearns_per_label_at_the_fitted_thresholds(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, (30, 4))
    probs = np.clip(0.4 * truth + rng.uniform(0, 0.6, (30, 4)), 0, 1)
    thresholds = [0.3, 0.5, 0.65, 0.8]
    tags = ["healthy", "scab", "rust", "frog_eye_leaf_spot"]
    fitted = Decisions(thresholds=tuple(thresholds))
    figures = validation_figures(None, TargetKind.multi, tuple(tags), (probs, truth), fitted, TITLE)
    (ax,) = figures[F1_PLOT].axes
    expected = f1_score(truth, labels_on(probs, thresholds), average=None, zero_division=0)
    assert not np.allclose(expected, f1_score(truth, probs >= 0.5, average=None)), "the thresholds matter here"
    np.testing.assert_allclose([bar.get_width() for bar in ax.patches], expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "healthy (at 0.30)", "scab (at 0.50)", "rust (at 0.65)", "frog_eye_leaf_spot (at 0.80)"
    ]  # fmt: skip
    assert ax.get_title() == f"{TITLE}\nF1 per label at the fitted thresholds (mean {expected.mean():.4f})"
    assert ax.get_xlabel() == "F1 (validation)"
    width, height = png_size(figures[F1_PLOT], tmp_path / "f1.png")
    assert 500 < width < 1000 and height > 250


def test_a_regressions_scatter_is_each_prediction_against_its_truth_with_the_rmse(tmp_path):
    rng = np.random.default_rng(2)
    actual = rng.uniform(1, 100, 25)
    predicted = (actual + rng.normal(0, 10, 25)).reshape(-1, 1)
    figures = validation_figures(None, TargetKind.regression, ("Pawpularity",), (predicted, actual), None, TITLE)
    (ax,) = figures[SCATTER_PLOT].axes
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.column_stack([actual, predicted.ravel()]))
    assert ax.get_title() == f"{TITLE}\nvalidation RMSE {root_mean_squared_error(actual, predicted.ravel()):.4f}"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("true Pawpularity", "predicted Pawpularity")
    (diagonal,) = [line for line in ax.get_lines() if line.get_label() == "predicted = true"]
    assert np.array_equal(diagonal.get_xdata(), diagonal.get_ydata())
    width, height = png_size(figures[SCATTER_PLOT], tmp_path / "scatter.png")
    assert 400 < width < 800 and abs(width - height) < 0.3 * width


def test_ordinal_grades_confusion_matrix_is_of_the_grades_after_the_cut_points():
    rng = np.random.default_rng(3)
    actual = rng.integers(1, 5, 40).astype(np.float32)  # grades 1-4
    values = (actual + rng.normal(0, 0.6, 40)).reshape(-1, 1)
    decisions = Decisions(cutpoints=(1.4, 2.6, 3.3), lowest_grade=1)
    figures = validation_figures(None, TargetKind.ordinal, ("diagnosis",), (values, actual), decisions, TITLE)
    counts, shares = figures[CONFUSION_PLOT].axes
    predicted = grades(values, decisions.cutpoints, 1)
    assert not np.array_equal(predicted, np.rint(values.ravel()).clip(1, 4)), "the cut-points matter here"
    expected = confusion_matrix(actual.astype(int), predicted, labels=[1, 2, 3, 4])
    cells = [[int(t.get_text()) for t in row] for row in np.array(counts.texts).reshape(4, 4)]
    assert cells == expected.tolist()
    assert [t.get_text() for t in counts.get_yticklabels()] == ["1", "2", "3", "4"]
    assert figures[CONFUSION_PLOT]._suptitle.get_text() == f"{TITLE}\ngrades after the fitted cut-points"


def test_a_confusion_picture_of_many_classes_colours_its_cells_on_a_bounded_figure(tmp_path):
    """120 classes (dog-breed): no number in 28,800 cells (drawing them took a minute a run), the figure
    at most LARGEST_PANEL inches a side, every class still named; 25 classes still get their numbers."""
    rng = np.random.default_rng(0)
    vocab = [f"breed_{i}" for i in range(120)]
    actual = rng.integers(0, 120, 600)
    fig = confusion_figure(actual, actual, vocab, "run\nconvnext at 224x224: log_loss 0.3")
    counts, shares = fig.axes
    assert not counts.texts and not shares.texts
    assert max(fig.get_size_inches()) <= 2 * LARGEST_PANEL + 1
    assert [t.get_text() for t in counts.get_yticklabels()] == vocab
    assert save_figure(fig, tmp_path / "confusion.png").stat().st_size > 0
    few = confusion_figure(actual % 25, actual % 25, vocab[:25], "run")
    assert len(few.axes[0].texts) == 25 * 25 == WRITTEN_CELLS_UP_TO**2


def test_a_confusion_picture_of_thousands_of_classes_draws_those_with_the_most_mistakes(tmp_path):
    """herbarium's 15,501 classes: 3,000 took 42 s and 1.3 GB, and no one can read them. Only the
    DRAWN_CLASSES_UP_TO classes with the most mistakes are drawn; a row's share is of all its class's images."""
    n = 2000  # classes 1..299 have two mistakes each (c0 and c300 one): c1..c120 are drawn
    actual = np.arange(n).repeat(2)  # two validation images a class, each predicted right ...
    predicted = actual.copy()
    predicted[1:600:2] = (actual[1:600:2] + 1) % n  # ... but the second of classes 0..299 taken for the next class
    fig = confusion_figure(actual, predicted, [f"c{i}" for i in range(n)], "run")
    counts, shares = fig.axes
    names = [t.get_text() for t in counts.get_yticklabels()]
    assert len(names) == DRAWN_CLASSES_UP_TO and names == [f"c{i}" for i in range(1, DRAWN_CLASSES_UP_TO + 1)]
    assert fig._suptitle.get_text() == f"run\nthe {DRAWN_CLASSES_UP_TO} of {n} classes with the most mistakes"
    drawn = counts.images[0].get_array()
    assert drawn.shape == (DRAWN_CLASSES_UP_TO, DRAWN_CLASSES_UP_TO)
    assert drawn[4, 4] == 1 and drawn[4, 5] == 1 and drawn[4].sum() == 2  # c5: one right, one taken for c6
    np.testing.assert_allclose(shares.images[0].get_array()[4, [4, 5]], [0.5, 0.5])
    last = DRAWN_CLASSES_UP_TO - 1  # c120 is mistaken for c121, which is not drawn: its share still of 2 images
    assert drawn[last].sum() == 1 and shares.images[0].get_array()[last].sum() == pytest.approx(0.5)
    assert save_figure(fig, tmp_path / "confusion.png").stat().st_size > 0
