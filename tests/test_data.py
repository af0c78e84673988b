import shutil

import pandas as pd
import pytest

from paddy.core.errors import PaddyError
from paddy.data.competition import check_layout, resolve_data
from paddy.data.demo import DEMO_CLASSES, ensure_demo_dataset
from paddy.data.images import without_bad_images
from paddy.settings.competition import CompetitionSpec


@pytest.fixture
def data_copy(tiny_data_root, tmp_path):
    """A private copy of the tiny dataset that a test may break."""
    return shutil.copytree(tiny_data_root, tmp_path / "data")


def test_check_layout_reads_classes_and_sorted_test_images(tiny_data):
    assert tiny_data.classes == DEMO_CLASSES
    assert len(tiny_data.train_images) == 60
    assert tiny_data.test_ids == sorted(tiny_data.test_ids)
    assert tiny_data.test_ids[0] == "200001.jpg"


def add_test_image(root, name: str, content: bytes | None = None) -> None:
    """A test image and its sample_submission row (the two must list the same images)."""
    (root / "test_images" / name).write_bytes(content or (root / "test_images" / "200001.jpg").read_bytes())
    with open(root / "sample_submission.csv", "a") as sample:
        sample.write(f"{name},\n")


def test_test_order_is_by_name_not_by_creation(data_copy):
    add_test_image(data_copy, "100000.jpg")
    assert check_layout(data_copy).test_ids[0] == "100000.jpg"


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda root: shutil.rmtree(root / "train_images"), "has no training image folder .looked for train_images/"),
        (lambda root: shutil.rmtree(root / "test_images"), "has no test image folder .looked for test_images/"),
        (lambda root: (root / "sample_submission.csv").unlink(), "has no sample_submission.csv"),
        (lambda root: [p.unlink() for p in (root / "test_images").iterdir()], "test_images has no images"),
        (
            lambda root: [p.unlink() for p in (root / "train_images" / "blast").iterdir()],
            "class folder .*blast has no images",
        ),
        (
            lambda root: [shutil.rmtree(p) for p in (root / "train_images").iterdir()],
            "train_images has no images .expected train_images/<label>/ class folders",
        ),
    ],
)
def test_layout_problems_name_what_is_missing(data_copy, breakage, message):
    breakage(data_copy)
    with pytest.raises(PaddyError, match=message):
        check_layout(data_copy)


def relabel(root, image_id: str, label: str) -> None:
    table = pd.read_csv(root / "train.csv", dtype=str)
    table.loc[table["image_id"] == image_id, "label"] = label
    table.to_csv(root / "train.csv", index=False)


def test_a_train_csv_that_contradicts_the_class_folders_is_refused_naming_an_example(data_copy):
    table = pd.read_csv(data_copy / "train.csv", dtype=str)
    image_id, folder = table.iloc[3]["image_id"], table.iloc[3]["label"]
    assert (data_copy / "train_images" / folder / image_id).is_file()
    check_layout(data_copy)  # the generated train.csv agrees with its folders
    other = next(c for c in DEMO_CLASSES if c != folder)
    relabel(data_copy, image_id, other)
    with pytest.raises(PaddyError) as info:
        check_layout(data_copy)
    message = str(info.value)
    assert f"disagrees with the class folders for 1 images: {image_id} is in train_images/{folder}/" in message
    assert f"labelled {other!r}" in message and "\n" not in message
    relabel(data_copy, image_id, folder)
    (data_copy / "train.csv").write_text("image_id,variety\n100000.jpg,x\n")  # no label column: nothing to compare
    check_layout(data_copy)


def test_missing_data_folder(tmp_path):
    with pytest.raises(PaddyError, match="data folder not found"):
        resolve_data(tmp_path / "nowhere")


def test_resolve_data_prefers_kaggle_input_when_present(tiny_data_root, tmp_path):
    kaggle_input = tmp_path / "input"
    shutil.copytree(tiny_data_root, kaggle_input / "my-comp")
    found = resolve_data(None, CompetitionSpec(slug="my-comp"), kaggle_input=kaggle_input)
    assert found.root == kaggle_input / "my-comp" and not found.is_demo


def test_resolve_data_falls_back_to_the_generated_demo(tmp_path):
    found = resolve_data(None, kaggle_input=tmp_path / "no-kaggle")
    assert found.is_demo and found.classes == DEMO_CLASSES
    train_csv = pd.read_csv(found.root / "train.csv")
    assert list(train_csv.columns) == ["image_id", "label", "variety", "age"]
    assert len(train_csv) == len(found.train_images)
    sample = pd.read_csv(found.root / "sample_submission.csv")
    assert list(sample.columns) == ["image_id", "label"] and list(sample.image_id) == found.test_ids


def test_demo_dataset_is_generated_once(tmp_path):
    root = ensure_demo_dataset(tmp_path / "demo")
    marker = root / "train_images" / "blast" / "extra.jpg"
    shutil.copy(next((root / "train_images" / "blast").iterdir()), marker)
    assert ensure_demo_dataset(tmp_path / "demo") == root and marker.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".demo-")]


def test_corrupt_training_image_fails_or_is_skipped(data_copy):
    bad = data_copy / "train_images" / "hispa" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    data = check_layout(data_copy)
    with pytest.raises(PaddyError, match="broken.jpg"):
        without_bad_images(data, "fail")
    kept = without_bad_images(data, "skip")
    assert bad not in kept.train_images and len(kept.train_images) == len(data.train_images) - 1


def test_corrupt_test_image_always_fails(data_copy):
    add_test_image(data_copy, "299999.jpg", b"\xff\xd8 truncated")
    with pytest.raises(PaddyError, match="test image cannot be read: .*299999.jpg"):
        without_bad_images(check_layout(data_copy), "skip")


def test_smallest_class(data_copy):
    sorted((data_copy / "train_images" / "tungro").iterdir())[0].unlink()
    assert check_layout(data_copy).smallest_class() == "tungro"
