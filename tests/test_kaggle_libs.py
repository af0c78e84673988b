"""Which wheels `paddy kaggle pack-libs` packs: paddy's whole dependency closure at the installed
versions, as Kaggle's Linux Python sees the markers, and never torch or torchvision."""

from importlib.metadata import version

from paddy.core.versions import DISTRIBUTION
from paddy.kaggle.libs import KAGGLE_KEEPS, KAGGLE_PYTHON, marker_environment, requirement_closure

KAGGLE = marker_environment(KAGGLE_PYTHON)


def test_the_closure_pins_what_is_installed_and_stops_at_kaggles_torch():
    needed = requirement_closure([DISTRIBUTION], KAGGLE_KEEPS, KAGGLE)
    assert needed["fastai"] == version("fastai") and needed["timm"] == version("timm")
    assert needed["kaggle"] == version("kaggle") and needed["kagglesdk"] == version("kagglesdk")  # kaggle's own
    assert not {"torch", "torchvision", "triton", "sympy"} & set(needed)  # torch's, reached only through it
    assert not [name for name in needed if name.startswith("nvidia-cu")]


def test_markers_are_kaggles_linux_not_this_machines():
    windows = {**KAGGLE, "sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"}
    assert "cuda-toolkit" in requirement_closure(["torch"], (), KAGGLE)  # torch: CUDA wheels on Linux only
    assert "cuda-toolkit" not in requirement_closure(["torch"], (), windows)


def test_extras_asked_for_are_followed():
    # torch asks for cuda-toolkit[cufft,...]: the extra's packages belong to the closure (Kaggle's image has them).
    kaggle_torch = requirement_closure(["torch"], (), KAGGLE)
    assert "cuda-toolkit" in kaggle_torch and "nvidia-cufft" in kaggle_torch
    assert "nvidia-cufft" not in requirement_closure(["cuda-toolkit"], (), KAGGLE)
