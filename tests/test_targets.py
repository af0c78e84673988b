import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from paddy.scoring.metrics import score
from paddy.settings.competition import MetricName, TargetKind
from paddy.training.targets import TwoTargetLoss, fastai_metric, scored_metric, single_target, two_targets

OUT = torch.tensor([[2.0, 0.0, 1.0, 0.5, -0.5], [0.0, 3.0, 0.0, -1.0, 1.0]])
DISEASE = torch.tensor([0, 2])
VARIETY = torch.tensor([0, 1])


def hand_cross_entropy(logits: list[float], target: int, eps: float = 0.0) -> float:
    """Cross-entropy with label smoothing, computed by hand (eps spread over all classes)."""
    log_norm = math.log(sum(math.exp(v) for v in logits))
    log_probs = [v - log_norm for v in logits]
    return -(1 - eps) * log_probs[target] - eps * sum(log_probs) / len(logits)


def test_two_target_loss_adds_both_cross_entropies():
    loss = TwoTargetLoss(n_first=3)(OUT, DISEASE, VARIETY)
    rows = OUT.tolist()
    expected = np.mean([hand_cross_entropy(r[:3], int(d)) for r, d in zip(rows, DISEASE)]) + np.mean(
        [hand_cross_entropy(r[3:], int(v)) for r, v in zip(rows, VARIETY)]
    )
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_two_target_loss_with_label_smoothing():
    loss = TwoTargetLoss(n_first=3, label_smoothing=0.1)(OUT, DISEASE, VARIETY)
    rows = OUT.tolist()
    expected = np.mean([hand_cross_entropy(r[:3], int(d), 0.1) for r, d in zip(rows, DISEASE)]) + np.mean(
        [hand_cross_entropy(r[3:], int(v), 0.1) for r, v in zip(rows, VARIETY)]
    )
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_activation_keeps_only_the_disease_probabilities():
    probs = TwoTargetLoss(n_first=3).activation(OUT)
    assert probs.shape == (2, 3)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(probs, torch.softmax(OUT[:, :3], dim=1))


def test_each_target_has_its_own_error_metric():
    _, (disease_error, variety_error) = two_targets(3, "label", "variety", 0.0)
    assert disease_error.__name__ == "label_error" and variety_error.__name__ == "variety_error"
    # row 0: disease argmax 0 (right), variety argmax 0 (right)
    # row 1: disease argmax 1 (wrong), variety argmax 1 (right)
    assert float(disease_error(OUT, DISEASE, VARIETY)) == 0.5
    assert float(variety_error(OUT, DISEASE, VARIETY)) == 0.0


def test_single_target_uses_fastai_label_smoothing_when_asked():
    plain, _ = single_target(0.0)
    smoothed, _ = single_target(0.2)
    assert type(plain).__name__ == "CrossEntropyLossFlat"
    assert type(smoothed).__name__ == "LabelSmoothingCrossEntropyFlat" and smoothed.func.eps == 0.2


def test_multi_target_run_saves_disease_only_probabilities(tiny_data, tmp_path):
    from conftest import tiny_entry, trained

    from paddy.runs.predictions import load_predictions

    result = trained(tiny_entry(multi_target="variety", finetune=False), tiny_data, tmp_path, num_workers=0)
    assert {"label_error", "variety_error"} <= set(result.history.columns), "named after the sample's column"
    assert result.valid_error == pytest.approx(result.history.label_error.iloc[-1])
    preds = load_predictions(result.predictions_path)
    assert preds.probs.shape == (len(tiny_data.test_images), len(tiny_data.classes))
    assert preds.vocab == tiny_data.classes and preds.meta["multi_target"] == "variety"
    np.testing.assert_allclose(preds.probs.sum(axis=1), 1.0, rtol=1e-5)


LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [-1.0, 0.0, 3.0], [1.0, 1.0, 0.0]])


@pytest.mark.parametrize(
    ("metric", "kind", "outputs", "targets"),
    [
        ("log_loss", "single", LOGITS, torch.tensor([0, 1, 2, 1])),
        ("log_loss", "binary", LOGITS[:, :2], torch.tensor([0, 1, 1, 0])),
        ("map5", "single", LOGITS, torch.tensor([1, 1, 2, 0])),
        ("qwk", "ordinal", torch.tensor([[0.2], [1.6], [2.9], [0.7]]), torch.tensor([0.0, 2.0, 3.0, 1.0])),
    ],
)
def test_an_epoch_metric_paddy_computes_is_the_scorings_on_the_activated_outputs_and_warns_nothing(
    metric, kind, outputs, targets
):
    """Each epoch line printed fastai's 'implicit dimension choice for softmax' warning, and a class axis given
    for every kind would argmax a number's single output to 0."""
    accumulated = scored_metric(MetricName(metric), TargetKind(kind))
    accumulated.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        accumulated.accumulate(SimpleNamespace(pred=outputs, y=targets, to_detach=lambda t: t.detach().cpu()))
        value = accumulated.value
    activated = outputs if kind == "ordinal" else torch.softmax(outputs, dim=1)
    assert value == pytest.approx(score(MetricName(metric), TargetKind(kind), activated.numpy(), targets.numpy()))


def test_the_f2_epoch_metric_is_fastais_fbeta_at_half_and_the_scorings():
    probs = np.array([[0.9, 0.4, 0.1], [0.6, 0.7, 0.3]])
    metric = fastai_metric(MetricName.f2_samples, TargetKind.multi)
    assert metric.name == "f2_samples"
    metric.reset()
    logits = torch.tensor(np.log(probs / (1 - probs)), dtype=torch.float32)
    metric.accumulate(SimpleNamespace(pred=logits, y=torch.tensor([[1, 1, 0], [0, 1, 1]]), to_detach=lambda t: t))
    assert metric.value == pytest.approx((5 / 9 + 1 / 2) / 2)
