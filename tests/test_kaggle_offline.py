"""The whole Kaggle story offline, with the REAL kaggle client talking to tests/kaggle_server.py:
pack the libs, run the pushed training notebook in a simulated /kaggle tree (a fresh virtual
environment that has only Kaggle's torch, pip without an index), pull its runs, push the inference
notebook with the runs' models, run that too, and submit it.

The simulated Kaggle image is a new venv whose site-packages sees torch, torchvision and what they
need (linked from this environment) through a .pth file; everything else must come from the wheels.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.kaggle.kernels import KERNEL_FILE
from paddy.kaggle.libs import KAGGLE_KEEPS, marker_environment, requirement_closure

ROOT = Path(__file__).resolve().parents[1]
COMPETITION = "paddy-disease-classification"
LOCAL_PYTHON = ".".join(map(str, sys.version_info[:3]))
runner = CliRunner()


def paddy(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def link_kaggle_image(image: Path) -> None:
    """Link torch, torchvision and every distribution they need (extras included) into `image`."""
    import importlib.metadata as metadata

    needed = requirement_closure(list(KAGGLE_KEEPS), (), marker_environment(LOCAL_PYTHON))
    for name in needed:
        dist = metadata.distribution(name)
        base = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "bin")}:
            if (base / top).exists() and not (image / top).exists():
                (image / top).symlink_to(base / top)


def kaggle_image_python(folder: Path) -> Path:
    """A fresh venv (with pip) that already has Kaggle's torch and nothing else."""
    image = folder / "image"
    image.mkdir(parents=True)
    link_kaggle_image(image)
    venv.create(folder / "env", with_pip=True)
    (site_packages,) = (folder / "env" / "lib").glob("python*/site-packages")
    (site_packages / "kaggle-image.pth").write_text(f"{image}\n")
    return folder / "env" / "bin" / "python"


def run_notebook(python: Path, script: Path, kaggle: Path) -> None:
    """Run a pushed script as Kaggle would, with /kaggle at `kaggle` and no pip configuration."""
    kaggle_has_not = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in kaggle_has_not}
    env.update(PADDY_KAGGLE_ROOT=str(kaggle), PIP_CONFIG_FILE=os.devnull, CUDA_VISIBLE_DEVICES="")
    (kaggle / "working").mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [python, script], cwd=kaggle / "working", env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def mount_dataset(uploads: dict[str, bytes], folder: Path) -> None:
    """A dataset as Kaggle mounts it: files as uploaded, zipped folders unpacked."""
    folder.mkdir(parents=True)
    for name, data in uploads.items():
        if name.endswith(".zip"):
            zipfile.ZipFile(io.BytesIO(data)).extractall(folder / name.removesuffix(".zip"))
        else:
            (folder / name).write_bytes(data)


def uploaded_files(server, since: int) -> dict[str, bytes]:
    """The files uploaded (PUT /upload/<name>) after request number `since`."""
    return {path.rsplit("/", 1)[-1]: body for method, path, _, body in server.requests[since:] if method == "PUT"}


@pytest.mark.slow
def test_kaggle_notebooks_train_and_predict_offline(credentials, kaggle_server, tiny_data_root, tmp_path):
    # pack-libs: paddy's wheel and its dependencies, uploaded as alice's private dataset paddy-libs.
    libs = tmp_path / "libs"
    packed = paddy("kaggle", "pack-libs", "--dest", libs, "--python-version", LOCAL_PYTHON)
    assert "created private dataset alice/paddy-libs" in packed
    wheels = {p.name.split("-")[0].lower() for p in libs.glob("*.whl")}
    assert {"paddy_trainer", "fastai", "timm", "kaggle"} <= wheels and not wheels & {"torch", "torchvision"}
    (created,) = kaggle_server.calls("CreateDataset")
    assert created["isPrivate"] is True and len(created["files"]) == len(list(libs.glob("*.whl")))

    kaggle = tmp_path / "kaggle"
    (kaggle / "input").mkdir(parents=True)
    (kaggle / "input" / "paddy-libs").symlink_to(libs)
    (kaggle / "input" / COMPETITION).symlink_to(tiny_data_root)
    python = kaggle_image_python(tmp_path / "kaggle-image")

    # The training notebook: installs offline, trains configs/tiny.toml, ensembles, writes submission.csv.
    kernels = tmp_path / "kernels"
    paddy("kaggle", "push", ROOT / "configs" / "tiny.toml", "--folder", kernels)
    run_notebook(python, kernels / "paddy-tiny" / KERNEL_FILE, kaggle)
    check_image_kept_its_torch(python)
    working = kaggle / "working"
    assert len(list((working / "runs").glob("tiny-0*"))) == 3
    checked = tmp_path / "checked"
    ensemble = working / "runs" / "ensemble.safetensors"
    paddy(
        "submit",
        "--dry-run",
        "--predictions",
        ensemble,
        "--data",
        kaggle / "input" / COMPETITION,
        "--submissions",
        checked,
    )
    (accepted,) = checked.glob("submission-*.csv")
    trained_submission = (working / "submission.csv").read_text()
    assert accepted.read_text() == trained_submission

    # Pull its runs, then push an inference notebook that predicts with them (their models uploaded).
    kaggle_server.serve_output(working)
    out = tmp_path / "runs"
    paddy("kaggle", "pull", "alice/paddy-tiny", "--out", out, "--folder", kernels)
    assert len([p for p in out.iterdir() if not p.name.startswith(".")]) == 3
    since = len(kaggle_server.requests)
    trained_on = kaggle / "input" / COMPETITION
    paddy("kaggle", "push", "--inference", "--config", ROOT / "configs" / "tiny.toml", "--data", trained_on,
          "--out", out, "--folder", kernels)  # fmt: skip
    (sent,) = kaggle_server.calls("SaveKernel")[-1:]
    assert sent["enableInternet"] is False
    models = sent["datasetDataSources"][1].split("/")[1]
    mount_dataset(uploaded_files(kaggle_server, since), kaggle / "input" / models)

    # The inference notebook, in a fresh /kaggle/working: same models, same TTA seeds, same submission.
    os.rename(working, tmp_path / "training-working")
    run_notebook(python, kernels / sent["slug"].split("/")[1] / KERNEL_FILE, kaggle)
    assert (kaggle / "working" / "submission.csv").read_text() == trained_submission

    paddy("submit", "--kernel", sent["slug"], "--version", 2, "--submissions", tmp_path / "subs")
    assert kaggle_server.calls("CreateCodeSubmission")[0]["kernelSlug"] == sent["slug"].split("/")[1]


def check_image_kept_its_torch(python: Path) -> None:
    """pip installed paddy beside the image's torch: torch is still the image's, not a new copy (the venv's
    own site-packages, where pip installs, holds neither torch nor torchvision; the notebook imported them)."""
    (site_packages,) = (python.parent.parent / "lib").glob("python*/site-packages")
    assert (site_packages / "paddy").is_dir(), "paddy itself was installed into the image's venv"
    installed = {p.name.split("-")[0].lower() for p in site_packages.glob("*.dist-info")}
    assert "paddy_trainer" in installed and not installed & {"torch", "torchvision"}, sorted(installed)
    assert not (site_packages / "torch").exists() and not (site_packages / "torchvision").exists()
