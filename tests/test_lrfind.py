import json

from conftest import tiny_entry

from paddy.lrfind import find_lr


def test_lr_find_saves_plot_and_suggestions(tiny_data, tmp_path):
    result = find_lr(tiny_entry(bs=8, accum=2), tiny_data, tmp_path, num_workers=0)
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(result.suggestions) == {"minimum", "steep", "valley", "slide"}
    assert all(1e-8 < lr < 10 for lr in result.suggestions.values())
    assert json.loads((result.run_dir / "lr_find.json").read_text()) == result.suggestions
    assert json.loads((result.run_dir / "config.json").read_text())["step_bs"] == 4
    assert not (result.run_dir / "predictions.safetensors").exists()
