"""Packaging: installing paddy keeps the torch a user already has (Kaggle's CUDA build), and the
built distribution is paddy-trainer with the `paddy` command."""

from __future__ import annotations

import json
import site
import subprocess
import sys
import sysconfig
import tomllib
import venv
from importlib.metadata import PathDistribution
from pathlib import Path

import pytest

from paddy.core.versions import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[1]
# The user's own builds, older than the development pins; pip only reads their metadata.
USER_TORCH = {"torch": "2.5.1", "torchvision": "0.20.1"}


def pretend_installed(site_packages: Path, name: str, version: str) -> None:
    """Metadata that makes pip see `name` `version` as installed (no code)."""
    dist_info = site_packages / f"{name}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.mark.slow
def test_installing_paddy_keeps_the_users_torch(tmp_path):
    # A throwaway environment that sees this one's packages (pip and setuptools included) through a
    # .pth file, but torch and torchvision at the user's versions: its own site-packages comes first.
    # (--system-site-packages would show the base interpreter's packages when this is a venv.)
    env_dir = tmp_path / "env"
    venv.create(env_dir)
    layout = {"base": str(env_dir), "platbase": str(env_dir)}
    site_packages = Path(sysconfig.get_path("purelib", "venv", layout))
    (site_packages / "test-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    for name, version in USER_TORCH.items():
        pretend_installed(site_packages, name, version)
    python = Path(sysconfig.get_path("scripts", "venv", layout)) / "python"
    report = tmp_path / "report.json"

    # Without build isolation paddy's metadata is built with the setuptools seen here: nothing to download.
    pip = [python, "-m", "pip", "install", "--dry-run", "--no-build-isolation", "--disable-pip-version-check"]
    result = subprocess.run([*pip, "--report", report, ROOT], capture_output=True, text=True, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    install = {item["metadata"]["name"]: item for item in json.loads(report.read_text())["install"]}
    replaced = {name: install[name]["metadata"]["version"] for name in USER_TORCH if name in install}
    assert not replaced, f"installing paddy would replace the user's {USER_TORCH} with {replaced}"
    assert [name for name, item in install.items() if item["requested"]] == [DISTRIBUTION]


def test_distribution_is_paddy_trainer_with_the_paddy_command(tmp_path):
    build_system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    prepare = f"import sys, {build_system['build-backend']} as b; b.prepare_metadata_for_build_wheel(sys.argv[1])"
    result = subprocess.run([sys.executable, "-c", prepare, tmp_path], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

    (dist_info,) = tmp_path.glob("*.dist-info")
    dist = PathDistribution(dist_info)
    assert dist.metadata["Name"] == DISTRIBUTION == "paddy-trainer"
    scripts = {ep.name: ep.value for ep in dist.entry_points.select(group="console_scripts")}
    assert scripts == {"paddy": "paddy.cli.app:main"}


def test_one_version_number_agrees_with_what_the_legacy_rules_say():
    """pyproject's version is the package's, and it is the release the legacy rules speak of: after 0.2,
    whose runs are upgraded, and before the release that stops reading the 0.1 key names."""
    from packaging.version import Version

    import paddy
    from paddy.settings.legacy import OLD_NAMES_UNTIL

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert paddy.__version__ == declared
    assert Version("0.2") < Version(declared) < Version(OLD_NAMES_UNTIL)
