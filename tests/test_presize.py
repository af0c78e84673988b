"""`paddy presize`: a resized, resumable copy that `paddy train --data` accepts as it is."""

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from test_cli import assert_one_line_error, run_paddy

import paddy
from paddy.core.errors import PaddyError
from paddy.core.processes import die_with_parent
from paddy.data.competition import check_layout
from paddy.data.demo import write_demo_dataset
from paddy.data.demo_layouts import make_layout
from paddy.data.presize import presize_dataset
from paddy.settings.competition import CompetitionSpec
from paddy.settings.entry import BadImages

LINUX_ONLY = pytest.mark.skipif(sys.platform != "linux", reason="workers die with their parent on Linux only")


def relative_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_copy_keeps_layout_and_names_and_shrinks_keeping_the_aspect_ratio(tiny_data_root, tmp_path):
    dest = tmp_path / "small"
    seen = []
    report = presize_dataset(tiny_data_root, dest, longest=16, workers=2, on_progress=lambda *a: seen.append(a))
    original, copy = check_layout(tiny_data_root), check_layout(dest)
    assert copy.classes == original.classes and copy.test_ids == original.test_ids
    assert relative_files(dest) == relative_files(tiny_data_root)
    assert (report.resized, report.copied, report.skipped) == (68, 2, 0)  # 60 train + 8 test images; 2 CSVs
    for path in (*copy.train_images[:3], copy.test_images[0]):
        assert Image.open(path).size == (12, 16)  # 24 wide x 32 tall, longest side 16
    assert (dest / "train.csv").read_bytes() == (tiny_data_root / "train.csv").read_bytes()
    assert seen[-1] == (70, 70) and [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_small_images_are_copied_byte_for_byte_never_enlarged(tiny_data_root, tmp_path):
    report = presize_dataset(tiny_data_root, tmp_path / "same", longest=32, workers=0)
    assert report.resized == 0 and report.copied == 70
    image = check_layout(tiny_data_root).test_images[0]
    assert (tmp_path / "same" / "test_images" / image.name).read_bytes() == image.read_bytes()


def test_an_interrupted_presize_resumes_without_half_written_files(tiny_data_root, tmp_path, monkeypatch):
    dest, saves, real_save = tmp_path / "small", [], Image.Image.save

    def save_then_die_midway(image, fp, *args, **kwargs):
        saves.append(fp)
        if len(saves) == 30:
            fp.write(b"half a jpeg")
            raise KeyboardInterrupt
        return real_save(image, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_die_midway)
    with pytest.raises(KeyboardInterrupt):
        presize_dataset(tiny_data_root, dest, longest=16, workers=0)
    monkeypatch.undo()
    written = relative_files(dest)
    assert len([f for f in written if f.endswith(".jpg")]) == 29  # never the half-written 30th
    report = presize_dataset(tiny_data_root, dest, longest=16, workers=0)
    assert report.skipped == len(written) and report.resized == 68 - 29
    assert relative_files(dest) == relative_files(tiny_data_root)
    assert all(Image.open(p).size == (12, 16) for p in check_layout(dest).train_images)


def truncated(image: Path) -> Path:
    """`image` without its last fifth: PIL reads its size, but decoding it fails."""
    image.write_bytes(image.read_bytes()[: image.stat().st_size * 4 // 5])
    return image


@pytest.mark.parametrize("longest", [16, 256])  # 256: larger than the image, which used to be copied undecoded
def test_a_truncated_image_is_refused_naming_it_and_not_copied(tiny_data_root, tmp_path, longest):
    src = shutil.copytree(tiny_data_root, tmp_path / "src")
    broken = truncated(check_layout(src).train_images[0])
    with Image.open(broken) as img:
        assert max(img.size) < 256  # its header still reads
    dest = tmp_path / "small"
    result = run_paddy("presize", str(dest), "--data", str(src), "--longest", str(longest), "--workers", "0")
    assert_one_line_error(result, f"image cannot be read: {broken} (1 in all)", f"not copied to {dest}")
    assert not (dest / broken.relative_to(src)).exists()
    assert len(relative_files(dest)) == len(relative_files(src)) - 1  # the others are done: a re-run resumes


def test_skipped_unreadable_training_images_are_copied_unchanged_for_train_to_skip(tiny_data_root, tmp_path):
    src = shutil.copytree(tiny_data_root, tmp_path / "src")
    broken = check_layout(src).train_images[0]
    broken.write_bytes(b"not a jpeg")
    report = presize_dataset(src, tmp_path / "small", longest=16, workers=0, bad_images=BadImages.skip)
    assert report.unreadable == 1 and report.resized == 67
    assert (tmp_path / "small" / broken.relative_to(src)).read_bytes() == b"not a jpeg"


def test_an_unreadable_test_image_is_refused_even_when_skipping(tiny_data_root, tmp_path):
    src = shutil.copytree(tiny_data_root, tmp_path / "src")
    broken = truncated(check_layout(src).test_images[0])
    with pytest.raises(PaddyError, match=f"test image cannot be read: {broken}"):
        presize_dataset(src, tmp_path / "small", longest=256, workers=0, bad_images=BadImages.skip)


def test_a_folder_made_otherwise_is_refused(tiny_data_root, tmp_path):
    presize_dataset(tiny_data_root, tmp_path / "small", longest=16, workers=0)
    with pytest.raises(PaddyError, match="longest 16 and quality 90"):
        presize_dataset(tiny_data_root, tmp_path / "small", longest=8, workers=0)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(PaddyError, match="not empty"):
        presize_dataset(tiny_data_root, tmp_path / "mine", workers=0)


def test_an_unwritable_destination_is_one_clear_error_before_any_work(tiny_data_root, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(PaddyError, match="cannot write .*a-file/small"):
        presize_dataset(tiny_data_root, tmp_path / "a-file" / "small", workers=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"longest": 0}, "positive number of pixels"),
        ({"quality": 0}, "between 1 and 95"),
        ({"quality": 96}, "between 1 and 95"),
        ({"workers": -1}, "workers must be 0"),
        ({"dest": "inside"}, "inside the source"),
        ({"src": "missing"}, "data folder not found"),
    ],
)
def test_bad_input_is_one_clear_error(tiny_data_root, tmp_path, overrides, message):
    args = {"src": tiny_data_root, "dest": tmp_path / "small", **overrides}
    args["src"] = tmp_path / "missing" if args["src"] == "missing" else args["src"]
    args["dest"] = tiny_data_root / "small" if args["dest"] == "inside" else args["dest"]
    with pytest.raises(PaddyError, match=message):
        presize_dataset(**args)
    assert not (tiny_data_root / "small").exists()


def test_cli_presizes_and_reports_errors_in_one_line(tiny_data_root, tmp_path):
    dest = tmp_path / "small"
    result = run_paddy("presize", str(dest), "--data", str(tiny_data_root), "--longest", "16", "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "68" in result.stdout and f"paddy train --data {dest}" in result.stdout
    assert check_layout(dest).classes == check_layout(tiny_data_root).classes
    assert_one_line_error(run_paddy("presize", str(dest), "--data", str(tiny_data_root), "--quality", "100"), "quality")


def test_a_rerun_deletes_the_temp_files_a_killed_run_left_and_says_so(tiny_data_root, tmp_path):
    dest = tmp_path / "small"
    presize_dataset(tiny_data_root, dest, longest=16, workers=0)
    stale = dest / "train_images" / "blast" / ".x.jpg.abc123.tmp"
    stale.write_bytes(b"half a jpeg")
    report = presize_dataset(tiny_data_root, dest, longest=16, workers=0)
    assert not stale.exists() and report.stale_removed == 1 and report.skipped == 70
    stale.write_bytes(b"half a jpeg")
    args = ("presize", str(dest), "--data", str(tiny_data_root), "--longest", "16", "--workers", "0")
    result = run_paddy(*args)
    assert result.exit_code == 0 and "removed 1 half-written temp files" in result.stdout, result.output
    assert not stale.exists()
    assert "removed" not in run_paddy(*args).stdout


@pytest.fixture(scope="module")
def large_data_root(tmp_path_factory) -> Path:
    """Full-size (480x640) images, enough for a presize to run a few seconds: a few generated, copied many times."""
    root = write_demo_dataset(tmp_path_factory.mktemp("large") / "data", per_class=2, n_test=4, size=(480, 640))
    for image in check_layout(root).train_images:
        for i in range(20):
            shutil.copyfile(image, image.with_name(f"copy{i}-{image.name}"))
    return root


def start_presize(src: Path, dest: Path, workers: int) -> subprocess.Popen:
    """`python -m paddy presize` in its own process, once it has written some images."""
    env = {**os.environ, "PYTHONPATH": str(Path(paddy.__file__).parents[1])}
    args = [sys.executable, "-m", "paddy", "presize", str(dest), "--data", str(src), "--workers", str(workers)]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_while_running(process, lambda: len(list(dest.rglob("*.jpg"))) >= 50)
    return process


def wait_while_running(process: subprocess.Popen, condition) -> None:
    """Poll `condition` until it holds; presize ending first (or 30 s passing) fails the test."""
    deadline = time.monotonic() + 30
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("presize ended before it could be killed")


def kill_mid_write(src: Path, dest: Path) -> None:
    """SIGKILL a one-process presize while a temp file shows it writing; again until one is left behind."""
    for _ in range(5):  # a kill misses the write about one time in ten
        process = start_presize(src, dest, workers=0)
        wait_while_running(process, lambda: any(dest.rglob(".*.tmp")))
        process.send_signal(signal.SIGKILL)
        process.wait()
        if any(dest.rglob(".*.tmp")):
            return
    pytest.fail("no kill landed while a file was being written")


def children(pid: int) -> set[int]:
    """The processes `pid` started, as Linux lists them."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return {int(child) for task in tasks for child in (task / "children").read_text().split()}


def alive(pid: int) -> bool:
    """Running or sleeping: neither gone nor a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_a_presize_killed_midway_resumes_to_a_complete_copy(large_data_root, tmp_path):
    dest = tmp_path / "small"
    kill_mid_write(large_data_root, dest)
    report = presize_dataset(large_data_root, dest, workers=2)
    assert report.stale_removed >= 1 and report.skipped >= 50 and report.total == 426  # 420+4 images, 2 CSVs
    assert not list(dest.rglob("*.tmp"))
    assert relative_files(dest) == relative_files(large_data_root)
    copy = check_layout(dest)
    for path in (*copy.train_images, *copy.test_images):
        with Image.open(path) as image:
            image.load()


@LINUX_ONLY
def test_workers_exit_when_presize_is_killed(large_data_root, tmp_path):
    process = start_presize(large_data_root, tmp_path / "small", workers=2)
    workers = children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    try:
        assert len(workers) == 2
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if alive(pid)], "workers outlived their killed parent"
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@LINUX_ONLY
def test_a_worker_whose_parent_died_before_it_asked_to_die_with_it_exits_at_once():
    worker = multiprocessing.get_context("fork").Process(target=die_with_parent, args=(0,))  # 0: not its parent
    worker.start()
    worker.join(5)
    assert worker.exitcode == -signal.SIGTERM


def test_a_copy_of_a_competition_paddy_knows_is_still_that_competition(tmp_path):
    """Kaggle names a download after its competition, which gives its metric and slug; a copy is named as its
    user likes ('small'), so the copy records the competition: F2 and Planet's slug, not F1 and paddy's."""
    source = make_layout("planet", tmp_path / "planet-understanding-the-amazon-from-space", n_train=30, size=24)
    presize_dataset(source, tmp_path / "small", longest=16, workers=0)
    copy = check_layout(tmp_path / "small")
    assert copy.spec.slug == "planet-understanding-the-amazon-from-space" and copy.metric == "f2_samples"
    assert copy.spec.sample_file == "sample_submission_v2.csv"
    presize_dataset(source, tmp_path / "small", longest=16, workers=0)  # a re-run: the same presize, resumed
    with pytest.raises(PaddyError, match="holds a presize with longest 16"):
        presize_dataset(source, tmp_path / "small", longest=20, workers=0)


def test_a_copy_holds_only_what_is_read_and_is_read_as_its_source(tmp_path):
    """Real downloads hold what paddy never reads: siim-isic's DICOM train/ and TFRecords beside jpeg/train/,
    Planet's .tif copies beside train-jpg/. A presize copied them all (100 GB of DICOM to shrink 33k JPEGs);
    it copies the images read, and the copy is read as its source was, without the description again."""
    source = make_layout("planet", tmp_path / "planet-understanding-the-amazon-from-space", n_train=30, size=24)
    shutil.copytree(source / "train-jpg", source / "train-tif-v2")
    (source / "tfrecords").mkdir()
    (source / "tfrecords" / "train00.tfrec").write_bytes(b"\0" * 100)
    (source / "planet.zip").write_bytes(b"PK")
    with pytest.raises(PaddyError, match="could be its training image folder"):
        presize_dataset(source, tmp_path / "refused", longest=16, workers=0)
    spec = CompetitionSpec(train_folder="train-jpg")
    report = presize_dataset(source, tmp_path / "small", longest=16, workers=0, spec=spec)
    copied = sorted(str(p.relative_to(tmp_path / "small")) for p in (tmp_path / "small").rglob("*") if p.is_file())
    assert not [name for name in copied if name.startswith(("train-tif", "tfrecords", "planet.zip"))], copied
    assert report.resized + report.copied == 30 + 12 + 3, "the images read, train_v2.csv, the sample, PADDY_DEMO.txt"
    original, copy = check_layout(source, spec), check_layout(tmp_path / "small")
    assert copy.spec == original.spec and copy.test_ids == original.test_ids
    assert copy.target_of() == original.target_of()


def test_a_copy_an_older_release_made_is_still_its_competition(tmp_path):
    """Before the copy recorded how its source was read, it recorded the competition alone."""
    source = make_layout("aptos", tmp_path / "aptos2019-blindness-detection", n_train=20, size=24)
    presize_dataset(source, tmp_path / "small", longest=16, workers=0)
    marker = tmp_path / "small" / ".paddy-presize.json"
    marker.write_text('{"longest": 16, "quality": 90, "competition": "aptos2019-blindness-detection"}')
    copy = check_layout(tmp_path / "small")
    assert copy.spec.slug == "aptos2019-blindness-detection" and copy.metric == "qwk"


def test_the_cli_presizes_what_a_config_describes(tmp_path):
    source = make_layout("planet", tmp_path / "planet-understanding-the-amazon-from-space", n_train=30, size=24)
    shutil.copytree(source / "train-jpg", source / "train-tif-v2")
    config = tmp_path / "planet.toml"
    config.write_text(f'data = "{source}"\n[competition]\ntrain_folder = "train-jpg"\n[[models]]\narch = "resnet18"\n')
    dest = tmp_path / "small"
    result = run_paddy("presize", str(dest), "--config", str(config), "--longest", "16", "--workers", "0")
    assert result.exit_code == 0, result.output
    assert not (dest / "train-tif-v2").exists() and check_layout(dest).spec.train_folder == "train-jpg"
