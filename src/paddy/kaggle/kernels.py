"""Kaggle notebooks made by paddy: a training notebook that runs a config on Kaggle's GPU, an
inference notebook (internet off) for code competitions, and pulling a notebook's runs back.

A notebook is a folder with kernel-metadata.json and `notebook/paddy_kernel.py` with its SETTINGS
filled in; it installs paddy from the private libs dataset (`paddy kaggle pack-libs`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from slugify import slugify

from paddy.core.errors import PaddyError
from paddy.core.files import TEMP_SUFFIX, atomic_write_text, folder_written_whole, write_json
from paddy.data.competition import competition_slug
from paddy.data.locations import SAMPLE_GLOB
from paddy.ensembling.average import choose_runs, config_data_root
from paddy.kaggle.access import (
    KernelStatus,
    PushedKernel,
    calling_kaggle,
    dataset_exists,
    kaggle_api,
    kaggle_user,
    kernel_status,
    push_kernel,
    upload_private_dataset,
)
from paddy.kaggle.libs import KAGGLE_PYTHON, PackedLibs, pack_libs
from paddy.runs.folder import CHECKPOINT_FILE, RunFolder
from paddy.settings.competition import recorded_spec
from paddy.settings.config_file import EnsembleConfig, load_config
from paddy.training.archs import trainable_problems

KERNEL_FILE = "paddy-kernel.py"
NOTEBOOK_SCRIPT = resources.files("paddy.kaggle") / "notebook" / "paddy_kernel.py"
KERNEL_METADATA = "kernel-metadata.json"
LIBS_SLUG = "paddy-libs"
KERNELS_FOLDER = Path("kaggle")  # kernel folders, as pushed, and pulled outputs


class KaggleGpu(StrEnum):
    """Kaggle's accelerators, as `--gpu` names them."""

    t4x2 = "t4x2"
    p100 = "p100"
    none = "none"


# Machine shapes as kaggle's `kernels push --accelerator` takes them; Kaggle runs retired P100
# sessions on its T4 instead, and the client says so.
MACHINE_SHAPES = {KaggleGpu.t4x2: "NvidiaTeslaT4", KaggleGpu.p100: "NvidiaTeslaP100", KaggleGpu.none: None}


@dataclass(frozen=True)
class Kernel:
    """A notebook to push: its `user/slug`, kernel-metadata.json and the script's SETTINGS."""

    ref: str
    metadata: dict[str, Any]
    settings: dict[str, Any]

    @property
    def slug(self) -> str:
        return kernel_slug(self.ref)


def kernel_slug(ref: str) -> str:
    """The slug of a notebook or dataset `user/slug`."""
    return ref.split("/")[-1]


def kernel_ref(user: str, title: str) -> str:
    """`user/slug`, the slug made from the title as Kaggle makes it (so the two never disagree)."""
    slug = slugify(title)
    if len(title) < 5 or not 5 <= len(slug) <= 50:
        raise PaddyError(f"--title {title!r}: Kaggle needs 5 to 50 letters and digits")
    return f"{user}/{slug}"


def kernel_metadata(
    ref: str, title: str, gpu: KaggleGpu, internet: bool, datasets: list[str], competition: str
) -> dict[str, Any]:
    """kernel-metadata.json: a private Python script with the competition and datasets attached."""
    return {
        "id": ref,
        "title": title,
        "code_file": KERNEL_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": gpu is not KaggleGpu.none,
        "enable_tpu": False,
        "enable_internet": internet,
        "machine_shape": MACHINE_SHAPES[gpu],
        "dataset_sources": datasets,
        "competition_sources": [competition],
        "kernel_sources": [],
        "model_sources": [],
    }


def kaggle_problems(config: EnsembleConfig, internet: bool) -> list[str]:
    """What cannot work in a Kaggle notebook: local weight files, or hub weights with the internet off."""
    problems = []
    for index, entry in enumerate(config.models, 1):
        if entry.pretrained_file is not None:
            problems.append(f"entry {index}: pretrained_file {entry.pretrained_file} is on this machine, not Kaggle")
        elif entry.pretrained and not internet:
            problems.append(f"entry {index} ({entry.arch}) needs hub weights: use --internet or pretrained = false")
    return problems


def training_kernel(
    config_path: Path, user: str, competition: str | None, gpu: KaggleGpu, internet: bool, title: str | None
) -> Kernel:
    """A notebook that trains every entry of the config (one run per GPU) and ensembles them, on the given
    competition, else the config's [competition] slug, else the paddy competition."""
    config = load_config(config_path, check=trainable_problems)
    source = config.source or config_path  # a built-in config's own file, where its name was given
    competition = competition_slug(competition, config.competition.to_json())
    if problems := kaggle_problems(config, internet):
        raise PaddyError(f"{source} cannot train on Kaggle: " + "; ".join(problems))
    title = title or f"paddy {source.stem}"
    ref = kernel_ref(user, title)
    settings = {
        "mode": "train",
        "sample_glob": SAMPLE_GLOB,
        "competition": competition,
        "config": source.read_text(),
        "config_name": source.name,
        "gpu_pool": all(entry.gpus == 1 for entry in config.models),  # else gpus = N entries take them all
        "runs": [],
        "trained_on": None,
    }
    metadata = kernel_metadata(ref, title, gpu, internet, [libs_ref(user)], competition)
    return Kernel(ref, metadata, settings)


def inference_kernel(
    runs: list[str],
    config_path: Path | None,
    data: Path | None,
    outs: list[Path],
    user: str,
    competition: str | None,
    gpu: KaggleGpu,
    title: str | None,
) -> tuple[Kernel, list[RunFolder]]:
    """A notebook, internet off, that predicts the competition's test images (the test folder the runs'
    description recorded) with finished runs (named, or a config's entries with their weights), and the
    runs to upload as its models dataset. The competition is the given one, else the runs'."""
    if bool(runs) == bool(config_path):
        raise PaddyError("--inference takes run folders or --config, one of the two")
    config = load_config(config_path) if config_path else None
    config_path = config.source if config else None  # a built-in config's own file, where its name was given
    chosen = [run for group, _ in choose_runs(outs, runs, config, data) for run in group]
    described = chosen[0].config().get("competition") or {}
    competition = competition_slug(competition, described)
    title = title or f"paddy {config_path.stem if config_path else chosen[0].name[:30]} inference"
    ref = kernel_ref(user, title)
    settings = {
        "mode": "inference",
        "sample_glob": SAMPLE_GLOB,
        "competition": competition,
        "config": config_path.read_text() if config_path else "",
        "config_name": config_path.name if config_path else "",
        "gpu_pool": False,
        "runs": [] if config else [run.name for run in chosen],
        "trained_on": str(config_data_root(config, data)) if config else None,
        "test_folders": list(recorded_spec(described).test_folder or ("test_images",)),
    }
    datasets = [libs_ref(user), models_ref(ref)]
    return Kernel(ref, kernel_metadata(ref, title, gpu, False, datasets, competition), settings), chosen


def models_ref(kernel: str) -> str:
    """The private dataset holding an inference notebook's models."""
    user = kernel.split("/")[0]
    return f"{user}/{kernel_slug(kernel)[:43]}-models"


def script_text(settings: dict[str, Any]) -> str:
    """The notebook's script (package data, never imported: it runs before paddy is installed) with
    SETTINGS filled in."""
    source = NOTEBOOK_SCRIPT.read_text()
    placeholder = "SETTINGS: dict = {}  # filled in by `paddy kaggle push`"
    if placeholder not in source:
        raise AssertionError(f"{NOTEBOOK_SCRIPT} lost its SETTINGS line")
    return source.replace(placeholder, f"SETTINGS: dict = {settings!r}")


def write_kernel(kernel: Kernel, root: Path = KERNELS_FOLDER) -> Path:
    """The kernel folder `<root>/<slug>`, as `kaggle kernels push` reads it (rewritten on each push)."""
    folder = root / kernel.slug
    atomic_write_text(folder / KERNEL_FILE, script_text(kernel.settings))
    write_json(folder / KERNEL_METADATA, kernel.metadata)
    return folder


def stage_models(runs: list[RunFolder], dest: Path) -> Path:
    """Copies of the runs, without checkpoints, in `dest` for upload: one folder (zipped) per run."""
    for run in runs:
        shutil.copytree(run.path, dest / run.name, ignore=shutil.ignore_patterns(CHECKPOINT_FILE, f"*{TEMP_SUFFIX}"))
    return dest


@dataclass(frozen=True)
class Pushed:
    """A pushed notebook: where its folder is kept here, and where Kaggle runs it."""

    kernel: Kernel
    folder: Path
    pushed: PushedKernel
    uploaded: str | None = None  # what was done with the models dataset


def libs_ref(user: str) -> str:
    """The private dataset of wheels `paddy kaggle pack-libs` uploads and every notebook installs from."""
    return f"{user}/{LIBS_SLUG}"


def check_libs_uploaded(api: Any, user: str) -> None:
    """Refuse before any upload or push when `paddy kaggle pack-libs` has not made the libs dataset."""
    ref = libs_ref(user)
    with calling_kaggle(f"look for the dataset {ref}"):
        if not dataset_exists(api, ref):
            raise PaddyError(f"no dataset {ref} on Kaggle: run `paddy kaggle pack-libs` first")


def push_training(
    config_path: Path, competition: str | None, gpu: KaggleGpu, internet: bool, title: str | None, root: Path
) -> Pushed:
    """Check credentials and the libs dataset, write the training notebook and push it."""
    api = kaggle_api()
    user = kaggle_user(api)
    kernel = training_kernel(config_path, user, competition, gpu, internet, title)
    check_libs_uploaded(api, user)
    folder = write_kernel(kernel, root)
    return Pushed(kernel, folder, push_kernel(api, folder))


def push_inference(
    runs: list[str],
    config_path: Path | None,
    data: Path | None,
    outs: list[Path],
    competition: str | None,
    gpu: KaggleGpu,
    title: str | None,
    root: Path,
) -> Pushed:
    """Check credentials and the libs dataset, upload the runs' models (private), push the notebook."""
    api = kaggle_api()
    user = kaggle_user(api)
    kernel, chosen = inference_kernel(runs, config_path, data, outs, user, competition, gpu, title)
    check_libs_uploaded(api, user)
    with tempfile.TemporaryDirectory() as staging:
        models = stage_models(chosen, Path(staging))
        notes = f"{len(chosen)} runs for {kernel.ref}"
        uploaded = upload_private_dataset(api, models, models_ref(kernel.ref), f"{kernel.slug[:40]} models", notes)
    folder = write_kernel(kernel, root)
    return Pushed(kernel, folder, push_kernel(api, folder), uploaded)


def pack_and_upload_libs(dest: Path, python_version: str = KAGGLE_PYTHON) -> tuple[PackedLibs, str]:
    """Check credentials, pack the wheels into `dest` (replacing an older pack) and upload them as the
    private dataset `<user>/paddy-libs`."""
    api = kaggle_api()
    user = kaggle_user(api)
    with folder_written_whole(dest) as staging:
        packed = replace(pack_libs(staging, python_version), folder=dest)
    notes = f"{packed.paddy_wheel} and {len(packed.wheels) - 1} dependencies"
    return packed, upload_private_dataset(api, dest, libs_ref(user), "paddy libs", notes)


def follow_kernel(
    kernel: str, wait: bool, interval_s: float = 30.0, on_status: Callable[[KernelStatus], None] | None = None
) -> KernelStatus:
    """The notebook's status; with `wait`, polled every `interval_s` until it ends."""
    api = kaggle_api()
    while True:
        status = kernel_status(api, kernel)
        if on_status is not None:
            on_status(status)
        if status.finished or not wait:
            return status
        time.sleep(interval_s)
