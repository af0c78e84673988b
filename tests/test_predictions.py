import pickle

import numpy as np
import pytest

from paddy.core.errors import PaddyError
from paddy.runs.predictions import Predictions, load_predictions, save_predictions


def sample_predictions() -> Predictions:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    return Predictions(probs, ("b.jpg", "a.jpg"), ("blast", "hispa", "normal"), {"arch": "resnet18", "size": [64, 64]})


def test_round_trip_keeps_probabilities_and_metadata(tmp_path):
    path = save_predictions(sample_predictions(), tmp_path / "p.safetensors")
    loaded = load_predictions(path)
    np.testing.assert_array_equal(loaded.probs, sample_predictions().probs)
    assert loaded.image_ids == ("b.jpg", "a.jpg")
    assert loaded.vocab == ("blast", "hispa", "normal")
    assert loaded.meta == {"arch": "resnet18", "size": [64, 64]}
    assert loaded.labels() == ["blast", "normal"]
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]


def test_shape_must_match_ids_and_vocab():
    with pytest.raises(PaddyError, match="do not match"):
        Predictions(np.zeros((2, 2), dtype=np.float32), ("a", "b"), ("x", "y", "z"))


def test_a_pickle_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "p.safetensors"
    path.write_bytes(pickle.dumps({"probs": [1, 2, 3]}))
    with pytest.raises(PaddyError, match="not a readable predictions file"):
        load_predictions(path)


def test_missing_file(tmp_path):
    with pytest.raises(PaddyError, match="no predictions file"):
        load_predictions(tmp_path / "none.safetensors")


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = save_predictions(sample_predictions(), tmp_path / "p.safetensors")
    before = path.read_bytes()
    import paddy.core.files

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(paddy.core.files.os, "fsync", broken_fsync)
    with pytest.raises(PaddyError, match="cannot write .*p.safetensors: No space left on device"):
        save_predictions(Predictions(np.ones((1, 1), np.float32), ("x",), ("y",)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]


@pytest.mark.parametrize(
    "meta, runs",
    [
        ({"run": "r1"}, ["r1"]),
        ({"run": "f0", "runs": ["f0", "f1", "f2"]}, ["f0", "f1", "f2"]),  # an entry's fold runs, averaged
        ({"members": [{"run": "a", "weight": 2.0}, {"run": "b", "weight": 1.0}], "run": None}, ["a", "b"]),
    ],
)
def test_the_runs_predictions_came_from(meta, runs):
    """What `paddy predict` names: an ensemble's members, an entry's fold runs, or the one run."""
    assert Predictions(sample_predictions().probs, ("b.jpg", "a.jpg"), ("x", "y", "z"), meta).run_names() == runs
