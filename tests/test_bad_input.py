"""Bad input and machine faults across every command: one `error:` line naming the file, entry or
field, exit 1, no traceback, and nothing half-written or marked finished left behind.

Each case prepares a fresh copy of the tiny dataset and an output folder holding one finished
run, then runs one `paddy` command in this process. Disk-full cases inject ENOSPC where paddy
creates a file rather than mounting a full filesystem."""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

import paddy.core.files
from paddy.cli.app import app

TINY = ["--arch", "resnet18", "--size", "32", "--bs", "8", "--epochs", "1", "--no-pretrained", "--seed", "0"]


@dataclass(frozen=True)
class Paths:
    """Where a case's files are: the data copy, the output folder, its finished run, scratch space."""

    data: Path
    out: Path
    run: Path
    tmp: Path


@pytest.fixture
def paths(tiny_data_root, finished_run, tmp_path) -> Paths:
    data = shutil.copytree(tiny_data_root, tmp_path / "data")
    out = tmp_path / "runs"
    run = shutil.copytree(finished_run.run.path, out / finished_run.run.name)
    return Paths(data, out, run, tmp_path)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def config(p: Paths, body: str, name: str = "c.toml") -> str:
    return str(write(p.tmp / name, f'data = "{p.data}"\n{body}'))


TWO_ENTRIES = '[defaults]\nbs = 8\nsize = 32\nepochs = 1\npretrained = false\n[[models]]\narch = "resnet18"\n'


def fake_predictions(p: Paths, probs, header: dict | None = None, name: str = "p.safetensors") -> str:
    """A predictions file written by hand (what a damaged or foreign file looks like)."""
    ids = [f"{200001 + i}.jpg" for i in range(len(probs))]
    classes = [f"c{j}" for j in range(len(probs[0]))]
    default = {"format": "paddy-predictions-1", "image_ids": ids, "vocab": classes, "meta": {"data": str(p.data)}}
    path = p.tmp / name
    save_file({"probs": np.array(probs, dtype=np.float32)}, path, metadata={"paddy": json.dumps(header or default)})
    return str(path)


def fault_at(fragment: str, code: int) -> Callable[[pytest.MonkeyPatch], None]:
    """OSError `code` when paddy creates a file whose name contains `fragment` (as a full or
    read-only disk would; as root, permission bits alone do not make a folder read-only)."""

    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        real = paddy.core.files.tempfile.mkstemp

        def mkstemp(*args, **kwargs):
            if fragment in kwargs.get("prefix", ""):
                raise OSError(code, os.strerror(code))
            return real(*args, **kwargs)

        monkeypatch.setattr(paddy.core.files.tempfile, "mkstemp", mkstemp)

    return inject


def disk_full_at(fragment: str) -> Callable[[pytest.MonkeyPatch], None]:
    return fault_at(fragment, errno.ENOSPC)


def read_only_at(fragment: str) -> Callable[[pytest.MonkeyPatch], None]:
    return fault_at(fragment, errno.EROFS)


def torch_save_on_a_full_disk(obj, f, *args, **kwargs) -> None:
    """What torch.save raises when the disk fills while it writes (not an OSError)."""
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def first_predictions_of(p: Paths) -> str:
    return str(p.run / "predictions.safetensors")


@dataclass(frozen=True)
class Case:
    """A command line, what to break first, and a fragment the error line must hold."""

    name: str
    args: Callable[[Paths], list[str]]
    fragment: str | Callable[[Paths], str]
    prepare: Callable[[Paths], object] = lambda p: None
    inject: Callable[[pytest.MonkeyPatch], None] = lambda monkeypatch: None


def train(*extra: str) -> Callable[[Paths], list[str]]:
    return lambda p: ["train", "--data", str(p.data), "--out", str(p.out), *TINY, *extra]


CASES = [
    # train: flags
    Case("train-unknown-arch", train("--arch", "resnet_18"), "unknown arch 'resnet_18'; did you mean"),
    Case("train-size-0", train("--size", "0"), "size"),
    Case("train-accum-not-dividing", train("--accum", "3"), "accum: 3 does not divide bs 8"),
    Case("train-zero-steps", train("--bs", "64"), "bs 64 is larger than the 48 training images"),
    Case("train-nan-lr", train("--lr", "nan"), "lr: nan is not a finite number"),
    Case("train-inf-mixup", train("--mixup", "inf"), "mixup: inf is not a finite number"),
    Case("train-valid-pct", train("--valid-pct", "1.5"), "valid_pct: 1.5 must be between 0 and 1"),
    Case("train-no-weights-file", train("--pretrained-file", "/no/such.pth"), "pretrained_file: no file at"),
    Case(
        "train-truncated-weights",
        lambda p: train("--pretrained-file", str(write(p.tmp / "w.safetensors", b"\x10\x00")))(p),
        "cannot read pretrained_file",
    ),
    Case(
        "train-empty-weights-pth",
        lambda p: train("--pretrained-file", str(write(p.tmp / "w.pth", b"")))(p),
        "cannot read pretrained_file",
    ),
    Case("train-auto-accum-unprobed", train("--accum", "auto"), lambda p: f"paddy probe-memory --data {p.data}"),
    # train: configs
    Case("config-missing", lambda p: ["train", "--config", str(p.tmp / "none.toml")], "config file not found"),
    Case(
        "config-not-utf8",
        lambda p: ["train", "--config", str(write(p.tmp / "c.toml", b"\xff\xfe[[models]]"))],
        "not UTF-8",
    ),
    Case("config-empty", lambda p: ["train", "--config", str(write(p.tmp / "c.toml", ""))], "at least one [[models]]"),
    Case(
        "config-misspelled-section",
        lambda p: ["train", "--config", config(p, '[[model]]\narch = "resnet18"\n')],
        "unknown key or section 'model'; did you mean models",
    ),
    Case(
        "config-string-for-int",
        lambda p: ["train", "--config", config(p, TWO_ENTRIES + 'bs = "8"\n')],
        "models[0] (resnet18) bs: '8' is not a whole number",
    ),
    Case(
        "config-string-for-bool",
        lambda p: ["train", "--config", config(p, TWO_ENTRIES + 'pretrained = "no"\n')],
        "models[0] (resnet18) pretrained: 'no' is not true or false",
    ),
    Case(
        "config-table-for-list",
        lambda p: ["train", "--config", config(p, '[models]\narch = "resnet18"\n')],
        "models must be [[models]] tables",
    ),
    Case(
        "config-broken-toml",
        lambda p: ["train", "--config", str(write(p.tmp / "c.toml", "[[models]\narch="))],
        "cannot read config",
    ),
    # train: data
    Case(
        "sample-missing-an-id",
        train(),
        "does not match test_images/: 1 test images it does not list (e.g. 200008.jpg)",
        prepare=lambda p: write(
            p.data / "sample_submission.csv", "image_id,label\n" + "".join(f"{200001 + i}.jpg,\n" for i in range(7))
        ),
    ),
    Case(
        "sample-extra-id",
        train(),
        "does not match test_images/: 1 of 9 ids match no image (e.g. '999.jpg')",
        prepare=lambda p: (p.data / "sample_submission.csv").open("a").write("999.jpg,\n"),
    ),
    Case(
        "sample-empty",
        train(),
        "sample_submission.csv (EmptyDataError",
        prepare=lambda p: write(p.data / "sample_submission.csv", ""),
    ),
    Case(
        "sample-not-utf8",
        train(),
        "cannot read",
        prepare=lambda p: write(p.data / "sample_submission.csv", b"image_id,label\n\xff\xfe.jpg,\n"),
    ),
    Case(
        "sample-three-columns",
        train(),
        "sample_submission.csv does not match test_images/: 1 of 1 ids match no image (e.g. '1')",
        prepare=lambda p: write(p.data / "sample_submission.csv", "a,b,c\n1,2,3\n"),
    ),
    Case(
        "train-csv-not-utf8",
        train("--multi-target", "variety"),
        "train.csv",
        prepare=lambda p: write(p.data / "train.csv", b"image_id,label,variety\n\xff,\xfe,x\n"),
    ),
    Case(
        "corrupt-train-image",
        train(),
        "bad.jpg",
        prepare=lambda p: write(p.data / "train_images" / "blast" / "bad.jpg", b"junk"),
    ),
    # train: the machine
    Case(
        "train-out-is-a-file",
        lambda p: ["train", "--data", str(p.data), "--out", str(write(p.tmp / "f", "")), *TINY],
        "output folder",
    ),
    Case("train-disk-full-at-start", train(), "No space left on device", inject=disk_full_at("config.json")),
    Case(
        "train-disk-full-at-predictions",
        train("--one-cycle"),
        "predictions.safetensors: No space left on device",
        inject=disk_full_at("predictions.safetensors"),
    ),
    Case(
        "train-disk-full-at-checkpoint",
        train(),
        "cannot write checkpoint",
        inject=lambda monkeypatch: monkeypatch.setattr("torch.save", torch_save_on_a_full_disk),
    ),
    # lr-find
    Case(
        "lr-find-auto-accum-unprobed",
        lambda p: ["lr-find", "--data", str(p.data), "--out", str(p.out), *TINY, "--accum", "auto"],
        lambda p: f"--out {p.out}",
    ),
    Case(
        "lr-find-out-is-a-file",
        lambda p: ["lr-find", "--data", str(p.data), "--out", str(write(p.tmp / "f", "")), *TINY],
        "output folder",
    ),
    Case(
        "lr-find-disk-full",
        lambda p: ["lr-find", "--data", str(p.data), "--out", str(p.out), *TINY],
        "No space left on device",
        inject=disk_full_at("config.json"),
    ),
    Case(
        "lr-find-read-only",
        lambda p: ["lr-find", "--data", str(p.data), "--out", str(p.out), *TINY],
        "Read-only file system",
        inject=read_only_at("config.json"),
    ),
    # run
    Case(
        "run-second-entry-auto-accum",
        lambda p: [
            "run",
            config(p, TWO_ENTRIES + '[[models]]\narch = "resnet18"\naccum = "auto"\n'),
            "--out",
            str(p.out),
        ],
        lambda p: (
            f"entry 1: --accum auto: no memory probe recorded for resnet18 32x32 squish item_size 64x64 bs 8 "
            f"precision auto within 16280 MiB; run `paddy probe-memory --config {p.tmp / 'c.toml'} --data {p.data} "
            f"--out {p.out} --budget 16280MiB`"
        ),
    ),
    Case(
        "run-second-entry-zero-steps",
        lambda p: ["run", config(p, TWO_ENTRIES + '[[models]]\narch = "resnet18"\nbs = 64\n'), "--out", str(p.out)],
        "bs 64 is larger than the 48 training images",
    ),
    Case(
        "run-second-entry-missing-column",
        lambda p: [
            "run",
            config(p, TWO_ENTRIES + '[[models]]\narch = "resnet18"\nmulti_target = "colour"\n'),
            "--out",
            str(p.out),
        ],
        "train.csv has no extra column 'colour'",
    ),
    Case(
        "run-disk-full",
        lambda p: ["run", config(p, TWO_ENTRIES), "--out", str(p.out)],
        "No space left on device",
        inject=disk_full_at("config.json"),
    ),
    # probe-memory
    Case(
        "probe-out-is-a-file",
        lambda p: ["probe-memory", "--data", str(p.data), "--out", str(write(p.tmp / "f", "")), *TINY],
        "cannot write",
    ),
    Case("probe-headroom", lambda p: ["probe-memory", "--data", str(p.data), *TINY, "--headroom", "0.95"], "headroom"),
    Case("probe-budget", lambda p: ["probe-memory", "--data", str(p.data), *TINY, "--budget", "lots"], "budget 'lots'"),
    Case(
        "probe-disk-full",
        lambda p: ["probe-memory", "--data", str(p.data), "--out", str(p.out), *TINY],
        "memory-probes.json: No space left on device",
        inject=disk_full_at("memory-probes.json"),
    ),
    # presize
    Case(
        "presize-disk-full",
        lambda p: ["presize", str(p.tmp / "d"), "--data", str(p.data), "--workers", "0"],
        "No space left on device",
        inject=disk_full_at(".jpg"),
    ),
    Case(
        "presize-read-only",
        lambda p: ["presize", str(p.tmp / "d"), "--data", str(p.data), "--workers", "0"],
        "Read-only file system",
        inject=read_only_at("presize"),
    ),
    Case("presize-into-source", lambda p: ["presize", str(p.data / "x"), "--data", str(p.data)], "inside the source"),
    Case(
        "presize-dest-is-file", lambda p: ["presize", str(write(p.tmp / "f", "")), "--data", str(p.data)], "is a file"
    ),
    Case(
        "presize-quality", lambda p: ["presize", str(p.tmp / "d"), "--data", str(p.data), "--quality", "0"], "quality"
    ),
    Case("presize-no-data", lambda p: ["presize", str(p.tmp / "d"), "--data", str(p.tmp / "none")], "not found"),
    # ensemble
    Case("ensemble-no-runs", lambda p: ["ensemble", "--out", str(p.tmp / "empty")], "no finished runs"),
    Case("ensemble-nan-weight", lambda p: ["ensemble", "--out", str(p.out), "--weight", "resnet18=nan"], "finite"),
    Case(
        "ensemble-truncated-predictions",
        lambda p: ["ensemble", "--out", str(p.out)],
        "predictions.safetensors is not a readable predictions file",
        prepare=lambda p: write(p.run / "predictions.safetensors", b"\x08\x00\x00"),
    ),
    Case(
        "ensemble-malformed-header",
        lambda p: ["ensemble", "--out", str(p.out)],
        "malformed header",
        prepare=lambda p: shutil.copy(
            fake_predictions(p, [[1.0]], {"format": "paddy-predictions-1", "image_ids": "x", "vocab": [], "meta": {}}),
            p.run / "predictions.safetensors",
        ),
    ),
    Case(
        "ensemble-nan-probabilities",
        lambda p: ["ensemble", "--out", str(p.out)],
        "predictions contain NaN",
        prepare=lambda p: shutil.copy(fake_predictions(p, [[np.nan, 1.0]]), p.run / "predictions.safetensors"),
    ),
    Case(
        "ensemble-dest-unwritable",
        lambda p: ["ensemble", "--out", str(p.out), "--dest", str(write(p.tmp / "f", "") / "e.safetensors")],
        "cannot write",
    ),
    Case(
        "ensemble-disk-full",
        lambda p: ["ensemble", "--out", str(p.out)],
        "No space left on device",
        inject=disk_full_at("ensemble.safetensors"),
    ),
    Case(
        "ensemble-config-entry-without-run",
        lambda p: ["ensemble", "--out", str(p.out), "--config", config(p, '[[models]]\narch = "resnet34"\n')],
        "no finished run",
    ),
    # submit
    Case(
        "submit-other-dataset",
        lambda p: ["submit", "--dry-run", "--predictions", first_predictions_of(p), "--data", str(write_other(p))],
        "lists other test images",
    ),
    Case("submit-no-predictions", lambda p: ["submit", "--dry-run", "--out", str(p.tmp)], "no predictions file"),
    Case(
        "submit-no-recorded-data",
        lambda p: [
            "submit",
            "--dry-run",
            "--predictions",
            fake_predictions(
                p, [[1.0]], {"format": "paddy-predictions-1", "image_ids": ["200001.jpg"], "vocab": ["c"], "meta": {}}
            ),
        ],
        "does not record its data",
    ),
    Case(
        "submit-folder-is-a-file",
        lambda p: [
            "submit",
            "--dry-run",
            "--predictions",
            first_predictions_of(p),
            "--data",
            str(p.data),
            "--submissions",
            str(write(p.tmp / "f", "")),
        ],
        "cannot write",
    ),
    Case(
        "submit-disk-full",
        lambda p: ["submit", "--dry-run", "--predictions", first_predictions_of(p), "--submissions", str(p.tmp / "s")],
        "No space left on device",
        inject=disk_full_at("submission-"),
    ),
    Case(
        "ensemble-read-only",
        lambda p: ["ensemble", "--out", str(p.out)],
        "Read-only file system",
        inject=read_only_at("ensemble.safetensors"),
    ),
    # show
    Case(
        "show-damaged-config",
        lambda p: ["show", p.run.name, "--out", str(p.out)],
        "config.json is damaged",
        prepare=lambda p: write(p.run / "config.json", "{half"),
    ),
    Case(
        "show-damaged-history",
        lambda p: ["show", p.run.name, "--out", str(p.out)],
        "history.csv",
        prepare=lambda p: write(p.run / "history.csv", b"\xff\xfe\x00junk\n\x00"),
    ),
    Case("show-unknown-run", lambda p: ["show", "nope", "--out", str(p.out)], "no run folder 'nope'"),
    # train: the competition flags and the data
    Case("train-metric-for-another-kind", train("--metric", "rmse"), "rmse"),
    Case("train-no-such-labels-file", train("--labels-file", "labels.csv"), "has no labels file labels.csv"),
    Case(
        "train-label-column-of-class-folders",
        train("--label-column", "colour"),
        "label_columns names a column of a labels file, but the labels here are the class folders",
    ),
    Case(
        "train-no-such-label-column",
        train("--labels-file", "train.csv", "--label-column", "colour"),
        "train.csv has no column 'colour'",
    ),
    Case(
        "train-csv-contradicts-folders",
        train(),
        "disagrees with the class folders for 1 images: 100000.jpg is in train_images/bacterial_leaf_blight/ but "
        "labelled 'tungro'",
        prepare=lambda p: write(
            p.data / "train.csv",
            (p.data / "train.csv").read_text().replace("100000.jpg,bacterial_leaf_blight,", "100000.jpg,tungro,", 1),
        ),
    ),
    Case(
        "config-nested-too-deeply",
        lambda p: ["train", "--config", config(p, TWO_ENTRIES + "size = " + "[" * 3000 + "]" * 3000 + "\n")],
        "values nested too deeply",
    ),
    # runs
    Case("runs-no-out", lambda p: ["runs", "--out", str(p.tmp / "none")], "no output folder"),
    Case("runs-unknown-sort", lambda p: ["runs", "--out", str(p.out), "--sort", "colour"], "colour"),
    Case(
        "runs-damaged-config",
        lambda p: ["runs", "--out", str(p.out)],
        "config.json is damaged",
        prepare=lambda p: write(p.run / "config.json", "{half"),
    ),
    # demo
    Case(
        "demo-dest-is-a-file",
        lambda p: ["demo", "cassava", "--dest", str(write(p.tmp / "f", ""))],
        lambda p: f"File exists: {p.tmp / 'f'}",
    ),
    # presize
    Case(
        "presize-truncated-image",
        lambda p: ["presize", str(p.tmp / "d"), "--data", str(p.data), "--workers", "0"],
        "image cannot be read: ",
        prepare=lambda p: write(
            p.data / "train_images" / "blast" / "103000.jpg",
            (p.data / "train_images" / "blast" / "103000.jpg").read_bytes()[:600],
        ),
    ),
    # predict
    Case("predict-no-images", lambda p: ["predict", "--images", str(p.tmp / "none"), "--out", str(p.out)], "none"),
    Case(
        "predict-empty-folder",
        lambda p: ["predict", "--images", str(write(p.tmp / "empty" / "notes.txt", "").parent), "--out", str(p.out)],
        "no images",
    ),
    Case(
        "predict-no-finished-runs",
        lambda p: ["predict", "--images", str(p.data / "test_images"), "--out", str(p.tmp / "empty")],
        "no finished runs in",
    ),
    # ensemble and submit: the data and the competition
    Case(
        "ensemble-unknown-run",
        lambda p: ["ensemble", "--out", str(p.out), "--run", "nope"],
        "no finished run folder 'nope'",
    ),
    Case(
        "submit-unknown-run",
        lambda p: ["submit", "--dry-run", "--run", "nope", "--out", str(p.out)],
        "no finished run folder 'nope'",
    ),
]


def write_other(p: Paths) -> Path:
    """Another competition folder: the same classes, other test images."""
    other = shutil.copytree(p.data, p.tmp / "other")
    for image in (other / "test_images").iterdir():
        image.rename(image.with_name("9" + image.name))
    ids = sorted(image.name for image in (other / "test_images").iterdir())
    write(other / "sample_submission.csv", "image_id,label\n" + "".join(f"{i},\n" for i in ids))
    return other


def leftovers(root: Path) -> list[Path]:
    """Half-written files (atomic-write temps) under `root`."""
    return [path for path in root.rglob("*.tmp")] if root.exists() else []


def finished_predictions(out: Path) -> set[Path]:
    return set(out.glob("*/predictions.safetensors")) if out.exists() else set()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_error_line_and_leaves_nothing_finished(case: Case, paths: Paths, monkeypatch):
    case.prepare(paths)
    before = finished_predictions(paths.out)
    case.inject(monkeypatch)
    result = CliRunner().invoke(app, case.args(paths))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    fragment = case.fragment(paths) if callable(case.fragment) else case.fragment
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.exception
    assert finished_predictions(paths.out) <= before, "nothing new may be marked finished"
    assert not leftovers(paths.tmp), "no half-written files"


def test_there_are_at_least_forty_cases_over_every_command():
    assert len(CASES) >= 40
    names = {case.name.split("-")[0] for case in CASES}
    commands = {"train", "config", "sample", "lr", "run", "probe", "presize", "ensemble", "submit", "show"}
    assert commands | {"runs", "demo", "predict"} <= names


def test_hidden_files_and_folders_are_ignored_not_fatal(tiny_data_root, tmp_path):
    from paddy.data.competition import check_layout

    data = shutil.copytree(tiny_data_root, tmp_path / "data")
    write(data / "train_images" / ".ipynb_checkpoints" / "x.jpg", b"junk")
    write(data / "train_images" / "blast" / "._100300.jpg", b"macOS resource fork")
    write(data / "test_images" / ".DS_Store", b"junk")
    write(data / "test_images" / "._200001.jpg", b"junk")
    found = check_layout(data)
    assert ".ipynb_checkpoints" not in found.classes
    assert not [p for p in (*found.train_images, *found.test_images) if p.name.startswith(".")]


def test_files_are_written_with_the_users_umask(tmp_path):
    from paddy.core.files import atomic_write_text

    old = os.umask(0o027)
    try:
        written = atomic_write_text(tmp_path / "f.json", "{}")
    finally:
        os.umask(old)
    assert written.stat().st_mode & 0o777 == 0o640, "mkstemp's 0600 would hide the file from the group"
