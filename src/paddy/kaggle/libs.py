"""`paddy kaggle pack-libs`: the wheels paddy needs on Kaggle's Python, so a notebook with the internet
switched off (a code competition) installs it with `pip install --no-index --find-links`.

The versions packed are the ones installed here, where paddy is tested, not whatever the index has
newest. torch and torchvision are never packed (nor what only they need): Kaggle's CUDA builds stay.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from paddy.core.errors import PaddyError
from paddy.core.versions import DISTRIBUTION

KAGGLE_PYTHON = "3.11.13"  # the Python of Kaggle's notebook image (gcr.io/kaggle-gpu-images/python)
KAGGLE_KEEPS = ("torch", "torchvision")  # Kaggle's own CUDA builds: never packed, never replaced
# Kaggle's image runs Ubuntu 22.04 (glibc 2.35): any manylinux wheel up to that is installable.
KAGGLE_PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 36)))
KAGGLE_MARKERS = {
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


@dataclass(frozen=True)
class PackedLibs:
    """The wheels in `folder` (file names): paddy's own, and all of them."""

    folder: Path
    paddy_wheel: str
    wheels: tuple[str, ...]

    @property
    def size_mib(self) -> float:
        return sum((self.folder / wheel).stat().st_size for wheel in self.wheels) / 2**20


def marker_environment(python_version: str) -> dict[str, str]:
    """Kaggle's values for requirement markers (`; sys_platform == "linux"`), at `python_version`."""
    major_minor = ".".join(python_version.split(".")[:2])
    return {**KAGGLE_MARKERS, "python_version": major_minor, "python_full_version": python_version}


def wanted(requirement: Requirement, extras: frozenset[str], environment: dict[str, str]) -> bool:
    """Whether a requirement applies on Kaggle, for the extras asked of the package that lists it."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in {"", *extras})


def requirement_closure(roots: list[str], stop: tuple[str, ...], environment: dict[str, str]) -> dict[str, str]:
    """Every installed distribution `roots` need (with the extras asked of them), as name -> installed
    version, without going into `stop`. A requirement not installed here is kept as its specifier."""
    found: dict[str, str] = {}
    asked: dict[str, frozenset[str]] = {}
    todo = [(root, frozenset[str]()) for root in roots]
    stopped = {canonicalize_name(name) for name in stop}
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in stopped or (key in asked and extras <= asked[key]):
            continue
        asked[key] = asked.get(key, frozenset()) | extras
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found.setdefault(key, "")
            continue
        found[key] = dist.version
        for requirement in map(Requirement, dist.requires or []):
            if wanted(requirement, asked[key], environment):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return found


def project_root() -> Path:
    """paddy's source checkout (its pyproject.toml), which the wheel is built from."""
    root = Path(__file__).resolve().parents[3]  # <root>/src/paddy/kaggle/libs.py
    if not (root / "pyproject.toml").is_file():
        raise PaddyError(f"pack-libs builds paddy's wheel from its source: install paddy from a clone (not {root})")
    return root


def pip(*args: str | Path) -> None:
    """Run pip of this interpreter; its own last error line becomes the PaddyError."""
    result = subprocess.run([sys.executable, "-m", "pip", *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or ["(no message)"]
        raise PaddyError(f"pip {args[0]} failed: {lines[-1].removeprefix('ERROR: ')}")


def build_paddy_wheel(dest: Path) -> str:
    """paddy's wheel, built from the checkout into `dest`; with setuptools here, without an isolated
    (online) build. Returns its file name."""
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    with tempfile.TemporaryDirectory() as built:
        pip("wheel", "--quiet", "--no-deps", *isolation, "--wheel-dir", built, project_root())
        (wheel,) = Path(built).glob("*.whl")
        wheel.replace(dest / wheel.name)
        return wheel.name


def requirement_lines(versions: dict[str, str]) -> list[str]:
    """`name==version` for what is installed here (the tested versions), the bare name otherwise."""
    return [f"{name}=={version}" if version else name for name, version in sorted(versions.items())]


def download_wheels(lines: list[str], dest: Path, python_version: str) -> None:
    """Kaggle-compatible wheels of exactly `lines` (no resolving: the closure is already complete)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write("\n".join(lines) + "\n")
        requirements.flush()
        platforms = [option for platform in KAGGLE_PLATFORMS for option in ("--platform", platform)]
        abi = f"cp{''.join(python_version.split('.')[:2])}"
        pip(
            "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", dest,
            "--python-version", python_version, "--implementation", "cp", "--abi", abi, *platforms,
            "--requirement", requirements.name,
        )  # fmt: skip


def pack_libs(dest: Path, python_version: str = KAGGLE_PYTHON) -> PackedLibs:
    """Write into `dest` paddy's wheel and a wheel of every dependency Kaggle's torch does not bring."""
    dest.mkdir(parents=True, exist_ok=True)
    paddy_wheel = build_paddy_wheel(dest)
    needed = requirement_closure([DISTRIBUTION], KAGGLE_KEEPS, marker_environment(python_version))
    needed.pop(canonicalize_name(DISTRIBUTION))
    download_wheels(requirement_lines(needed), dest, python_version)
    return PackedLibs(dest, paddy_wheel, tuple(sorted(wheel.name for wheel in dest.glob("*.whl"))))
