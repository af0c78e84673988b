"""Labels and test ids in COCO-style metadata, as the FGVC competitions ship them (herbarium 2021/2022, iWildCam
2020). Before, herbarium 2022 was read as class folders 000/, 155/ ("class folder has no images"), herbarium 2021
as one class folder images/, iWildCam as "no labels file"; and no sample whose ids are not its file names
(herbarium 2022's Id 0 is test_images/000/test-000000.jpg) could be matched or submitted."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import train_and_submit
from test_locations import write_images
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.core.progress import reporting_to
from paddy.data.competition import check_layout
from paddy.data.presize import presize_dataset
from paddy.runs.predictions import load_predictions
from paddy.settings.competition import CompetitionSpec, MetricName, TargetKind

HERBARIUM_22, HERBARIUM_21, IWILDCAM = "herbarium-2022-fgvc9", "herbarium-2021-fgvc8", "iwildcam-2020-fgvc7"
FLAGS = ["--arch", "test_resnet", "--size", "16", "--bs", "4", "--epochs", "1", "--one-cycle", "--no-pretrained"]
CATEGORIES = (15504, 3, 12)  # train_images/155/04/, 000/03/, 000/12/: sorted as numbers, 3 before 12


def write_json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def herbarium_2022(root: Path, per: int = 3, tests: int = 5) -> Path:
    """train_images/<ccc>/<cc>/<ccccc>__<k>.jpg with train_metadata.json (image_id keys, a genus each), test
    images 000/test-00000k.jpg listed by test_metadata.json with ids 0.., sample_submission.csv Id,Predicted."""
    images, notes = [], []
    for c in CATEGORIES:
        folder = f"{c // 100:03d}/{c % 100:02d}"
        names = [f"{c:05d}__{k:03d}.jpg" for k in range(1, per + 1)]
        write_images(root / "train_images" / folder, names, c)
        images += [{"image_id": n[:-4], "file_name": f"{folder}/{n}", "license": 0} for n in names]
        notes += [{"image_id": n[:-4], "category_id": c, "genus_id": c % 2, "institution_id": 0} for n in names]
    categories = [{"category_id": c, "scientificName": f"species {c}"} for c in CATEGORIES]
    write_json(root / "train_metadata.json", {"annotations": notes, "images": images, "categories": categories})
    files = [f"{k // 1000:03d}/test-{k:06d}.jpg" for k in range(tests)]
    write_images(root / "test_images" / "000", [Path(f).name for f in files], 7)
    write_json(root / "test_metadata.json", [{"image_id": str(k), "file_name": f} for k, f in enumerate(files)])
    pd.DataFrame({"Id": range(tests), "Predicted": 42}).to_csv(root / "sample_submission.csv", index=False)
    return root


def herbarium_2021(root: Path, top: str = "") -> Path:
    """train/metadata.json ("id" keys) for train/images/<ccc>/<cc>/<id>.jpg, test/metadata.json for
    test/images/<id // 1000>/<id>.jpg, sample ids the test images' ids (their names without .jpg); `top`: the
    folder these are in (herbarium 2020's nybg2020/), the sample beside it."""
    images_root = root / top
    images, notes = [], []
    for c in (1, 2):
        names = [f"{c * 1000 + k}.jpg" for k in range(3)]
        write_images(images_root / "train" / "images" / "000" / f"{c:02d}", names, c)
        images += [{"id": int(n[:-4]), "file_name": f"images/000/{c:02d}/{n}"} for n in names]
        notes += [{"id": k, "image_id": int(n[:-4]), "category_id": c} for k, n in enumerate(names)]
    write_json(images_root / "train" / "metadata.json", {"annotations": notes, "images": images, "categories": []})
    write_images(images_root / "test" / "images" / "008", ["8005.jpg", "8006.jpg"], 5)
    tests = [{"id": i, "file_name": f"images/008/{i}.jpg"} for i in (8005, 8006)]
    write_json(images_root / "test" / "metadata.json", {"images": tests})
    pd.DataFrame({"Id": [8005, 8006], "Predicted": 0}).to_csv(root / "sample_submission.csv", index=False)
    return root


def iwildcam(root: Path) -> Path:
    """train/<uuid>.jpg with iwildcam2020_train_annotations.json (a camera location each), test/<uuid>.jpg with
    iwildcam2020_test_information.json, sample Id,Category."""
    train = [(f"a{k:03d}", k % 3, k % 4) for k in range(12)]  # (id, category, location)
    write_images(root / "train", [f"{i}.jpg" for i, _, _ in train], 1)
    images = [{"id": i, "file_name": f"{i}.jpg", "location": loc, "seq_id": f"s{i}"} for i, _, loc in train]
    notes = [{"id": f"n{i}", "image_id": i, "category_id": c} for i, c, _ in train]
    write_json(root / "iwildcam2020_train_annotations.json", {"annotations": notes, "images": images, "info": {}})
    write_images(root / "test", ["t1.jpg", "t2.jpg"], 2)
    tests = {"images": [{"id": i, "file_name": f"{i}.jpg", "location": 9} for i in ("t1", "t2")], "categories": []}
    write_json(root / "iwildcam2020_test_information.json", tests)
    pd.DataFrame({"Id": ["t1", "t2"], "Category": 0}).to_csv(root / "sample_submission.csv", index=False)
    return root


def inaturalist_2019(root: Path) -> Path:
    """train2019.json and val2019.json for train_val2019/<kingdom>/<category>/<md5>.jpg, test2019.json for
    test2019/<md5>.jpg, kaggle_sample_submission.csv id,predicted with the test images' COCO ids."""
    images, notes, val = [], [], []
    for c, kingdom in ((400, "Plants"), (7, "Insects")):
        names = [f"{c:03d}{k}aa.jpg" for k in range(4)]
        write_images(root / "train_val2019" / kingdom / str(c), names, c)
        files = [f"train_val2019/{kingdom}/{c}/{n}" for n in names]
        images += [{"id": c * 10 + k, "file_name": f} for k, f in enumerate(files[:3])]
        notes += [{"id": c * 10 + k, "image_id": c * 10 + k, "category_id": c} for k in range(3)]
        val += [{"id": c * 10 + 3, "file_name": files[3]}]  # in val2019.json only: not trained on
    write_json(root / "train2019.json", {"images": images, "annotations": notes, "categories": [], "licenses": []})
    write_json(root / "val2019.json", {"images": val, "annotations": [], "categories": []})
    write_images(root / "test2019", ["f00d.jpg", "beef.jpg"], 3)
    write_json(
        root / "test2019.json",
        {"images": [{"id": 90, "file_name": "test2019/f00d.jpg"}, {"id": 91, "file_name": "test2019/beef.jpg"}]},
    )
    pd.DataFrame({"id": [91, 90], "predicted": 0}).to_csv(root / "kaggle_sample_submission.csv", index=False)
    return root


def test_inaturalist_2019_trains_on_train2019_json_only(tmp_path):
    found = check_layout(inaturalist_2019(tmp_path / "inaturalist-2019-fgvc6"))
    assert found.classes == ("7", "400") and len(found.train_images) == 6 and "4003aa.jpg" not in found.target_of()
    assert (found.spec.labels_file, found.spec.train_folder, found.spec.test_folder) == (
        "train2019.json",
        "train_val2019",
        ("test2019",),
    )
    assert (found.spec.sample_file, found.metric) == ("kaggle_sample_submission.csv", MetricName.error_rate)
    assert found.sample_id_files == {"91": "beef.jpg", "90": "f00d.jpg"}


def test_herbarium_2022_is_read_from_its_metadata_with_the_samples_ids_mapped_to_files(tmp_path):
    found = check_layout(herbarium_2022(tmp_path / HERBARIUM_22))
    assert found.classes == ("3", "12", "15504") and len(found.train_images) == 9
    assert found.target_of()["15504__002.jpg"] == "15504" and found.target_of()["00003__001.jpg"] == "3"
    assert (found.kind, found.metric) == (TargetKind.single, MetricName.f1_macro)
    assert found.test_ids == [f"test-{k:06d}.jpg" for k in range(5)]
    assert found.sample_id_files is not None and found.sample_id_files["3"] == "test-000003.jpg"
    spec = found.spec
    assert (spec.labels_file, spec.label_columns, spec.train_folder) == (
        "train_metadata.json",
        ("category_id",),
        "train_images",
    )
    assert (spec.test_metadata, spec.test_folder) == ("test_metadata.json", ("test_images",))
    assert found.description()["labels"] == "train_metadata.json: each image's category_id"
    assert found.description()["test images"] == "5 in test_images/, ids from test_metadata.json"
    assert found.description()["submission"] == "label, the ids of test_metadata.json"  # Id 0: test-000000.jpg
    again = check_layout(found.root, spec)  # what later commands do with the recorded description
    assert again.target_of() == found.target_of() and again.spec == spec and again.test_ids == found.test_ids


def test_label_columns_names_another_annotation_key(tmp_path):
    found = check_layout(herbarium_2022(tmp_path / "h"), CompetitionSpec(label_columns=("genus_id",)))
    assert found.classes == ("0", "1") and found.target_of()["15504__001.jpg"] == "0"  # 15504 % 2
    assert found.target_of()["00003__001.jpg"] == "1"


def test_train_and_submit_herbarium_2022_each_id_gets_its_files_class(tmp_path):
    run, printed, csv = train_and_submit(herbarium_2022(tmp_path / HERBARIUM_22), tmp_path / "runs", *FLAGS)
    assert "train_metadata.json" in printed and "f1_macro" in printed
    assert json.loads((run / "config.json").read_text())["competition"]["test_metadata"] == "test_metadata.json"
    submission, preds = pd.read_csv(csv, dtype=str), load_predictions(run / "predictions.safetensors")
    assert list(submission.columns) == ["Id", "Predicted"] and list(submission.Id) == [str(k) for k in range(5)]
    rows = [preds.image_ids.index(f"test-{k:06d}.jpg") for k in range(5)]
    assert list(submission.Predicted) == [preds.vocab[j] for j in preds.probs[rows].argmax(axis=1)]
    assert set(submission.Predicted) <= {"3", "12", "15504"}, "category ids, as the competition asks"


def test_herbarium_2021_metadata_in_the_image_folders(tmp_path):
    found = check_layout(herbarium_2021(tmp_path / HERBARIUM_21))
    assert found.classes == ("1", "2") and found.target_of()["2001.jpg"] == "2"
    assert (found.spec.labels_file, found.spec.train_folder) == ("train/metadata.json", "train")
    assert (found.spec.test_metadata, found.metric) == ("test/metadata.json", MetricName.f1_macro)
    assert found.test_ids == ["8005.jpg", "8006.jpg"] and found.sample_id_files == {
        "8005": "8005.jpg",
        "8006": "8006.jpg",
    }


def test_herbarium_2020_metadata_in_image_folders_one_folder_down(tmp_path):
    found = check_layout(herbarium_2021(tmp_path / "herbarium-2020-fgvc7", top="nybg2020"))
    assert (found.spec.labels_file, found.spec.train_folder) == ("nybg2020/train/metadata.json", "nybg2020/train")
    assert (found.spec.test_metadata, found.spec.test_folder) == ("nybg2020/test/metadata.json", ("nybg2020/test",))
    assert found.classes == ("1", "2") and found.test_ids == ["8005.jpg", "8006.jpg"]
    assert found.metric is MetricName.f1_macro


def test_iwildcam_folds_can_keep_a_camera_location_together(tmp_path):
    root = iwildcam(tmp_path / IWILDCAM)
    found = check_layout(root, CompetitionSpec(group_column="location"))
    assert found.classes == ("0", "1", "2") and found.target_of()["a004.jpg"] == "1"
    assert found.groups is not None and found.groups["a005.jpg"] == "1" and found.groups["a007.jpg"] == "3"
    assert (found.metric, found.spec.labels_file) == (MetricName.accuracy, "iwildcam2020_train_annotations.json")
    assert found.spec.test_metadata == "iwildcam2020_test_information.json" and found.test_ids == ["t1.jpg", "t2.jpg"]
    assert check_layout(root).groups is None


def test_a_labels_csv_wins_over_metadata_found_beside_it(tmp_path):
    root = herbarium_2022(tmp_path / "h")
    names = [p.name for p in sorted((root / "train_images").rglob("*.jpg"))]
    pd.DataFrame({"image": names, "Predicted": ["a", "b", "c"] * 3}).to_csv(root / "train.csv", index=False)
    found = check_layout(root)
    assert found.spec.labels_file == "train.csv" and found.classes == ("a", "b", "c")


def test_a_presized_copy_keeps_metadata_inside_image_folders(tmp_path):
    source = check_layout(herbarium_2021(tmp_path / HERBARIUM_21))
    presize_dataset(source.root, tmp_path / "small", longest=8, workers=0)
    copy = check_layout(tmp_path / "small")
    assert copy.target_of() == source.target_of() and copy.spec == source.spec and copy.test_ids == source.test_ids


def edit_json(path: Path, change) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


@pytest.mark.parametrize(
    "change, spec, message",
    [
        (
            lambda r: edit_json(r / "train_metadata.json", lambda m: m["annotations"][0].update(category_id=12)),
            {},
            None,
        ),
        (
            lambda r: edit_json(
                r / "train_metadata.json", lambda m: m["annotations"].append(m["annotations"][0] | {"category_id": 3})
            ),
            {},
            "image 15504__001 is annotated with 2 category_ids",
        ),
        (
            lambda r: edit_json(r / "train_metadata.json", lambda m: m["annotations"].pop()),
            {},
            "1 of 9 images have no annotation",
        ),
        (
            lambda r: (r / "train_metadata.json").write_text('{"images": 3}'),
            {"labels_file": "train_metadata.json"},
            "is no COCO-style metadata",
        ),
        (
            lambda r: (r / "train_labels.json").write_text((r / "train_metadata.json").read_text()),
            {},
            "2 metadata files",
        ),
        (
            lambda r: edit_json(r / "test_metadata.json", lambda m: m[4].update(image_id="x")),
            {},
            "1 of 5 ids are not in test_metadata.json",
        ),
        (
            lambda r: edit_json(r / "train_metadata.json", lambda m: m["images"].append(m["images"][4])),
            {},
            "train_metadata.json lists image 00003__002 more than once",
        ),
        (lambda r: edit_json(r / "train_metadata.json", lambda m: m.update(annotations={})), {}, "is no COCO-style"),
        (lambda r: edit_json(r / "train_metadata.json", lambda m: m["images"][0].pop("file_name")), {}, "no COCO"),
        (lambda r: edit_json(r / "test_metadata.json", lambda m: m[0].pop("file_name")), {}, "test_metadata.json is"),
        (lambda r: edit_json(r / "train_metadata.json", lambda m: m["annotations"].append(5)), {}, "annotation has no"),
        (
            lambda r: edit_json(r / "train_metadata.json", lambda m: m["annotations"][0].update(category_id=None)),
            {},
            "an annotation has no image_id or category_id",
        ),
        (
            lambda r: edit_json(r / "train_metadata.json", lambda m: m.update(images=[], annotations=[])),
            {},
            "train_metadata.json has 0 images and 0 distinct labels: too few to train on",
        ),
        (lambda r: None, {"id_column": "image_id"}, "id_column names a column of a labels file, but .* are the an"),
        (lambda r: None, {"kind": TargetKind.multi}, "hold single-label classes, not a multi target"),
        (lambda r: None, {"group_column": "location"}, "has no 'location'"),
        (lambda r: None, {"label_columns": ("a", "b")}, "one annotation key"),
    ],
)
def test_metadata_that_cannot_be_right_is_one_line(tmp_path, change, spec, message):
    root = herbarium_2022(tmp_path / HERBARIUM_22)
    change(root)
    if message is None:  # a control: relabelling one image is fine
        assert check_layout(root, CompetitionSpec(**spec)).target_of()["15504__001.jpg"] == "12"
        return
    with pytest.raises(PaddyError, match=message):
        check_layout(root, CompetitionSpec(**spec))


def test_the_test_metadata_flag_names_the_file(tmp_path):
    root = herbarium_2022(tmp_path / HERBARIUM_22)
    (root / "test_metadata.json").rename(root / "ids.json")
    with pytest.raises(PaddyError, match="does not match test_images/"):
        check_layout(root)  # ids 0..4 name no file
    found = check_layout(root, CompetitionSpec(test_metadata="ids.json"))
    assert found.sample_id_files is not None and found.sample_id_files["0"] == "test-000000.jpg"
    out = ["--out", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, ["train", "--data", str(root), "--test-metadata", "ids.json", *FLAGS, *out])
    assert result.exit_code == 0 and "ids from ids.json" in result.stdout, result.output


def test_test_metadata_found_about_other_images_is_not_read(tmp_path):
    """A JSON named with "test" that lists none of the sample's ids (other ids, another set) is about something
    else: the ids name the files, as before. Given by name, it is refused."""
    root = herbarium_2021(tmp_path / HERBARIUM_21)
    write_json(root / "test" / "metadata.json", {"images": [{"id": 1, "file_name": "images/008/8005.jpg"}]})
    found = check_layout(root)
    assert found.test_ids == ["8005.jpg", "8006.jpg"] and found.sample_id_files is None
    assert found.spec.test_metadata is None and check_layout(root, found.spec).test_ids == found.test_ids
    with pytest.raises(PaddyError, match="2 of 2 ids are not in test/metadata.json"):
        check_layout(root, CompetitionSpec(test_metadata="test/metadata.json"))


def test_reading_metadata_reports_its_progress_in_mib_and_no_json_is_one_line(tmp_path):
    root = herbarium_2022(tmp_path / HERBARIUM_22)
    padded = json.loads((root / "train_metadata.json").read_text()) | {"padding": "x" * (20 * 2**20)}  # 20 MiB
    write_json(root / "train_metadata.json", padded)
    reports: list[tuple[str, int, int]] = []
    with reporting_to(lambda what, done, total: reports.append((what, done, total))):
        found = check_layout(root)
    assert len(found.train_images) == 9
    read = [r for r in reports if r[0] == "reading train_metadata.json (MiB)"]
    assert [done for _, done, _ in read] == [8, 16, 21] and {total for _, _, total in read} == {21}
    (root / "train_metadata.json").write_text('{"images": [')
    with pytest.raises(PaddyError, match="train_metadata.json is no JSON: Expecting value"):
        check_layout(root)


def test_a_json_named_with_train_that_means_no_metadata_is_passed_over(tmp_path):
    """cassava's label_num_to_disease_map.json is named otherwise; a train_ids.json (a list) or a train_info.json
    (neither images nor annotations) is about something else: the class folders are read, as before."""
    root = tmp_path / "seedlings"
    for label in ("a", "b"):
        write_images(root / "train" / label, [f"{label}{k}.png" for k in range(3)], 0)
    write_images(root / "test", ["t.png"], 1)
    pd.DataFrame({"file": ["t.png"], "species": "a"}).to_csv(root / "sample_submission.csv", index=False)
    write_json(root / "train_ids.json", ["a0.png", "b0.png"])
    write_json(root / "train_info.json", {"classes": 2})
    found = check_layout(root)
    assert found.classes == ("a", "b") and found.spec.labels_file is None
