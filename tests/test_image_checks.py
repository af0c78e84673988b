"""The image check once per dataset: results recorded in `<out>/.image-checks.json` by path, size,
mtime and ctime, reused by later commands, and a changed or new image decoded again; its progress reported
as it goes, and an interrupted check's results kept."""

from __future__ import annotations

import json
import os
import shutil
import threading
from contextlib import closing
from itertools import islice
from pathlib import Path

import pytest

import paddy.data.images
from paddy.core.errors import PaddyError
from paddy.core.progress import reporting_to
from paddy.data.competition import check_layout
from paddy.data.images import (
    CHECKING,
    file_stamp,
    image_checks_path,
    record_checks,
    recorded_checks,
    without_bad_images,
)
from paddy.ensembling.predict import images_to_predict

NOT_A_JPEG = b"this is not a jpeg"


@pytest.fixture
def data_copy(tiny_data_root, tmp_path) -> Path:
    return shutil.copytree(tiny_data_root, tmp_path / "data")


@pytest.fixture
def decoded(monkeypatch) -> list[Path]:
    """Every image actually decoded (by fastai's verify_image), in order."""
    seen: list[Path] = []
    real = paddy.data.images.decode_checks

    def counting(paths):
        seen.extend(paths)
        return real(paths)

    monkeypatch.setattr(paddy.data.images, "decode_checks", counting)
    return seen


def checked(root: Path, out: Path, policy: str = "fail"):
    """A fresh command's view of the data (nothing checked in this process yet), then its image check."""
    return without_bad_images(check_layout(root), policy, out)


def test_a_second_check_decodes_nothing_and_the_record_holds_every_image(data_copy, tmp_path, decoded):
    data = checked(data_copy, tmp_path / "runs")
    every = {*data.test_images, *data.train_images}
    assert set(decoded) == every and len(decoded) == len(every)
    record = recorded_checks(image_checks_path(tmp_path / "runs"))
    assert record == {os.path.abspath(p): [*file_stamp(p), True] for p in every}
    decoded.clear()
    assert checked(data_copy, tmp_path / "runs").train_images == data.train_images
    assert decoded == []
    checked(data_copy, tmp_path / "other-runs")  # negative control: another --out has no record yet
    assert set(decoded) == every


def test_a_modified_image_is_decoded_again_and_caught(data_copy, tmp_path, decoded):
    out = tmp_path / "runs"
    checked(data_copy, out)
    image = sorted((data_copy / "train_images" / "hispa").iterdir())[0]
    before = image.stat()
    image.write_bytes(NOT_A_JPEG.ljust(before.st_size, b"x"))  # same path and size, new bytes and mtime
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))  # even with the old mtime put back
    decoded.clear()
    with pytest.raises(PaddyError, match=f"image cannot be read: {image}"):
        checked(data_copy, out)
    assert decoded == [image]
    decoded.clear()
    with pytest.raises(PaddyError, match=f"image cannot be read: {image}"):  # the record now says corrupt
        checked(data_copy, out)
    assert decoded == []
    assert image not in checked(data_copy, out, "skip").train_images


def test_a_new_image_is_decoded_and_caught(data_copy, tmp_path, decoded):
    out = tmp_path / "runs"
    checked(data_copy, out)
    new = data_copy / "train_images" / "blast" / "new.jpg"
    new.write_bytes(NOT_A_JPEG)
    decoded.clear()
    kept = checked(data_copy, out, "skip")
    assert decoded == [new] and new not in kept.train_images
    assert len(kept.train_images) == len(check_layout(data_copy).train_images) - 1


def test_predict_reuses_the_record_and_catches_a_new_test_image(data_copy, tmp_path, decoded):
    out = tmp_path / "runs"
    checked(data_copy, out)
    decoded.clear()
    images = images_to_predict([data_copy / "test_images"], out)
    assert decoded == [] and len(images) == len(check_layout(data_copy).test_images)
    (data_copy / "test_images" / "299999.jpg").write_bytes(NOT_A_JPEG)
    with pytest.raises(PaddyError, match="299999.jpg"):
        images_to_predict([data_copy / "test_images"], out)
    assert decoded == [data_copy / "test_images" / "299999.jpg"]


def test_a_damaged_record_is_checked_again_and_rewritten(data_copy, tmp_path, decoded):
    out = tmp_path / "runs"
    out.mkdir()
    image_checks_path(out).write_text('{"images": {"half')
    data = checked(data_copy, out)
    assert len(decoded) == len(data.train_images) + len(data.test_images)
    assert len(json.loads(image_checks_path(out).read_text())["images"]) == len(decoded)


def test_an_unwritable_output_folder_still_checks_and_writes_nothing(data_copy, tmp_path):
    (tmp_path / "file").write_text("")
    (data_copy / "train_images" / "blast" / "broken.jpg").write_bytes(NOT_A_JPEG)
    with pytest.raises(PaddyError, match="broken.jpg"):
        checked(data_copy, tmp_path / "file" / "runs")


def test_concurrent_writers_merge_under_the_lock(tmp_path):
    record = image_checks_path(tmp_path)
    start = threading.Barrier(8)

    def write(i: int) -> None:
        start.wait()
        for j in range(10):
            record_checks(record, {f"/img/{i}-{j}.jpg": [1, 2, 3, True]})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(recorded_checks(record)) == {f"/img/{i}-{j}.jpg" for i in range(8) for j in range(10)}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_image_gone_since_the_listing_is_unreadable_and_not_recorded(tmp_path):
    gone = tmp_path / "gone.jpg"
    record = image_checks_path(tmp_path / "runs")
    assert paddy.data.images.unreadable_images([gone], record) == [gone]
    assert recorded_checks(record) == {}


def test_a_command_refused_for_its_images_creates_no_output_folder(data_copy, tmp_path, decoded):
    broken = data_copy / "train_images" / "blast" / "broken.jpg"
    broken.write_bytes(NOT_A_JPEG)
    out = tmp_path / "runs"
    with pytest.raises(PaddyError, match="broken.jpg"):
        checked(data_copy, out)
    assert not out.exists()
    out.mkdir()
    with pytest.raises(PaddyError, match="broken.jpg"):
        checked(data_copy, out)  # an existing output folder keeps what was decoded
    decoded.clear()
    kept = checked(data_copy, out, "skip")
    assert decoded == [] and broken not in kept.train_images


def test_the_check_reports_its_progress_chunk_by_chunk_to_the_end(data_copy, tmp_path, monkeypatch):
    monkeypatch.setattr(paddy.data.images, "CHECK_CHUNK", 8)
    reports: list[tuple] = []
    with reporting_to(lambda *report: reports.append(report)):
        data = checked(data_copy, tmp_path / "runs")
        again = len(reports)
        checked(data_copy, tmp_path / "runs")
    n = len(data.test_images) + len(data.train_images)
    assert [done for _, done, _ in reports] == [*range(8, n, 8), n] and n > 16
    assert {(what, total) for what, _, total in reports} == {(CHECKING, n)}
    assert len(reports) == again, "a check with nothing left to decode reports nothing"


def test_an_interrupted_check_records_what_it_had_decoded(data_copy, tmp_path, monkeypatch):
    """Ctrl-C reaches the check while it waits for the pool: the images decoded by then are recorded, and the
    next command decodes only the others."""
    real, out = paddy.data.images.decode_checks, tmp_path / "runs"

    def interrupted_after_five(paths):
        with closing(real(paths)) as checks:
            yield from islice(checks, 5)
        raise KeyboardInterrupt

    monkeypatch.setattr(paddy.data.images, "decode_checks", interrupted_after_five)
    with pytest.raises(KeyboardInterrupt):
        checked(data_copy, out)
    data = check_layout(data_copy)
    every = [*data.test_images, *data.train_images]
    assert set(recorded_checks(image_checks_path(out))) == {os.path.abspath(p) for p in every[:5]}
    seen: list[Path] = []
    monkeypatch.setattr(paddy.data.images, "decode_checks", lambda paths: (seen.extend(paths), real(paths))[1])
    checked(data_copy, out)
    assert seen == every[5:]
