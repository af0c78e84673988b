"""The script `paddy kaggle push` sends to Kaggle: install paddy offline from the libs dataset, then
train a config (or predict with saved models) and leave submission.csv in /kaggle/working.

Standard library only: it runs before paddy is installed. `paddy kaggle push` copies this file with
SETTINGS filled in. PADDY_KAGGLE_ROOT moves /kaggle elsewhere (to run it off Kaggle, as the tests do).
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SETTINGS: dict = {}  # filled in by `paddy kaggle push`
KEEP = ("torch", "torchvision")  # Kaggle's CUDA builds: pinned, so pip can never replace them
PADDY_WHEELS = "paddy_trainer-*.whl"


def find_folder(root: Path, holds: str, name: str | None = None) -> Path:
    """The first input folder (named `name`) with a file whose lower-cased name matches `holds`, at any depth
    and through links: Kaggle has moved its mounts before."""
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders.sort()
        if (name is None or Path(folder).name == name) and fnmatch.filter([f.lower() for f in files], holds):
            return Path(folder)
    sys.exit(f"paddy kernel: nothing under {root} holds {holds} (is the dataset or competition attached?)")


def install_paddy(libs: Path) -> None:
    """paddy and its dependencies from the packed wheels only, keeping the installed torch/torchvision."""
    with tempfile.TemporaryDirectory() as folder:
        pins = Path(folder) / "keep.txt"
        pins.write_text("".join(f"{name}=={version(name)}\n" for name in KEEP if installed(name)))
        # --no-compile: Python compiles what paddy imports on first use, not every module of every wheel.
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
        run([*pip, "--no-index", "--find-links", str(libs), "--constraint", str(pins), "paddy-trainer"])


def installed(name: str) -> bool:
    try:
        version(name)
    except PackageNotFoundError:
        return False
    return True


def run(command: list[str]) -> None:
    """Run a program; a failure ends the kernel with its exit status (Kaggle marks the version failed)."""
    print("paddy kernel:", " ".join(command), flush=True)
    if code := subprocess.run(command).returncode:
        sys.exit(code)


def paddy(*args: str | Path) -> None:
    """A paddy command, in this process once paddy is installed: torch and fastai are imported once."""
    from paddy.cli.app import app

    command = [str(arg) for arg in args]
    print("paddy kernel: paddy", " ".join(command), flush=True)
    if code := app(command, prog_name="paddy", standalone_mode=False):
        sys.exit(code)


def gpu_count() -> int:
    """The GPUs this session has (two on "GPU T4 x2": then the config's runs share them out)."""
    import torch

    return torch.cuda.device_count()


def trainable(data: Path) -> Path:
    """The data paddy reads: the competition's own, or where its images are pixel columns of CSVs
    (digit-recognizer), the PNG copy paddy presize writes of them (the sample beside them), in a temp folder:
    not in /kaggle/working, whose every file becomes an output of the notebook."""
    from paddy.data.pixel_images import pixel_tables

    if pixel_tables(data) is None:
        return data
    copy = Path(tempfile.mkdtemp(prefix="paddy-images-")) / data.name
    paddy("presize", copy, "--data", data)
    return copy


def train(data: Path, work: Path) -> Path:
    """Train every entry of the config, ensemble them as the config weighs them; the ensemble's file."""
    config = work / SETTINGS["config_name"]  # runs are named after it, as they are at home
    config.write_text(SETTINGS["config"])
    runs = work / "runs"
    pool = SETTINGS["gpu_pool"] and gpu_count() > 1
    paddy("run", config, "--data", data, "--out", runs, *(["--gpus", "all"] if pool else []))
    ensemble = runs / "ensemble.safetensors"
    paddy("ensemble", "--config", config, "--data", data, "--out", runs, "--dest", ensemble)
    return ensemble


def predict(data: Path, inputs: Path, work: Path) -> Path:
    """Predict the test images with the packed runs (a config's entries with their weights, or named runs)."""
    models = find_folder(inputs, "model.safetensors").parent
    selection: list[str | Path] = list(SETTINGS["runs"])
    if SETTINGS["config"]:
        config = Path(tempfile.mkdtemp()) / SETTINGS["config_name"]
        config.write_text(SETTINGS["config"])
        selection = ["--config", config, "--data", SETTINGS["trained_on"]]
    predictions = work / "predictions.safetensors"
    images = [arg for folder in SETTINGS["test_folders"] for arg in ("--images", data / folder)]  # Planet: two
    paddy(
        "predict",
        *selection,
        *images,
        "--out",
        models,
        "--dest",
        predictions,
    )
    return predictions


def write_submission(predictions: Path, data: Path, work: Path) -> None:
    """submission.csv in /kaggle/working, checked against the competition's sample_submission.csv."""
    with tempfile.TemporaryDirectory(dir=work) as folder:  # beside it: /tmp may be another file system
        paddy("submit", "--dry-run", "--predictions", predictions, "--data", data, "--submissions", folder)
        (made,) = Path(folder).glob("submission-*.csv")
        os.replace(made, work / "submission.csv")


def main() -> None:
    kaggle = Path(os.environ.get("PADDY_KAGGLE_ROOT", "/kaggle"))
    inputs, work = kaggle / "input", kaggle / "working"
    install_paddy(find_folder(inputs, PADDY_WHEELS))
    importlib.invalidate_caches()  # paddy was installed after this process started
    data = trainable(find_folder(inputs, SETTINGS["sample_glob"], SETTINGS["competition"]))
    made = train(data, work) if SETTINGS["mode"] == "train" else predict(data, inputs, work)
    write_submission(made, data, work)
    print("paddy kernel: wrote", work / "submission.csv", flush=True)


if __name__ == "__main__":
    main()
