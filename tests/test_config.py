from pathlib import Path

import pytest

from paddy.config import (
    DEMO_PRESET,
    ModelEntry,
    apply_overrides,
    arch_problem,
    check_entry,
    entry_problems,
    load_config,
    parse_accum,
    parse_size,
    select_entry,
)
from paddy.errors import PaddyError


@pytest.mark.parametrize(
    "value, expected",
    [
        (224, (224, 224)),
        ("224", (224, 224)),
        ("288x224", (288, 224)),
        ("288X224", (288, 224)),
        ([256, 192], (256, 192)),
    ],
)
def test_parse_size_accepts_n_and_hxw(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", [0, -5, "0x224", "abc", "1x2x3", [1, 2, 3], True, 2.5])
def test_parse_size_rejects_bad_sizes(value):
    with pytest.raises(PaddyError):
        parse_size(value)


def test_parse_accum():
    assert parse_accum("4") == 4
    assert parse_accum("auto") == "auto"
    with pytest.raises(PaddyError, match="not an integer"):
        parse_accum("two")


def test_unknown_arch_suggests_close_timm_names():
    problem = arch_problem("convnext_smal")
    assert problem is not None and "convnext_small" in problem
    assert arch_problem("resnet18") is None
    assert arch_problem("convnext_small.fb_in22k") is None
    assert "unknown pretrained tag" in arch_problem("convnext_small.no_such_tag")


def test_accum_must_divide_bs():
    problems = entry_problems(ModelEntry(arch="resnet18", bs=64, accum=3))
    assert any("accum: 3 does not divide bs 64" in p for p in problems)
    assert entry_problems(ModelEntry(arch="resnet18", bs=64, accum=4)) == []
    assert any("1 image per step" in p for p in entry_problems(ModelEntry(arch="resnet18", bs=64, accum=64)))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"accum": 0}, "accum"),
        ({"bs": 0}, "bs"),
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"valid_pct": 1.0}, "valid_pct"),
        ({"item": "stretch"}, "item"),
        ({"precision": "fp8"}, "precision"),
        ({"weights": "/no/such/file.pth"}, "weights"),
    ],
)
def test_each_bad_field_is_named(overrides, field):
    entry = apply_overrides(ModelEntry(arch="resnet18"), overrides)
    with pytest.raises(PaddyError, match=f"^{field}:"):
        check_entry(entry)


def test_overrides_ignore_none_and_reject_unknown_fields():
    entry = apply_overrides(ModelEntry(), {"arch": "resnet18", "size": "64", "epochs": None})
    assert (entry.arch, entry.size, entry.epochs) == ("resnet18", (64, 64), ModelEntry().epochs)
    with pytest.raises(PaddyError, match="unknown setting"):
        apply_overrides(ModelEntry(), {"archh": "resnet18"})


def test_item_size_defaults_to_twice_the_training_size():
    assert ModelEntry(size=(288, 224)).item_size == (576, 448)
    assert apply_overrides(ModelEntry(), {"presize": "640x480"}).item_size == (640, 480)
    with pytest.raises(PaddyError, match="presize"):
        apply_overrides(ModelEntry(), {"presize": 0})


CONFIG = """
data = "some/data"
budget = "16GiB"

[defaults]
bs = 32
epochs = 3

[[models]]
arch = "resnet18"
size = 64
item = "crop"

[[models]]
arch = "resnet34"
size = "96x64"
accum = 2
epochs = 5
weight = 2
"""


def test_load_config_layers_defaults_and_entries(tmp_path):
    path = tmp_path / "ens.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    first, second = config.models
    assert (first.arch, first.size, first.item, first.bs, first.epochs) == ("resnet18", (64, 64), "crop", 32, 3)
    assert (second.size, second.accum, second.epochs, second.weight) == ((96, 64), 2, 5, 2.0)
    assert config.data == Path("some/data") and config.budget == "16GiB"
    assert select_entry(config, "1") is second
    assert select_entry(config, "resnet18") is first
    with pytest.raises(PaddyError, match="choose one with --entry"):
        select_entry(config, None)
    with pytest.raises(PaddyError, match="no entry"):
        select_entry(config, "vit_base_patch16_224")


def test_flags_override_the_config_entry(tmp_path):
    path = tmp_path / "ens.toml"
    path.write_text(CONFIG)
    entry = apply_overrides(select_entry(load_config(path), "resnet34"), {"epochs": 1, "accum": "4"})
    assert (entry.epochs, entry.accum, entry.size) == (1, 4, (96, 64))


def test_load_config_lists_every_problem_with_entry_and_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[models]]\narch = "resnet18"\n\n[[models]]\narch = "convnext_smal"\naccum = 3\n\n'
        '[[models]]\narch = "resnet18"\ncolour = "red"\n'
    )
    with pytest.raises(PaddyError) as info:
        load_config(path)
    message = str(info.value)
    assert "models[1] (convnext_smal) arch: unknown arch" in message
    assert "models[1] (convnext_smal) accum: 3 does not divide bs 64" in message
    assert "models[2]: unknown setting(s): colour" in message
    assert "models[0]" not in message


def test_load_config_errors_are_one_line(tmp_path):
    with pytest.raises(PaddyError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[models]\narch=")
    with pytest.raises(PaddyError, match="cannot read config"):
        load_config(broken)
    empty = tmp_path / "empty.toml"
    empty.write_text("[defaults]\nbs = 8\n")
    with pytest.raises(PaddyError, match="at least one"):
        load_config(empty)


def test_shipped_configs_are_valid():
    configs = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))
    assert configs, "configs/ should ship example TOML files"
    for path in configs:
        assert load_config(path).models


def test_demo_preset_is_a_valid_entry():
    check_entry(apply_overrides(ModelEntry(), DEMO_PRESET))
