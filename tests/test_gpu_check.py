"""scripts/gpu_check.py run as it runs without a GPU (--cpu-only, at the test's scale): every part that
does not need CUDA gives its rows, the CUDA ones are skipped, and a failing or overlong part is
recorded without losing the parts after it; the JSON and the markdown table say the same."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture
def gpu_check(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)

    def broken(check):
        yield {"found": "before the failure"}
        raise RuntimeError("boom")

    def overlong(check):
        time.sleep(30)
        yield {}

    monkeypatch.setitem(module.PARTS, "broken", (broken, 10))
    monkeypatch.setitem(module.PARTS, "overlong", (overlong, 1))
    return module


@pytest.mark.slow  # about a minute: the memory estimate's tensor tracker slows every op
def test_cpu_only_check_writes_every_part_to_json_and_table(gpu_check, tmp_path):
    names = ["broken", "overlong", *[n for n in gpu_check.PARTS if n not in ("broken", "overlong")]]
    started = time.monotonic()
    code = gpu_check.main(["--out", str(tmp_path), "--cpu-only", "--tiny", "--parts", *names])
    assert code == 1  # a part failed
    report = json.loads((tmp_path / gpu_check.JSON_FILE).read_text())
    parts = {p["part"]: p for p in report["parts"]}
    assert [p["part"] for p in report["parts"]] == names and report["cuda"] is False
    status = {name: part["status"] for name, part in parts.items()}
    assert status == {
        "broken": "failed",
        "overlong": "failed",
        "memory": "ok",
        "fp16_training": "ok",
        "loader_vs_gpu": "ok",
        "vs_plain_loop": "ok",
        "channels_last": "ok",
        "gpu_pool": "skipped",
    }, {n: p["error"] for n, p in parts.items()}
    assert parts["broken"]["error"] == "RuntimeError: boom" and parts["broken"]["rows"] == [
        {"found": "before the failure"}
    ]
    assert "ran past its limit of 1 s" in parts["overlong"]["error"] and parts["overlong"]["seconds"] < 5

    memory = parts["memory"]["rows"]
    assert [row["accum"] for row in memory] == [1, 2, 4] and [row["step batch"] for row in memory] == [8, 4, 2]
    assert all("measured MiB" not in row for row in memory)  # no CUDA: nothing is called a measurement
    assert all(row["estimate MiB"] > 800 for row in memory)  # tensors plus the CUDA context allowance
    (trained,) = parts["fp16_training"]["rows"]
    assert trained["precision"] == "fp32" and trained["losses finite"] is True and 0 <= trained["valid error"] <= 1
    (loader,) = parts["loader_vs_gpu"]["rows"]
    assert loader["loader / training"] == pytest.approx(
        loader["loader CPU side images/s"] / loader["training images/s"]
    )
    assert [row["loop"] for row in parts["vs_plain_loop"]["rows"]] == ["paddy, adamw-foreach", "plain, foreach AdamW"]
    assert [row["case"] for row in parts["channels_last"]["rows"]] == ["default", "channels_last"]
    # seconds are rounded to 0.01: each part's, and the total's, may be up to 0.005 over what it measured
    assert sum(p["seconds"] for p in parts.values()) <= report["seconds"] + 0.005 * (len(parts) + 1)
    assert report["seconds"] <= time.monotonic() - started + 0.005

    table = (tmp_path / gpu_check.TABLE_FILE).read_text()
    for name, part in parts.items():
        assert f"| {name} | {part['status']} |" in table
    assert "#### memory" in table and "| accum | step batch | estimate MiB |" in table
    assert "#### gpu_pool" not in table  # skipped: no rows
