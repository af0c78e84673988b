import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_entry
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.core.files import write_json
from paddy.ensembling.average import (
    Member,
    aligned_probs,
    average,
    build_ensemble,
    check_probabilities,
    member_name,
    parse_weights,
)
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import Predictions, load_predictions, save_predictions
from paddy.settings.config_file import load_config

VOCAB = ("blast", "hispa", "normal")
IDS = ("1.jpg", "2.jpg")


def preds(probs, ids=IDS, vocab=VOCAB, **meta) -> Predictions:
    return Predictions(np.array(probs, dtype=np.float32), tuple(ids), tuple(vocab), {"arch": "resnet18", **meta})


A = [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]
B = [[0.2, 0.6, 0.2], [0.1, 0.8, 0.1]]


def test_unweighted_average_is_the_mean():
    result = average([Member("a", preds(A), 1.0), Member("b", preds(B), 1.0)])
    np.testing.assert_allclose(result.probs, [[0.4, 0.45, 0.15], [0.15, 0.5, 0.35]], rtol=1e-6)
    assert [m["run"] for m in result.meta["members"]] == ["a", "b"]


def test_weighted_average_by_hand():
    result = average([Member("a", preds(A), 1.0), Member("b", preds(B), 3.0)])
    expected = (np.array(A) * 1 + np.array(B) * 3) / 4
    np.testing.assert_allclose(result.probs, expected, rtol=1e-6)
    assert [m["weight"] for m in result.meta["members"]] == [1.0, 3.0]


def test_members_are_joined_on_image_id_and_class_name():
    shuffled = preds([B[1][::-1], B[0][::-1]], ids=IDS[::-1], vocab=VOCAB[::-1])
    np.testing.assert_allclose(aligned_probs(preds(A), "b", shuffled), B)
    result = average([Member("a", preds(A), 1.0), Member("b", shuffled, 1.0)])
    np.testing.assert_allclose(result.probs, (np.array(A) + np.array(B)) / 2, rtol=1e-6)


@pytest.mark.parametrize(
    "other, message",
    [
        (preds([[0.5, 0.5], [0.5, 0.5]], vocab=("blast", "hispa")), "run odd: 2 classes, but the first member has 3"),
        (preds(B, vocab=("blast", "hispa", "tungro")), "run odd: class names differ .*normal, tungro"),
        (preds(B, ids=("1.jpg", "3.jpg")), "run odd: test images differ .*missing 2.jpg"),
        (preds([B[0]], ids=("1.jpg",)), "run odd: test images differ .*missing 2.jpg"),
        (preds([[0.5, np.nan, 0.5], B[1]]), "run odd: predictions contain NaN"),
        (preds(B + [B[0]], ids=("1.jpg", "2.jpg", "2.jpg")), "run odd: image_id 2.jpg appears more than once"),
        (preds(B, vocab=("blast", "blast", "hispa")), "run odd: class blast appears more than once"),
        (preds([[2.0, 1.0, -1.0], B[1]]), "run odd: predictions contain values outside \\[0, 1\\]"),
        (preds([[3.0, 1.0, 1.0], B[1]]), "run odd: row for 1.jpg sums to 5.0000, not 1"),
    ],
)
def test_mismatched_members_are_refused(other, message):
    with pytest.raises(PaddyError, match=message):
        average([Member("good", preds(A), 1.0), Member("odd", other, 1.0)])


def test_runs_of_another_competitions_test_set_are_refused_naming_both_data_folders():
    """Two competitions' runs under one --out said '4 classes, but the first member has 5'."""
    first = preds(A, data="/d/cassava", test_ids_sha256="aaa")
    other = preds([[0.5, 0.5], [0.5, 0.5]], vocab=("x", "y"), data="/d/seedlings", test_ids_sha256="bbb")
    with pytest.raises(PaddyError, match="run odd predicted the test images of /d/seedlings, the first member those "
                       "of /d/cassava: ensemble runs of one competition"):  # fmt: skip
        average([Member("good", first, 1.0), Member("odd", other, 1.0)])
    presized = preds(B, data="/d/cassava-256px", test_ids_sha256="aaa")
    assert average([Member("good", first, 1.0), Member("copy", presized, 1.0)]).meta["data"] == "/d/cassava"


def test_zero_total_weight_and_no_members():
    with pytest.raises(PaddyError, match="add up to 0"):
        average([Member("a", preds(A), 0.0)])
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(PaddyError, match=f"run b: ensemble weight {bad} is not a finite number"):
            average([Member("a", preds(A), 1.0), Member("b", preds(B), bad)])
    with pytest.raises(PaddyError, match="add up to inf"):
        average([Member("a", preds(A), 1e308), Member("b", preds(B), 1e308)])
    with pytest.raises(PaddyError, match="no finished runs"):
        average([])


def test_parse_weights():
    assert parse_weights(["vit_large_patch16_224=2", "run-1=0.5"]) == {"vit_large_patch16_224": 2.0, "run-1": 0.5}
    for bad in ("vit", "=2", "vit=-1", "vit=two", "vit=nan", "vit=inf", "vit=1e400"):
        with pytest.raises(PaddyError, match="NAME=WEIGHT"):
            parse_weights([bad])


def test_check_probabilities_accepts_softmax_rows():
    check_probabilities("a", preds(A))


def write_run(out, name, probs, entry=None, data_root=Path("/data"), **meta):
    """A finished run folder: config.json (the entry's settings on `data_root`), result.json, predictions."""
    entry = entry or tiny_entry()
    write_json(out / name / "config.json", {**entry.to_json(), "data": str(data_root)})
    write_json(out / name / "result.json", {"valid_error": 0.5, "train_seconds": 1.0, "predict_seconds": 1.0})
    save_predictions(preds(probs, run=name, **meta), out / name / "predictions.safetensors")


def test_build_ensemble_weights_by_run_then_arch_then_recorded(tmp_path):
    out = tmp_path / "runs"
    write_run(out, "r1", A, weight=1.0)
    write_run(out, "r2", B, arch="vit", weight=1.0)
    (out / "unfinished").mkdir()
    dest = out / "ensemble.safetensors"
    ensemble, members, _ = build_ensemble(out, None, {"vit": 3.0}, None, dest)
    assert [(m.name, m.weight) for m in members] == [("r1", 1.0), ("r2", 3.0)]
    np.testing.assert_allclose(load_predictions(dest).probs, (np.array(A) + 3 * np.array(B)) / 4, rtol=1e-6)
    _, members, _ = build_ensemble(out, ["r2"], {"r2": 5.0, "vit": 3.0}, None, dest)
    assert [(m.name, m.weight) for m in members] == [("r2", 5.0)]


def test_nothing_is_written_when_a_member_is_bad(tmp_path):
    out = tmp_path / "runs"
    write_run(out, "r1", A)
    write_run(out, "r2", B)
    write_run(out, "r3", B, ids=("1.jpg", "9.jpg"))
    dest = out / "ensemble.safetensors"
    with pytest.raises(PaddyError, match="run r3: test images differ"):
        build_ensemble(out, None, {}, None, dest)
    assert not dest.exists()


def test_unknown_names_are_refused(tmp_path):
    out = tmp_path / "runs"
    write_run(out, "r1", A)
    with pytest.raises(PaddyError, match="--weight names no member: convnext"):
        build_ensemble(out, None, {"convnext": 2.0}, None, out / "e.safetensors")
    with pytest.raises(PaddyError, match="no finished run folder 'r9'"):
        build_ensemble(out, ["r9"], {}, None, out / "e.safetensors")


def test_config_picks_the_newest_run_of_each_entry_with_its_weight(tiny_data_root, tmp_path):
    out, data = tmp_path / "runs", tiny_data_root.absolute()
    config = tmp_path / "c.toml"
    config.write_text(
        '[defaults]\nbs = 8\nepochs = 1\npretrained = false\nseed = 0\n[[models]]\narch = "resnet18"\nsize = 32\n\n'
        '[[models]]\narch = "resnet18"\nsize = 48\nitem = "crop"\nensemble_weight = 2\naccum = 2\n'
    )
    small, crop = load_config(config).models
    write_run(out, "old", B, small, data)
    write_run(out, "new", A, small, data)
    write_run(out, "crop", B, replace(crop, accum=4), data)  # a retry's accum does not matter
    write_run(out, "more-epochs", B, replace(small, epochs=3), data)
    write_run(out, "other-item-size", B, replace(small, item_size=(40, 40)), data)
    write_run(out, "other-data", B, small, tmp_path / "elsewhere")
    for name in ("more-epochs", "other-item-size", "other-data"):
        os.utime(out / name / "predictions.safetensors", (2e9, 2e9))  # newest, but not the entry's
    os.utime(out / "old" / "predictions.safetensors", (1, 1))
    _, members, _ = build_ensemble(out, None, {}, load_config(config), out / "e.safetensors", data)
    assert [(m.name, m.weight) for m in members] == [("new", 1.0), ("crop", 2.0)]
    config.write_text('[[models]]\narch = "resnet18"\nsize = 64\n')
    with pytest.raises(PaddyError, match="no finished run .* resnet18-64x64-squish"):
        build_ensemble(out, None, {}, load_config(config), out / "e.safetensors", data)


def test_runs_from_several_machines_are_one_ensemble(tmp_path):
    """`--shard` on two machines, their run folders kept apart: `paddy ensemble --out A --out B`."""
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    write_run(a, "r1", A)
    write_run(b, "r2", B)
    write_run(b, "r1", A)  # the same run copied to both: one member
    dest = tmp_path / "e.safetensors"
    _, members, _ = build_ensemble([a, b], None, {}, None, dest)
    assert [m.name for m in members] == ["r1", "r2"]
    np.testing.assert_allclose(load_predictions(dest).probs, (np.array(A) + np.array(B)) / 2, rtol=1e-6)
    _, members, _ = build_ensemble([a, b], ["r2"], {}, None, dest)
    assert [m.runs[0].path for m in members] == [b / "r2"]
    result = CliRunner().invoke(app, ["ensemble", "--out", str(a), "--out", str(b)])
    assert result.exit_code == 0 and "ensemble of 2 members" in result.stdout, result.output
    assert (a / "ensemble.safetensors").is_file(), "written under the first --out"
    write_run(b, "r3", B, ids=("1.jpg", "9.jpg"))
    with pytest.raises(PaddyError, match="run r3: test images differ"):
        build_ensemble([a, b], None, {}, None, dest)


def test_an_entrys_fold_runs_go_by_their_first_and_the_number_of_the_others(tmp_path):
    runs = [RunFolder(tmp_path / f"r-fold{k}of3") for k in (1, 2, 3)]
    assert [member_name(runs[:n]) for n in (1, 2, 3)] == ["r-fold1of3", "r-fold1of3 +1 fold", "r-fold1of3 +2 folds"]
