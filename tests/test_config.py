import re
from pathlib import Path

import pytest

from paddy.core.errors import PaddyError
from paddy.settings.checks import apply_overrides, entry_problems, parse_accum, parse_size
from paddy.settings.config_file import load_config, select_entry
from paddy.settings.entry import DEMO_PRESET, ModelEntry
from paddy.training.archs import arch_problem, check_trainable, trainable_problems


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
    assert parse_accum(4) == 4
    assert parse_accum("auto") == "auto"
    for bad in ("two", "4", 2.0, True):
        with pytest.raises(PaddyError, match="not a whole number or 'auto'"):
            parse_accum(bad)


def test_unknown_arch_suggests_close_timm_names():
    problem = arch_problem("convnext_smal")
    assert problem is not None and "convnext_small" in problem
    assert arch_problem("resnet18") is None
    assert arch_problem("convnext_small.fb_in22k") is None
    assert "unknown pretrained tag; see timm.list_pretrained('convnext_small')" in arch_problem("convnext_small.q")
    typo = arch_problem("convnext_small.in12k_ft")  # the tag is in12k_ft_in1k
    assert typo.startswith("'convnext_small.in12k_ft' has an unknown pretrained tag; did you mean ")
    assert "convnext_small.in12k_ft_in1k" in typo


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
        ({"pretrained_file": "/no/such/file.pth"}, "pretrained_file"),
        ({"ensemble_weight": -1}, "ensemble_weight"),
        ({"opt": "sgd"}, "opt"),
        ({"max_rotate": -1}, "max_rotate"),
        ({"max_zoom": 0.9}, "max_zoom"),
        ({"max_warp": 1.0}, "max_warp"),
        ({"max_lighting": -0.1}, "max_lighting"),
        ({"min_scale": 0}, "min_scale"),
        ({"flip": "no"}, "flip"),
        ({"size": 256, "sizes": [128, 192]}, "sizes"),  # must end at size
        ({"size": 128, "sizes": [256, 128]}, "sizes"),  # must grow
        ({"size": "256x128", "sizes": "128x256,256x128"}, "sizes"),  # must grow in both dimensions
        ({"size": 256, "sizes": [128, 256], "epochs": 1}, "sizes"),  # an epoch per size
        ({"sizes": [[]]}, "sizes"),
        ({"sizes": []}, "sizes"),
        ({"sizes": "big"}, "sizes"),
        ({"ema": 1}, "ema"),
        ({"ema": "0.99"}, "ema"),
    ],
)
def test_each_bad_field_is_named(overrides, field):
    with pytest.raises(PaddyError, match=rf"^{field}\b"):
        check_trainable(apply_overrides(ModelEntry(arch="resnet18"), overrides))


def test_overrides_ignore_none_and_reject_unknown_fields():
    entry = apply_overrides(ModelEntry(), {"arch": "resnet18", "size": "64", "epochs": None})
    assert (entry.arch, entry.size, entry.epochs) == ("resnet18", (64, 64), ModelEntry().epochs)
    with pytest.raises(PaddyError, match="unknown setting 'archh'; did you mean arch"):
        apply_overrides(ModelEntry(), {"archh": "resnet18"})


def test_sizes_read_from_toml_lists_and_flags_alike(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[models]]\narch = "resnet18"\nsize = 256\nsizes = [128, "192x192", [256, 256]]\n')
    (entry,) = load_config(path).models
    assert entry.sizes == ((128, 128), (192, 192), (256, 256))
    assert apply_overrides(ModelEntry(), {"sizes": "128, 192,256"}).sizes == entry.sizes
    assert entry.to_json()["sizes"] == [[128, 128], [192, 192], [256, 256]]
    assert [epochs for _, epochs in entry.stages()] == [4, 4, 4]


def test_item_size_defaults_to_twice_the_training_size():
    assert ModelEntry(size=(288, 224)).resize_to == (576, 448)
    assert apply_overrides(ModelEntry(), {"item_size": "640x480"}).resize_to == (640, 480)
    with pytest.raises(PaddyError, match="item_size"):
        apply_overrides(ModelEntry(), {"item_size": 0})


@pytest.mark.parametrize(
    "toml, fragment",
    [
        ('bs = "64"', "bs: '64' is not a whole number"),
        ("bs = 64.0", "bs: 64.0 is not a whole number"),
        ("epochs = true", "epochs: True is not a whole number"),
        ('finetune = "no"', "finetune: 'no' is not true or false"),
        ("pretrained = 1", "pretrained: 1 is not true or false"),
        ('lr = "0.01"', "lr: '0.01' is not a number"),
        ("lr = nan", "lr: nan is not a finite number"),
        ("mixup = inf", "mixup: inf is not a finite number"),
        ("valid_pct = [0.2]", "valid_pct: [0.2] is not a number"),
        ("multi_target = 18", "multi_target: 18 is not text"),
        ('accum = "2"', "accum '2' is not a whole number or 'auto'"),
        ("accum = 2.0", "accum 2.0 is not a whole number or 'auto'"),
        ('item = "stretch"', "item: 'stretch' is not one of squish, crop, pad"),
        ("size = { h = 1 }", "size {'h': 1} is not N or HxW"),
        ("seed = 1.5", "seed: 1.5 is not a whole number"),
        ("pretrained_file = 3", "pretrained_file: 3 is not a file path"),
    ],
)
def test_toml_values_of_the_wrong_type_are_errors_naming_entry_and_field(tmp_path, toml, fragment):
    path = tmp_path / "typed.toml"
    path.write_text(f'[[models]]\narch = "resnet18"\n\n[[models]]\narch = "resnet18"\n{toml}\n')
    with pytest.raises(PaddyError) as info:
        load_config(path)
    assert "models[1]" in str(info.value) and fragment in str(info.value)
    assert "models[0]" not in str(info.value)


@pytest.mark.parametrize(
    "toml, fragment",
    [
        ('[[model]]\narch = "resnet18"\n', "unknown key or section 'model'; did you mean models"),
        (
            '[default]\nbs = 8\n[[models]]\narch = "resnet18"\n',
            "unknown key or section 'default'; did you mean defaults",
        ),
        ('budgett = "8GiB"\n[[models]]\narch = "resnet18"\n', "unknown key or section 'budgett'; did you mean budget"),
        ('defaults = 3\n[[models]]\narch = "resnet18"\n', "defaults must be a [defaults] table"),
        ('models = ["resnet18"]\n', "models must be [[models]] tables"),
        ('data = 3\n[[models]]\narch = "resnet18"\n', "data: 3 is not text"),
        ('[defaults]\nbs = "8"\n[[models]]\narch = "resnet18"\n', "[defaults]: bs: '8' is not a whole number"),
    ],
)
def test_config_structure_problems_are_errors_not_silent_defaults(tmp_path, toml, fragment):
    path = tmp_path / "shape.toml"
    path.write_text(toml)
    with pytest.raises(PaddyError, match=re.escape(fragment)):
        load_config(path)


def test_old_key_names_still_load_with_a_warning(tmp_path):
    path = tmp_path / "old.toml"
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    path.write_text(f'[defaults]\npresize = 96\n[[models]]\narch = "resnet18"\nweight = 2\nweights = "{weights}"\n')
    config = load_config(path)
    (entry,) = config.models
    assert (entry.item_size, entry.ensemble_weight, entry.pretrained_file) == ((96, 96), 2.0, weights)
    assert len(config.warnings) == 3 and "'presize' is now called 'item_size'" in config.warnings[0]
    path.write_text('[[models]]\narch = "resnet18"\nweight = 2\nensemble_weight = 3\n')
    with pytest.raises(PaddyError, match="both 'weight' and its new name 'ensemble_weight'"):
        load_config(path)


@pytest.mark.parametrize("content", [b"\xff\xfe[[models]]", b'[[models]]\narch = "r\xe9snet"\n'])
def test_a_config_that_is_not_utf8_is_one_error(tmp_path, content):
    path = tmp_path / "latin1.toml"
    path.write_bytes(content)
    with pytest.raises(PaddyError, match="not UTF-8"):
        load_config(path)


@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000, "{a=" * 5000 + "1" + "}" * 5000])
def test_a_value_nested_too_deeply_is_one_error_not_a_recursion_traceback(tmp_path, nested):
    path = tmp_path / "deep.toml"
    path.write_text(f'[[models]]\narch = "resnet18"\nsize = {nested}\n')
    with pytest.raises(PaddyError, match="values nested too deeply"):
        load_config(path)


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
ensemble_weight = 2
"""


def test_load_config_layers_defaults_and_entries(tmp_path):
    path = tmp_path / "ens.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    first, second = config.models
    assert (first.arch, first.size, first.item, first.bs, first.epochs) == ("resnet18", (64, 64), "crop", 32, 3)
    assert (second.size, second.accum, second.epochs, second.ensemble_weight) == ((96, 64), 2, 5, 2.0)
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
    entry = apply_overrides(select_entry(load_config(path), "resnet34"), {"epochs": 1, "accum": 4})
    assert (entry.epochs, entry.accum, entry.size) == (1, 4, (96, 64))


def test_load_config_lists_every_problem_with_entry_and_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[models]]\narch = "resnet18"\n\n[[models]]\narch = "convnext_smal"\naccum = 3\n\n'
        '[[models]]\narch = "resnet18"\ncolour = "red"\n'
    )
    with pytest.raises(PaddyError) as info:
        load_config(path, check=trainable_problems)
    message = str(info.value)
    assert "models[1] (convnext_smal) arch: unknown arch" in message
    assert "models[1] (convnext_smal) accum: 3 does not divide bs 64" in message
    assert "models[2] (resnet18) unknown setting 'colour'" in message
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
    check_trainable(apply_overrides(ModelEntry(), DEMO_PRESET))


def test_reading_a_config_to_ensemble_needs_no_timm(tmp_path):
    """Without a check that asks timm, a config loads without knowing its archs (an unknown one is the
    training commands' to refuse), so `paddy ensemble --config` never imports timm."""
    path = tmp_path / "c.toml"
    path.write_text('[[models]]\narch = "no_such_arch"\n')
    assert load_config(path).models[0].arch == "no_such_arch"
    with pytest.raises(PaddyError, match="unknown arch 'no_such_arch'"):
        load_config(path, check=trainable_problems)
