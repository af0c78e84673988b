"""Library versions recorded with every run, so results can be traced and compared."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# paddy's distribution name: `paddy` on PyPI is an unrelated project.
DISTRIBUTION = "paddy-trainer"


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape a run's numbers."""
    found = {}
    for name in ("paddy", "torch", "torchvision", "fastai", "timm"):
        try:
            found[name] = version(DISTRIBUTION if name == "paddy" else name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def paddy_version() -> str:
    """paddy's own version, as pyproject.toml gives it to the installed distribution (the one number)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "not installed"
