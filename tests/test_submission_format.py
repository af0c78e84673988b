import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from paddy.core.errors import PaddyError
from paddy.data.submission_format import (
    SampleFormat,
    SampleShape,
    check_submission,
    format_submission,
    infer_sample_format,
    read_sample,
)
from paddy.kaggle import submit
from paddy.kaggle.submit import build_submission, default_message, sample_for
from paddy.runs.predictions import Predictions
from paddy.settings.competition import MetricName, TargetKind


def sample_of(text, tmp_path):
    path = tmp_path / "sample_submission.csv"
    path.write_text(text)
    return read_sample(path)


def submitted(sample, kind, vocab, image_ids, outputs, decisions=None, metric=None):
    """The CSV text of the submission, checked as submit checks it."""
    fmt = infer_sample_format(sample, kind, vocab, list(image_ids), metric)
    made = format_submission(sample, fmt, image_ids, np.asarray(outputs), vocab, kind, decisions)
    check_submission(made, sample, fmt, vocab)
    return fmt, made.to_csv(index=False)


def test_class_probabilities_follow_the_samples_column_order_and_ids_without_extension(tmp_path):
    # dog-breed-identification: `id` without .jpg, one column per breed, not in vocab order
    sample = sample_of("id,pug,beagle,collie\nb2,0.33,0.33,0.33\na1,0.33,0.33,0.33\n", tmp_path)
    vocab = ("beagle", "collie", "pug")
    probs = [[0.5, 0.25, 0.25], [0.125, 0.125, 0.75]]  # rows: a1.jpg, b2.jpg
    fmt, csv = submitted(sample, TargetKind.single, vocab, ("a1.jpg", "b2.jpg"), probs)
    assert fmt.shape == SampleShape.class_probabilities and not fmt.ids_with_extension
    assert fmt.value_columns == ("pug", "beagle", "collie")
    assert csv == "id,pug,beagle,collie\nb2,0.75,0.125,0.125\na1,0.25,0.5,0.25\n"


def test_binary_two_columns_get_the_positive_probability(tmp_path):
    # histopathologic-cancer-detection: id (no .tif), label = P(positive)
    sample = sample_of("id,label\nf38a,0\nc18f,0\n", tmp_path)
    probs = [[0.75, 0.25], [0.125, 0.875]]  # rows: c18f.tif, f38a.tif
    fmt, csv = submitted(sample, TargetKind.binary, ("0", "1"), ("c18f.tif", "f38a.tif"), probs)
    assert fmt.shape == SampleShape.positive_probability
    assert csv == "id,label\nf38a,0.875\nc18f,0.25\n"


def test_binary_scored_on_accuracy_gets_the_class(tmp_path):
    sample = sample_of("id,label\nf38a,0\nc18f,0\n", tmp_path)
    probs = [[0.75, 0.25], [0.125, 0.875]]
    fmt, csv = submitted(sample, TargetKind.binary, ("0", "1"), ("c18f.tif", "f38a.tif"), probs, None, "accuracy")
    assert fmt.shape == SampleShape.label and csv == "id,label\nf38a,1\nc18f,0\n"


APTOS = "id_code,diagnosis\n0005cfc8afb6,0\n003f0afdcd15,0\n006efc72b638,0\n00836aaacf06,0\n009245722fa4,0\n"
APTOS_IDS = ("0005cfc8afb6.png", "003f0afdcd15.png", "006efc72b638.png", "00836aaacf06.png", "009245722fa4.png")


def test_ordinal_grades_come_from_the_recorded_cutpoints(tmp_path):
    sample = sample_of(APTOS, tmp_path)
    values = [[0.2], [1.6], [2.49], [3.7], [4.9]]
    decisions = {"cutpoints": [0.7, 1.5, 2.5, 3.5], "grades": [0, 4]}
    # 0.2: no cut-point <= it -> 0; 1.6: 0.7, 1.5 -> 2; 2.49: still 2; 3.7 and 4.9: all four -> 4
    fmt, csv = submitted(sample, TargetKind.ordinal, ("diagnosis",), APTOS_IDS, values, decisions)
    assert fmt.shape == SampleShape.number
    assert csv.splitlines()[1:] == [
        "0005cfc8afb6,0",
        "003f0afdcd15,2",
        "006efc72b638,2",
        "00836aaacf06,4",
        "009245722fa4,4",
    ]


def test_ordinal_grades_default_to_halfway_between_grades(tmp_path):
    sample = sample_of(APTOS, tmp_path)
    values = [[-0.7], [1.49], [2.5], [3.2], [5.6]]
    # cut-points 0.5 1.5 2.5 3.5 for grades 0..4: -0.7 -> 0, 1.49 -> 1, 2.5 (a cut-point) -> 3, 3.2 -> 3, 5.6 -> 4
    _, csv = submitted(sample, TargetKind.ordinal, ("diagnosis",), APTOS_IDS, values, {"grades": [0, 4]})
    assert [line.split(",")[1] for line in csv.splitlines()[1:]] == ["0", "1", "3", "3", "4"]
    # no range recorded: the nearest integer, halves up (-0.7 -> -1, 5.6 -> 6)
    _, csv = submitted(sample, TargetKind.ordinal, ("diagnosis",), APTOS_IDS, values)
    assert [line.split(",")[1] for line in csv.splitlines()[1:]] == ["-1", "1", "3", "3", "6"]


PLANT_TAGS = ("complex", "frog_eye_leaf_spot", "healthy", "rust", "scab")


def test_multi_label_lists_the_tags_on_and_the_most_probable_when_none_is(tmp_path):
    # plant-pathology-2021-fgvc8: image (with .jpg), labels = space-separated tags
    sample = sample_of(
        "image,labels\n85f8cb619c66b863.jpg,healthy\nad8770db05586b59.jpg,healthy\nc7b03e718489f3ca.jpg,healthy\n",
        tmp_path,
    )
    ids = ("85f8cb619c66b863.jpg", "ad8770db05586b59.jpg", "c7b03e718489f3ca.jpg")
    probs = [[0.1, 0.6, 0.2, 0.1, 0.5], [0.1, 0.2, 0.9, 0.3, 0.1], [0.3, 0.1, 0.2, 0.4, 0.1]]
    fmt, csv = submitted(sample, TargetKind.multi, PLANT_TAGS, ids, probs)
    assert fmt.shape == SampleShape.label_list and fmt.ids_with_extension
    # 0.5 is on (prob >= threshold); the third image has none on: its most probable tag, rust
    assert csv.splitlines()[1:] == [
        "85f8cb619c66b863.jpg,frog_eye_leaf_spot scab",
        "ad8770db05586b59.jpg,healthy",
        "c7b03e718489f3ca.jpg,rust",
    ]
    thresholds = {"thresholds": [0.25, 0.7, 0.2, 0.5, 0.6]}
    _, csv = submitted(sample, TargetKind.multi, PLANT_TAGS, ids, probs, thresholds)
    assert csv.splitlines()[1:] == [
        "85f8cb619c66b863.jpg,healthy",
        "ad8770db05586b59.jpg,healthy",
        "c7b03e718489f3ca.jpg,complex healthy",
    ]


def test_regression_writes_the_number(tmp_path):
    # petfinder-pawpularity-score: Id without .jpg, Pawpularity
    sample = sample_of("Id,Pawpularity\n4128bae2,50\n43a2262d,50\n", tmp_path)
    fmt, csv = submitted(
        sample, TargetKind.regression, ("Pawpularity",), ("43a2262d.jpg", "4128bae2.jpg"), [[7.25], [42.5]]
    )
    assert fmt.shape == SampleShape.number and csv == "Id,Pawpularity\n4128bae2,42.5\n43a2262d,7.25\n"


def test_single_label_scored_on_map5_lists_the_five_best_classes_best_first(tmp_path):
    # humpback-whale-identification: Image, Id = five guesses
    sample = sample_of("Image,Id\n00028a005.jpg,new_whale\n", tmp_path)
    vocab = ("a", "b", "c", "d", "e", "f")
    probs = [[0.05, 0.3, 0.1, 0.2, 0.05, 0.3]]  # b and f tie: vocab order; a and e tie: a first
    fmt, csv = submitted(sample, TargetKind.single, vocab, ("00028a005.jpg",), probs, None, MetricName.map5)
    assert fmt.shape == SampleShape.label_list and csv == "Image,Id\n00028a005.jpg,b f d c a\n"
    fmt, csv = submitted(sample, TargetKind.single, vocab, ("00028a005.jpg",), probs)
    assert fmt.shape == SampleShape.label and csv == "Image,Id\n00028a005.jpg,b\n"


def test_ids_without_extension_round_trip_as_written(tmp_path):
    sample = sample_of("id,label\n007,x\n010,x\n", tmp_path)
    fmt, csv = submitted(sample, TargetKind.single, ("p", "q"), ("010.png", "007.png"), [[0.9, 0.1], [0.2, 0.8]])
    assert csv == "id,label\n007,q\n010,p\n"
    (tmp_path / "s.csv").write_text(csv)
    assert list(read_sample(tmp_path / "s.csv")["id"]) == ["007", "010"]
    assert SampleFormat.from_json(json.loads(json.dumps(fmt.to_json()))) == fmt
    assert fmt.to_json()["shape"] == "label" and fmt.to_json()["ids_with_extension"] is False


def test_refuses_ids_that_name_no_test_image_either_way(tmp_path):
    sample = sample_of("id,label\nzz1,x\nzz2,x\n", tmp_path)
    with pytest.raises(PaddyError, match=r"neither way: none of its 2 ids .*'zz1'.*'a.jpg'"):
        infer_sample_format(sample, TargetKind.single, ("p", "q"), ["b.jpg", "a.jpg"])


def test_refuses_class_columns_that_are_not_the_classes(tmp_path):
    sample = sample_of("id,pug,beagle,poodle\na,0,0,0\n", tmp_path)
    with pytest.raises(PaddyError, match="not the classes: missing collie; extra poodle"):
        infer_sample_format(sample, TargetKind.single, ("beagle", "collie", "pug"), ["a.jpg"])


def test_refuses_an_empty_sample(tmp_path):
    sample = sample_of("id,label\n", tmp_path)
    with pytest.raises(PaddyError, match=r"empty \(columns \['id', 'label'\], 0 rows\)"):
        infer_sample_format(sample, TargetKind.single, ("p", "q"), ["a.jpg"])


def test_refuses_a_sample_id_without_a_prediction_naming_its_row(tmp_path):
    sample = sample_of("id,label\na,x\nb,x\nc,x\n", tmp_path)
    fmt = infer_sample_format(sample, TargetKind.single, ("p", "q"), ["a.jpg", "b.jpg"])
    with pytest.raises(PaddyError, match=r"no prediction for c \(sample_submission row 4; 1 missing in all\)"):
        format_submission(sample, fmt, ["a.jpg", "b.jpg"], np.eye(2), ("p", "q"), TargetKind.single)


def test_refuses_thresholds_of_another_length(tmp_path):
    sample = sample_of("image,labels\na.jpg,x\n", tmp_path)
    fmt = infer_sample_format(sample, TargetKind.multi, ("p", "q"), ["a.jpg"])
    with pytest.raises(PaddyError, match="1 thresholds for 2 tags"):
        format_submission(
            sample, fmt, ["a.jpg"], np.array([[0.2, 0.9]]), ("p", "q"), TargetKind.multi, {"thresholds": [0.5]}
        )


def test_check_refuses_what_kaggle_would_reject_or_misread(tmp_path):
    sample = sample_of("id,label\na,x\nb,x\n", tmp_path)
    labels = SampleFormat("id", ("id", "label"), SampleShape.label, ("label",), False)
    probability = SampleFormat("id", ("id", "label"), SampleShape.positive_probability, ("label",), False)
    number = SampleFormat("id", ("id", "label"), SampleShape.number, ("label",), False)
    tags = SampleFormat("id", ("id", "label"), SampleShape.label_list, ("label",), False)
    good = pd.DataFrame({"id": ["a", "b"], "label": ["p", "q"]})
    check_submission(good, sample, labels, ("p", "q"))
    cases = [
        (good.rename(columns={"label": "Label"}), labels, r"header \['id', 'Label'\] is not the sample's"),
        (good.iloc[::-1], labels, "not the sample's ids in its order .*row 2"),
        (good.iloc[:1], labels, "not the sample's ids in its order .*row 3"),
        (good.assign(label=["p", "r"]), labels, r"'label' row 3: 'r' is not a class \(id b\)"),
        (good.assign(label=["p q", "q r"]), tags, "row 3: 'q r' is not a list of classes"),
        (good.assign(label=[0.5, 1.5]), probability, r"row 3: 1.5 is not a probability in \[0, 1\]"),
        (good.assign(label=[np.nan, 2.0]), number, "row 2: nan is not a finite number"),
    ]
    for submission, fmt, message in cases:
        with pytest.raises(PaddyError, match=message):
            check_submission(submission, sample, fmt, ("p", "q"))


def ordinal_preds(meta):
    values = np.array([[0.2], [3.7]], dtype=np.float32)
    return Predictions(values, ("x1.png", "x2.png"), ("diagnosis",), {"kind": "ordinal", **meta})


def test_build_submission_reads_the_kind_and_decisions_the_predictions_record(tmp_path):
    sample = sample_of("id_code,diagnosis\nx2,0\nx1,0\n", tmp_path)
    made = build_submission(ordinal_preds({"decisions": {"cutpoints": [0.1, 3.8], "grades": [1, 3]}}), sample, None)
    assert made.to_csv(index=False) == "id_code,diagnosis\nx2,2\nx1,2\n"
    with pytest.raises(PaddyError, match="unknown target kind 'ranking'"):
        build_submission(ordinal_preds({"kind": "ranking"}), sample, None)


def test_sample_for_accepts_a_sample_whose_ids_lack_the_extension(tmp_path, monkeypatch):
    sample_csv = tmp_path / "sample_submission.csv"
    monkeypatch.setattr(
        submit, "resolve_data", lambda data, spec: SimpleNamespace(sample_submission=sample_csv, sample_id_files=None)
    )
    sample_csv.write_text("id_code,diagnosis\nx2,0\nx1,0\n")
    preds = ordinal_preds({"data": str(tmp_path)})
    assert sample_for(preds, None, tmp_path / "p.safetensors") == (sample_csv, None)
    sample_csv.write_text("id_code,diagnosis\nx2,0\nx3,0\n")
    with pytest.raises(PaddyError, match="lists other test images"):
        sample_for(preds, None, tmp_path / "p.safetensors")


def test_the_message_names_the_cv_metric():
    members = [{"arch": "resnet18", "size": "64x64", "item": "squish", "weight": 1.0}]
    cv = {"metric": "qwk", "value": 0.91234, "greater_is_better": True}
    preds = Predictions(np.eye(2, dtype=np.float32), ("a", "b"), ("p", "q"), {"members": members, "cv": cv})
    assert default_message(preds) == "paddy: resnet18 64x64 squish | CV qwk 0.9123"
