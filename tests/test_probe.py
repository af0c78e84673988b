"""The memory probe: budget parsing, the accum search and its stopping rule, out-of-memory
handling, the JSON record, `--accum auto`, the CPU tensor accounting, and one real probe."""

import gc
import json
import shutil
import weakref
from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch
from conftest import tiny_entry
from fastai.vision.all import (
    Callback,
    CancelStepException,
    CrossEntropyLossFlat,
    DataLoaders,
    GradientAccumulation,
    Learner,
    MixedPrecision,
)
from torch import nn
from torch.distributed._tools.mem_tracker import MemTracker
from typer.testing import CliRunner

import paddy.memory.search
import paddy.training.run
from paddy.cli.app import app
from paddy.cli.output import one_line
from paddy.cli.tables import probe_table
from paddy.core.errors import PaddyError
from paddy.data.competition import check_layout
from paddy.memory.measure import (
    LiveTensorBytes,
    Measurement,
    StopAfterSecondStep,
    estimate_in_gpu_precision,
    free_memory,
    measure_training,
    probe_subset,
)
from paddy.memory.search import check_headroom, probe_memory, search_accum
from paddy.runs.probes import (
    CUDA_CONTEXT_MIB,
    ESTIMATE,
    MEASURED,
    PROBES_FILE,
    ProbeNeeded,
    ProbeRecord,
    Trial,
    load_probes,
    probe_key,
    resolve_auto_accum,
    save_probe,
)
from paddy.settings.budget import chosen_budget, parse_budget
from paddy.settings.entry import Precision, accum_choices
from paddy.training.plan import plan_training, resolve_precision

runner = CliRunner()
TINY_FLAGS = ["--arch", "resnet18", "--size", "32", "--bs", "8", "--no-pretrained", "--seed", "0"]


class FakeMeasure:
    """A measurement whose peak halves with each doubling of accum; records what was asked."""

    def __init__(self, peak_at_accum_1: float = 1000.0, out_of_memory_below: int = 0):
        self.peak, self.oom_below, self.calls = peak_at_accum_1, out_of_memory_below, []

    def __call__(self, entry, accum: int) -> Measurement:
        self.calls.append(accum)
        if accum < self.oom_below:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return Measurement(self.peak / accum, ESTIMATE, {"tensors_mib": self.peak / accum})


@pytest.mark.parametrize(
    "text, mib",
    [
        ("16280", 16280),
        ("16280MiB", 16280),
        (16280, 16280),
        ("24GiB", 24576),
        ("1.5 GiB", 1536),
        ("16GB", 15258.8),
        ("500mb", 476.8),
    ],
)
def test_budget_parsing_accepts_sizes_with_units(text, mib):
    assert parse_budget(text) == pytest.approx(mib, abs=0.1)


@pytest.mark.parametrize("text", ["", "abc", "0", "0GiB", "-5GiB", "1.5x", "16 TB", "GiB"])
def test_budget_parsing_refuses_nonsense_and_nothing(text):
    with pytest.raises(PaddyError, match="budget"):
        parse_budget(text)


def test_headroom_must_be_in_zero_to_nine_tenths():
    assert check_headroom(0) == 0 and check_headroom(0.89) == 0.89
    for bad in (-0.1, 0.9, 1.5):
        with pytest.raises(PaddyError, match="headroom"):
            check_headroom(bad)


def test_accum_choices_are_doubling_divisors_leaving_two_images_per_step():
    assert accum_choices(64) == [1, 2, 4, 8, 16, 32]
    assert accum_choices(48) == [1, 2, 4, 8, 16]  # 32 does not divide 48
    assert accum_choices(6) == [1, 2]
    assert accum_choices(1) == []


def test_search_tries_in_order_and_stops_at_the_first_fit():
    measure = FakeMeasure(1000)
    trials = search_accum(tiny_entry(bs=64), limit_mib=300, measure=measure)
    assert measure.calls == [1, 2, 4]
    assert [(t.accum, t.step_bs, t.fits) for t in trials] == [(1, 64, False), (2, 32, False), (4, 16, True)]
    assert trials[-1].peak_mib == 250


def test_search_counts_a_peak_equal_to_the_limit_as_fitting():
    assert [t.accum for t in search_accum(tiny_entry(bs=64), 500, FakeMeasure(1000))] == [1, 2]


def test_search_goes_to_the_last_candidate_when_nothing_fits():
    measure = FakeMeasure(1000)
    trials = search_accum(tiny_entry(bs=16), limit_mib=10, measure=measure)
    assert measure.calls == [1, 2, 4, 8] and not any(t.fits for t in trials)


def test_out_of_memory_means_does_not_fit_and_the_search_goes_on():
    measure = FakeMeasure(1000, out_of_memory_below=4)
    trials = search_accum(tiny_entry(bs=64), limit_mib=300, measure=measure)
    assert measure.calls == [1, 2, 4]
    assert [t.out_of_memory for t in trials] == [True, True, False]
    assert [t.fits for t in trials] == [False, False, True]


def test_other_errors_are_not_mistaken_for_out_of_memory():
    def broken(entry, accum):
        raise ValueError("Expected more than 1 value per channel when training")

    with pytest.raises(ValueError):
        search_accum(tiny_entry(bs=64), 300, broken)


def test_probe_records_each_entry_as_json_and_train_auto_reads_it(tmp_path, tiny_data):
    path = tmp_path / PROBES_FILE
    small, large = tiny_entry(bs=64), tiny_entry(bs=64, size=(64, 64))
    measures = {small.size: FakeMeasure(200), large.size: FakeMeasure(1000)}
    heard = []
    records = probe_memory(
        [small, large],
        tiny_data,
        1000,
        0.5,
        path,
        measure=lambda entry, accum: measures[entry.size](entry, accum),
        on_record=heard.append,
    )
    assert [r.accum for r in records] == [1, 2] and heard == records
    saved = json.loads(path.read_text())["probes"]
    assert [p["accum"] for p in saved] == [1, 2]
    assert saved[1]["key"]["size"] == [64, 64] and saved[1]["key"]["budget_mib"] == 1000
    assert saved[1]["limit_mib"] == 500 and saved[1]["kind"] == ESTIMATE
    assert saved[1]["cuda_context_allowance_mib"] == CUDA_CONTEXT_MIB
    assert [t["peak_mib"] for t in saved[1]["trials"]] == [1000, 500]
    assert resolve_auto_accum([replace(large, accum="auto")], 1000, path.parent)[0].accum == 2
    assert resolve_auto_accum([replace(small, accum="auto")], 1000, path.parent)[0].accum == 1


def test_probing_again_replaces_the_record_of_the_same_model_and_budget(tmp_path, tiny_data):
    path = tmp_path / PROBES_FILE
    entry = tiny_entry(bs=64)
    probe_memory([entry], tiny_data, 1000, 0.1, path, measure=FakeMeasure(5000))
    probe_memory([entry], tiny_data, 1000, 0.1, path, measure=FakeMeasure(1000))
    probe_memory([entry], tiny_data, 24576, 0.1, path, measure=FakeMeasure(5000))
    assert [(r.key["budget_mib"], r.accum) for r in load_probes(path)] == [(1000, 2), (24576, 1)]


def test_an_interrupted_probe_keeps_the_entries_it_finished(tmp_path, tiny_data):
    path = tmp_path / PROBES_FILE
    first, second = tiny_entry(bs=64), tiny_entry(bs=64, size=(64, 64))

    def interrupted(entry, accum):
        if entry.size == second.size:
            raise KeyboardInterrupt
        return FakeMeasure(100)(entry, accum)

    with pytest.raises(KeyboardInterrupt):
        probe_memory([first, second], tiny_data, 1000, 0.1, path, measure=interrupted)
    assert [r.key for r in load_probes(path)] == [probe_key(first, 1000)]


def test_bad_entries_are_refused_before_anything_is_measured(tmp_path, tiny_data):
    measure = FakeMeasure()
    with pytest.raises(PaddyError, match="accum"):
        probe_memory(
            [tiny_entry(bs=64), tiny_entry(bs=64, accum=3)], tiny_data, 1000, 0.1, tmp_path / "p.json", measure
        )
    with pytest.raises(PaddyError, match="bs 1 is too small"):
        probe_memory([tiny_entry(bs=1, accum="auto")], tiny_data, 1000, 0.1, tmp_path / "p.json", measure)
    with pytest.raises(PaddyError, match="headroom"):
        probe_memory([tiny_entry()], tiny_data, 1000, 0.95, tmp_path / "p.json", measure)
    assert measure.calls == [] and not (tmp_path / "p.json").exists()


def record(entry, budget, kind, accum_fits, when="2026-01-01T00:00:00"):
    trials = [
        Trial(a, entry.bs // a, 100.0, a == accum_fits) for a in accum_choices(entry.bs) if a <= (accum_fits or 99)
    ]
    return ProbeRecord(probe_key(entry, budget), 0.1, kind, "cpu", trials, when)


def test_auto_accum_prefers_a_measurement_to_an_estimate(tmp_path):
    path, entry = tmp_path / PROBES_FILE, tiny_entry(bs=64)
    save_probe(path, record(entry, 16280, MEASURED, 4, when="2026-01-01T00:00:00"))
    save_probe(path, record(entry, 16280, ESTIMATE, 8, when="2026-06-01T00:00:00"))
    assert resolve_auto_accum([replace(entry, accum="auto")], 16280, path.parent)[0].accum == 4


def test_auto_accum_without_a_record_says_to_probe_first(tmp_path):
    path, entry = tmp_path / PROBES_FILE, replace(tiny_entry(bs=64), accum="auto")
    save_probe(path, record(tiny_entry(bs=64), 16280, ESTIMATE, 2))
    for other, budget in ((entry, 24576), (replace(entry, size=(64, 64)), 16280), (replace(entry, bs=32), 16280)):
        with pytest.raises(ProbeNeeded, match=r"no memory probe recorded") as info:
            resolve_auto_accum([other], budget, path.parent)
        assert info.value.request.entry == other and info.value.request.budget_mib == budget
        assert "run `paddy probe-memory" in one_line(info.value)


def test_auto_accum_of_a_model_that_never_fits_is_an_error(tmp_path):
    path, entry = tmp_path / PROBES_FILE, tiny_entry(bs=8)
    save_probe(path, record(entry, 1000, ESTIMATE, None))
    with pytest.raises(PaddyError, match=r"does not fit in 1000 MiB even at accum 4 \(per-step batch 2\)"):
        resolve_auto_accum([replace(entry, accum="auto")], 1000, path.parent)


def test_the_table_labels_estimates_and_says_when_nothing_fits():
    entry = tiny_entry(bs=8)
    table = probe_table(record(entry, 1000, ESTIMATE, None))
    assert [column.header for column in table.columns] == ["accum", "per-step batch", "peak MiB (estimate)", "fits"]
    assert "ESTIMATE for a GPU, not a measurement" in table.caption
    assert f"+ {CUDA_CONTEXT_MIB} MiB CUDA context allowance" in table.caption
    assert table.caption.endswith("does not fit even at accum 4 (per-step batch 2)")
    measured = probe_table(record(entry, 1000, MEASURED, 2))
    assert "measured on cpu" in measured.caption and "ESTIMATE" not in measured.caption
    assert measured.caption.endswith("chosen accum: 2")


def test_a_fixed_accum_ignores_the_probes(tmp_path):
    (tmp_path / PROBES_FILE).write_text("{damaged")
    entry = tiny_entry(accum=2)
    assert resolve_auto_accum([entry], 1000, tmp_path) == [entry]


def test_every_auto_entry_is_resolved_at_once_and_each_missing_probe_is_named(tmp_path):
    path, first = tmp_path / PROBES_FILE, tiny_entry(bs=64)
    save_probe(path, record(first, 16280, ESTIMATE, 2))
    second = replace(first, size=(64, 64), accum="auto")
    with pytest.raises(ProbeNeeded) as info:
        resolve_auto_accum([replace(first, accum="auto"), tiny_entry(accum=2), second], 16280, tmp_path, Path("D"))
    message = one_line(info.value)
    assert "entry 2: --accum auto: no memory probe recorded for test_resnet 64x64" in message
    assert "entry 0" not in message and "entry 1" not in message
    assert f"paddy probe-memory --data D --out {tmp_path} --budget 16280MiB --arch test_resnet --size 64x64" in message


def test_a_corrupt_probes_file_is_one_clear_error(tmp_path):
    path = tmp_path / PROBES_FILE
    path.write_text("{not json")
    with pytest.raises(PaddyError, match="cannot read memory probes"):
        load_probes(path)


def test_an_unwritable_out_fails_before_any_probe_and_keeps_the_old_records(tmp_path, tiny_data, monkeypatch):
    path, entry = tmp_path / PROBES_FILE, tiny_entry(bs=64)
    save_probe(path, record(entry, 1000, ESTIMATE, 2))
    before = path.read_bytes()
    measure = FakeMeasure()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("paddy.core.files.os.fsync", disk_full)
    with pytest.raises(PaddyError, match="No space left on device"):
        probe_memory([entry], tiny_data, 1000, 0.1, path, measure=measure)
    assert measure.calls == [] and path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_live_tensor_bytes_counts_storages_once_and_forgets_freed_ones():
    mib = 2**18  # float32 elements in one MiB
    with LiveTensorBytes() as tracker:
        a = torch.ones(mib)
        b = a + 1
        view = b[::2]  # a view: no new storage
        del a
        c = view * 1  # half a MiB
        del b, view, c
    assert tracker.peak == 2 * 2**20
    assert tracker.current == 0


def test_live_tensor_bytes_agrees_with_torch_mem_tracker_on_a_training_step():
    def peak_of(tracker_kind):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
        opt = torch.optim.Adam(model.parameters())
        x, y = torch.randn(64, 256), torch.randint(0, 10, (64,))
        tracker = tracker_kind()
        if isinstance(tracker, MemTracker):
            tracker.track_external(model, opt, x, y)
        with tracker:
            for _ in range(2):
                if isinstance(tracker, MemTracker):
                    tracker.reset_mod_stats()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
                opt.zero_grad()
        return (
            tracker.peak
            if isinstance(tracker, LiveTensorBytes)
            else tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
        )

    ours = peak_of(LiveTensorBytes)
    assert ours == peak_of(MemTracker)
    params = (256 * 512 + 512 + 512 * 10 + 10) * 4
    assert ours > 4 * params  # weights, gradients and Adam's two moments at least


def test_stop_waits_for_a_second_real_optimizer_step():
    """Accumulation and fp16's skipped steps must not count as optimizer steps."""

    class SkipFirstStep(Callback):
        order = MixedPrecision.order  # where fp16's gradient scaler skips a step on overflow

        def before_fit(self):
            self.skipped = self.batches = 0

        def before_batch(self):
            self.batches += 1

        def before_step(self):
            if not self.skipped:
                self.skipped = 1
                raise CancelStepException()

    x, y = torch.randn(12, 8), torch.randint(0, 2, (12,))  # 3 batches an epoch: the steps span epochs
    dls = DataLoaders.from_dsets(list(zip(x, y)), list(zip(x[:8], y[:8])), bs=4, shuffle=False, device="cpu")
    stop, skip = StopAfterSecondStep(), SkipFirstStep()
    learn = Learner(
        dls, nn.Linear(8, 2), loss_func=CrossEntropyLossFlat(), cbs=[GradientAccumulation(n_acc=8), skip, stop]
    )
    with learn.no_bar(), learn.no_logging():
        learn.fit(10)
    assert stop.steps == 2
    assert skip.batches == 6  # accum 2: a cycle whose step was skipped, then two real steps


def test_probe_subset_keeps_the_smallest_class_and_every_class(tiny_data):
    subset = probe_subset(tiny_data, bs=8, valid_pct=0.2)
    classes = {p.parent.name for p in subset.train_images}
    smallest = tiny_data.smallest_class()
    assert classes == set(tiny_data.classes) and subset.classes == tiny_data.classes
    assert {p for p in tiny_data.train_images if p.parent.name == smallest} <= set(subset.train_images)
    assert len(subset.train_images) == 19  # RandomSplitter holds out int(0.2 * 19) = 3: 16 train, two batches of 8
    with pytest.raises(PaddyError, match="too few for one batch of 64"):
        probe_subset(tiny_data, bs=64, valid_pct=0.2)


def test_probe_memory_end_to_end_on_cpu(tiny_data_root, tmp_path):
    result = runner.invoke(
        app,
        ["probe-memory", "--data", str(tiny_data_root), "--out", str(tmp_path), *TINY_FLAGS, "--budget", "2GiB"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "ESTIMATE for a GPU, not a measurement" in result.stdout and "chosen accum: 1" in result.stdout
    (saved,) = load_probes(tmp_path / PROBES_FILE)
    (trial,) = saved.trials
    assert saved.kind == ESTIMATE and saved.key["arch"] == "resnet18" and saved.key["budget_mib"] == 2048
    weights_grads_adam = 4 * 11.2e6 * 4 / 2**20  # resnet18 holds about 11.2M parameters
    assert weights_grads_adam < trial.parts["tensors_mib"] < 3 * weights_grads_adam
    assert trial.peak_mib == pytest.approx(trial.parts["tensors_mib"] + CUDA_CONTEXT_MIB, abs=0.1)
    # precision auto is fp16 on the GPU: the 16-bit estimate decides, the fp32 one is kept beside it
    assert trial.parts["tensors_mib"] == trial.parts["tensors_mib_16bit"] and trial.parts["tensors_mib_fp32"] > 0
    assert trial.parts["decided_by"].startswith("16-bit") and trial.parts["precision"] == "fp16"
    assert "fp32 estimate MiB" in result.stdout and "in 16-bit autocast" in result.stdout
    assert trial.parts["images_per_s"] > 0 and trial.parts["speed_of"] == "this CPU, not a GPU"
    assert "images/s (this CPU, not a GPU)" in result.stdout


def test_a_gpu_run_in_fp32_is_estimated_in_fp32_only(tiny_data):
    measurement = measure_training(tiny_entry(bs=8, precision="fp32"), 1, tiny_data)
    assert measurement.parts["decided_by"] == "fp32" and "tensors_mib_16bit" not in measurement.parts
    assert measurement.parts["tensors_mib"] == measurement.parts["tensors_mib_fp32"]


def cpu_estimate(entry, data) -> dict:
    """measure_training's CPU estimate of a GPU run of `entry` at accum 1, without its timing run."""
    plan = plan_training(replace(entry, precision=Precision.fp32))
    gpu_precision = resolve_precision(entry.precision, cuda=True)
    return estimate_in_gpu_precision(plan, gpu_precision, probe_subset(data, entry.bs, entry.valid_pct), 0).parts


def test_the_estimate_counts_the_weight_averages_copy_of_the_model(tiny_data):
    plain, averaged = (
        cpu_estimate(tiny_entry(bs=8, precision="fp32", ema=ema), tiny_data)["tensors_mib"] for ema in (None, 0.999)
    )
    model = timm.create_model(tiny_entry().arch, num_classes=0)  # the body; fastai's head adds a little
    body_mib = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())) / 2**20
    assert body_mib < averaged - plain < body_mib + 5


def test_the_16_bit_estimate_of_a_conv_net_is_below_the_fp32_one(tiny_data):
    """Activations dominate at 128 px and take half the bytes; at tiny sizes autocast's 16-bit weight
    copies can cost more than they save, on the GPU too, which is why the 16-bit figure decides."""
    parts = cpu_estimate(tiny_entry(bs=16, size=128), tiny_data)
    assert parts["tensors_mib"] == parts["tensors_mib_16bit"] < 0.95 * parts["tensors_mib_fp32"]


def test_train_accum_auto_uses_the_recorded_accum(tiny_data_root, tmp_path, monkeypatch):
    trained = []

    def fake_make_learner(plan, data, callbacks, num_workers=None, bars=True, folds=None):
        trained.append(plan.entry)
        raise PaddyError("stop here: the accum is what this test checks")

    monkeypatch.setattr(paddy.training.run, "make_learner", fake_make_learner)
    save_probe(tmp_path / PROBES_FILE, record(tiny_entry(arch="resnet18"), 24576, ESTIMATE, 2))
    args = ["train", "--data", str(tiny_data_root), "--out", str(tmp_path), *TINY_FLAGS, "--accum", "auto"]
    result = runner.invoke(app, [*args, "--budget", "24GiB"], catch_exceptions=False)
    assert "stop here" in result.stderr, result.output
    assert [e.accum for e in trained] == [2]
    result = runner.invoke(app, args, catch_exceptions=False)  # the default budget has no record
    assert result.exit_code == 1 and "no memory probe recorded" in result.stderr and len(trained) == 1


def test_probe_memory_covers_every_entry_of_a_config(tiny_data_root, tmp_path, monkeypatch):
    config = tmp_path / "two.toml"
    config.write_text(
        f'data = "{tiny_data_root}"\nbudget = "2GiB"\n[defaults]\nbs = 16\npretrained = false\n'
        '[[models]]\narch = "resnet18"\nsize = 32\n[[models]]\narch = "resnet18"\nsize = 48\nitem = "crop"\n'
    )
    monkeypatch.setattr(
        paddy.memory.search, "measure_training", lambda entry, accum, data, num_workers: FakeMeasure(3000)(entry, accum)
    )
    result = runner.invoke(
        app, ["probe-memory", "--config", str(config), "--out", str(tmp_path)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    probes = load_probes(tmp_path / PROBES_FILE)
    assert [(p.key["size"], p.key["budget_mib"], p.accum) for p in probes] == [([32, 32], 2048, 2), ([48, 48], 2048, 2)]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--budget", "0"], "must be more than 0"),
        (["--budget", "lots"], "is not a memory size"),
        (["--headroom", "0.9"], "headroom 0.9 must be in [0, 0.9)"),
        (["--bs", "12", "--accum", "5"], "accum: 5 does not divide bs 12"),
        (["--arch", "resnet_18"], "unknown arch 'resnet_18'"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(args, fragment, tiny_data_root, tmp_path):
    assert_one_line_error(["--data", str(tiny_data_root), *TINY_FLAGS, *args], fragment, tmp_path)


def test_missing_data_or_bad_config_is_one_line_and_exit_1(tmp_path):
    assert_one_line_error(["--data", str(tmp_path / "nowhere")], "data folder not found", tmp_path)
    config = tmp_path / "bad.toml"
    config.write_text('[[models]]\narch = "resnet18"\nitem = "stretch"\n')
    assert_one_line_error(["--config", str(config)], "models[0] (resnet18) item: 'stretch'", tmp_path)


@pytest.fixture
def corrupt_data_root(tiny_data_root, tmp_path):
    """The tiny dataset with one training image that is not a JPEG."""
    root = shutil.copytree(tiny_data_root, tmp_path / "data")
    (root / "train_images" / "blast" / "bad.jpg").write_bytes(b"junk")
    return root


def test_a_corrupt_image_is_one_error_before_anything_is_measured_or_written(corrupt_data_root, tmp_path):
    measure, path = FakeMeasure(), tmp_path / "out" / PROBES_FILE
    with pytest.raises(PaddyError, match=r"image cannot be read: .*/blast/bad\.jpg"):
        probe_memory([tiny_entry()], check_layout(corrupt_data_root), 1000, 0.1, path, measure=measure)
    assert measure.calls == [] and not path.exists()


def test_a_corrupt_image_is_one_line_and_exit_1(corrupt_data_root, tmp_path):
    assert_one_line_error(["--data", str(corrupt_data_root), *TINY_FLAGS], "bad.jpg", tmp_path / "out")
    skipped = runner.invoke(
        app,
        ["probe-memory", "--data", str(corrupt_data_root), "--out", str(tmp_path / "out"), *TINY_FLAGS]
        + ["--bad-images", "skip", "--budget", "2GiB"],
        catch_exceptions=False,
    )
    assert skipped.exit_code == 0 and "chosen accum: 1" in skipped.stdout, skipped.output


def assert_one_line_error(args, fragment, out):
    result = runner.invoke(app, ["probe-memory", "--out", str(out), *args], catch_exceptions=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and fragment in lines[0], result.output
    assert lines[0].startswith("error:") and "Traceback" not in result.output
    assert not (out / PROBES_FILE).exists()


def test_chosen_budget_prefers_the_flag_then_the_config_then_the_kaggle_gpu():
    assert chosen_budget("24GiB", "8GiB") == 24576.0
    assert chosen_budget(None, "8GiB") == 8192.0
    assert chosen_budget(None, None) == 16280.0


def test_free_memory_frees_each_models_cycles_and_walks_no_survivor_again():
    """Between runs: the last model, held only by a cycle, is freed, and what survived the collection (the
    imported libraries, long-lived state) is not walked by the next one, which still frees the next model."""

    def model_in_a_cycle() -> weakref.ref:
        holder = {"model": nn.Linear(64, 64)}
        holder["self"] = holder
        return weakref.ref(holder["model"])

    survivor = ["lives as long as the process"]  # a list: tracked by the collector, as a dict of strings is not
    last = model_in_a_cycle()
    assert last() is not None
    free_memory()
    assert last() is None, "the last model's cycles are collected before anything is frozen"
    tracked = gc.get_objects()
    assert not any(o is survivor for o in tracked), "a survivor is walked by every later collection"
    assert gc.get_freeze_count() > 10 * len(tracked), "the heap that survived is out of later collections"
    following = model_in_a_cycle()
    free_memory()
    assert following() is None, "a model made after a collection is still freed by the next"
