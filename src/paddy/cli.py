"""The `paddy` command: parse options, call one library function, print the outcome."""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape

from paddy.config import DEMO_PRESET, ModelEntry, apply_overrides, load_config, select_entry
from paddy.data import COMPETITION, CompetitionData, resolve_data
from paddy.errors import PaddyError
from paddy.report import frame_table, run_table

app = typer.Typer(
    help="Train, probe, ensemble and submit for Kaggle image competitions (fastai + timm).",
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@app.callback()
def paddy() -> None:
    """Train, probe, ensemble and submit for Kaggle image competitions (fastai + timm)."""


def fastai_bars_only_on_a_terminal(command: Callable[..., Any]) -> Callable[..., Any]:
    """Keep fastai's per-epoch lines but drop its redrawn bars when stdout is a log (Kaggle's "Save & Run
    All", `tee`, CI): fastprogress's own check tests `stdout.isatty` without calling it, so always draws.
    Only for commands that run fastai: importing fastprogress costs the others a web stack at start-up."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import fastprogress.fastprogress

        fastprogress.fastprogress.NO_BAR = not sys.stdout.isatty()
        return command(*args, **kwargs)

    return wrapper


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn PaddyError into one red line and exit 1, Ctrl-C into exit 130; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PaddyError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]: finished files are kept, unfinished runs have no predictions")
            raise typer.Exit(130) from None

    return wrapper


MODEL_OPTIONS: dict[str, tuple[Any, Any]] = {
    "data": (
        Optional[Path],
        typer.Option(
            None,
            help="Competition folder (default: the config's, /kaggle/input/<competition>, else the demo dataset).",
        ),
    ),
    "config": (Optional[Path], typer.Option(None, help="TOML config (see configs/); flags override it.")),
    "entry": (Optional[str], typer.Option(None, help="Which models entry of --config: its index or arch.")),
    "arch": (Optional[str], typer.Option(None, help="timm architecture name, e.g. convnext_small.fb_in22k.")),
    "size": (Optional[str], typer.Option(None, help="Training size: N or HxW (e.g. 224 or 288x224).")),
    "item": (Optional[str], typer.Option(None, help="Item resize method: squish, crop or pad.")),
    "presize": (Optional[str], typer.Option(None, help="Item resize before augmentation: N or HxW (default 2x size).")),
    "accum": (
        Optional[str],
        typer.Option(None, help="Gradient accumulation factor (divides bs), or 'auto' from probe-memory."),
    ),
    "bs": (Optional[int], typer.Option(None, help="Effective batch size (default 64).")),
    "epochs": (Optional[int], typer.Option(None, help="Epochs (default 12).")),
    "lr": (Optional[float], typer.Option(None, help="Learning rate (default 0.01).")),
    "finetune": (
        Optional[bool],
        typer.Option(None, "--finetune/--one-cycle", help="fine_tune (default) or fit_one_cycle."),
    ),
    "seed": (
        Optional[int],
        typer.Option(None, help="Random seed; unset draws one (a new split each run) and records it."),
    ),
    "valid_pct": (Optional[float], typer.Option(None, help="Fraction of training images held out (default 0.2).")),
    "precision": (Optional[str], typer.Option(None, help="auto (fp16 on CUDA, fp32 on CPU), fp16 or fp32.")),
    "pretrained": (
        Optional[bool],
        typer.Option(None, "--pretrained/--no-pretrained", help="Start from pretrained weights (default on)."),
    ),
    "weights": (
        Optional[Path],
        typer.Option(None, help="Local pretrained weights file (.safetensors or .pth) for offline use."),
    ),
    "multi_target": (
        Optional[str],
        typer.Option(None, help="Also predict this train.csv column (e.g. variety); loss adds both cross-entropies."),
    ),
    "label_smoothing": (
        Optional[float],
        typer.Option(None, help="Label smoothing epsilon in [0, 1) (fastai LabelSmoothingCrossEntropy)."),
    ),
    "mixup": (Optional[float], typer.Option(None, help="MixUp alpha (> 0) (fastai MixUp callback).")),
}
SELECTION = ("data", "config", "entry")


@dataclass(frozen=True)
class ModelChoice:
    """The model entry a command works on and the checked data it trains on."""

    entries: tuple[ModelEntry, ...]  # one, or with whole_config every entry of the config; flags applied
    data: CompetitionData
    note: str | None = None
    budget: str | None = None  # the config's GPU memory budget, if it has one

    @property
    def entry(self) -> ModelEntry:
        return self.entries[0]


def choose_model(options: dict[str, Any], whole_config: bool = False) -> ModelChoice:
    """Layer the settings: config entry (or the demo preset on demo data, or defaults), then flags.

    With `whole_config`, a --config without --entry gives all its entries (an ensemble)."""
    flags = {k: v for k, v in options.items() if k not in SELECTION}
    ensemble = load_config(options["config"]) if options["config"] else None
    data = resolve_data(options["data"] or (ensemble.data if ensemble else None))
    note = None
    if ensemble and whole_config and options["entry"] is None:
        bases = ensemble.models
    elif ensemble:
        bases = [select_entry(ensemble, options["entry"])]
    elif data.is_demo:
        bases = [apply_overrides(ModelEntry(), DEMO_PRESET)]
        note = f"No --data given: using the demo dataset at {data.root} with the demo preset {DEMO_PRESET}"
    else:
        bases = [ModelEntry()]
    entries = tuple(apply_overrides(base, flags) for base in bases)
    return ModelChoice(entries, data, note, ensemble.budget if ensemble else None)


def with_model_options(command: Callable[..., Any], whole_config: bool = False) -> Callable[..., Any]:
    """Give a command all of MODEL_OPTIONS; it receives them resolved, as `model: ModelChoice`."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "model"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        for name, (annotation, option) in MODEL_OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        options = {name: kwargs.pop(name) for name in MODEL_OPTIONS}
        choice = choose_model(options, whole_config)
        if choice.note:
            out.print(choice.note)
        return command(model=choice, **kwargs)

    wrapper.__signature__ = inspect.Signature([*own, *added])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
    return wrapper


@app.command()
@reports_errors
@fastai_bars_only_on_a_terminal
@with_model_options
def train(
    model: ModelChoice,
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Folder for run folders."),
    bad_images: str = typer.Option("fail", help="Corrupt training images: fail or skip."),
    budget: Optional[str] = typer.Option(None, help="GPU memory budget --accum auto's probe used (default 16280MiB)."),
) -> None:
    """Train one model, predict the test set with TTA, and save everything in a run folder."""
    from paddy.data import without_bad_images
    from paddy.probe import PROBES_FILE, chosen_budget, resolve_auto_accum
    from paddy.train import train as train_model

    if bad_images not in ("fail", "skip"):
        raise PaddyError(f"--bad-images must be fail or skip, not {bad_images!r}")
    probes = out_dir / PROBES_FILE
    settings = resolve_auto_accum(model.entry, chosen_budget(budget, model.budget), probes)
    if settings is not model.entry:
        out.print(f"--accum auto: accum {settings.accum}, as probe-memory recorded in {probes}")
    result = train_model(settings, without_bad_images(model.data, bad_images), out_dir)
    out.print(frame_table(result.history, title=f"{settings.describe()} accum={settings.accum}"))
    out.print(
        f"valid error [bold]{result.valid_error:.4f}[/bold] in {result.seconds:.1f} s; "
        f"predictions: {result.predictions_path}"
    )


@app.command("lr-find")
@reports_errors
@fastai_bars_only_on_a_terminal
@with_model_options
def lr_find(
    model: ModelChoice,
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Folder for run folders."),
) -> None:
    """Run fastai's learning-rate finder for a model entry (accum aware) and save its plot."""
    from paddy.lrfind import find_lr

    result = find_lr(model.entry, model.data, out_dir)
    suggestions = pd.DataFrame([{"method": k, "learning rate": f"{v:.2e}"} for k, v in result.suggestions.items()])
    out.print(frame_table(suggestions, title=f"lr_find {model.entry.describe()}"))
    out.print(f"plot: {result.plot}")


@app.command()
@reports_errors
def show(
    run: str = typer.Argument(..., help="Run folder, or its name under --out."),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Folder of run folders."),
) -> None:
    """Print a run's settings, history, validation error and where its pictures are."""
    from paddy.runs import find_run, run_summary

    summary = run_summary(find_run(run, out_dir))
    settings = pd.DataFrame([{"setting": k, "value": v} for k, v in summary.config.items()])
    out.print(frame_table(settings, title=summary.run_dir.name))
    if not summary.history.empty:
        out.print(frame_table(summary.history, title="history"))
    if summary.result:
        out.print(f"valid error [bold]{summary.result['valid_error']:.4f}[/bold] in {summary.result['seconds']:.1f} s")
    else:
        out.print("[yellow]unfinished[/yellow]: no predictions yet")
    for picture in summary.pictures:
        out.print(f"picture: {picture}")


@app.command("run")
@reports_errors
@fastai_bars_only_on_a_terminal
def run_ensemble(
    config: Path = typer.Argument(..., help="Ensemble config (TOML) listing the models to train."),
    data: Optional[Path] = typer.Option(None, help="Competition folder (default: the config's, Kaggle's or the demo)."),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Folder for run folders."),
    force: bool = typer.Option(False, help="Retrain entries that already finished."),
) -> None:
    """Train every model of a config; re-running skips finished entries (resumable)."""
    from paddy.probe import PROBES_FILE, chosen_budget, resolve_auto_accum
    from paddy.run import run_config

    ensemble = load_config(config)
    budget = chosen_budget(ensemble.budget)
    found = resolve_data(data or ensemble.data)

    def show(progress) -> None:
        remaining = f", about {progress.remaining:.0f} s left" if progress.remaining is not None else ""
        out.rule(
            f"entry {progress.index + 1} of {progress.total}: {progress.entry.describe()} "
            f"({progress.elapsed:.0f} s elapsed{remaining})"
        )

    def recorded_accum(entry: ModelEntry) -> ModelEntry:
        return resolve_auto_accum(entry, budget, out_dir / PROBES_FILE)

    outcomes = run_config(ensemble, found, out_dir, force=force, resolve_accum=recorded_accum, on_progress=show)
    out.print(run_table(outcomes))


@app.command()
@reports_errors
def ensemble(
    runs: Optional[list[str]] = typer.Option(
        None, "--run", help="A run folder (name under --out, or path); repeat. Default: all finished runs."
    ),
    config: Optional[Path] = typer.Option(
        None, help="Use the newest finished run of each entry of this config, with its weights."
    ),
    weight: Optional[list[str]] = typer.Option(
        None, help="NAME=W: weight of a run (folder name) or of every run of an arch; repeat."
    ),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Folder of run folders."),
    dest: Optional[Path] = typer.Option(
        None, help="Where to write the ensemble (default: <out>/ensemble.safetensors)."
    ),
) -> None:
    """Average the runs' TTA probabilities after checking they line up (ids, classes, softmax)."""
    from paddy.ensemble import ENSEMBLE_FILE, build_ensemble, parse_weights

    target = dest or out_dir / ENSEMBLE_FILE
    chosen = load_config(config) if config else None
    _, members = build_ensemble(out_dir, runs, parse_weights(weight or []), chosen, target)
    out.print(frame_table(pd.DataFrame([m.describe() for m in members]), title=f"ensemble of {len(members)} runs"))
    out.print(f"ensemble predictions: {target}")


@app.command()
@reports_errors
def submit(
    predictions: Optional[Path] = typer.Option(None, help="Predictions file (default: <out>/ensemble.safetensors)."),
    run: Optional[str] = typer.Option(None, help="Submit a single run's predictions instead of the ensemble."),
    data: Optional[Path] = typer.Option(
        None, help="Competition folder holding sample_submission.csv (found like train's)."
    ),
    competition: str = typer.Option(COMPETITION, help="Kaggle competition slug."),
    message: Optional[str] = typer.Option(None, help="Submission message (default: the members)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write and check the CSV, but do not send it."),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Folder of run folders."),
    submissions: Path = typer.Option(Path("submissions"), help="Folder for submission CSVs and log.jsonl."),
) -> None:
    """Write submission.csv from the ensemble (or a run), check it against the sample, send it to Kaggle."""
    from paddy.predictions import load_predictions
    from paddy.submit import predictions_source, send_submission, submission_path, write_submission

    preds = load_predictions(predictions_source(out_dir, run, predictions))
    made = write_submission(preds, resolve_data(data).sample_submission, submission_path(submissions), message)
    out.print(f"wrote {made.path} ({made.rows} rows, checked against sample_submission.csv)")
    if dry_run:
        out.print(f"dry run: not sent. Message would be: {made.message}")
        return
    out.print(f"Kaggle: {send_submission(made, preds, competition)}")


@app.command()
@reports_errors
def setup(
    competition: str = typer.Argument(COMPETITION, help="Kaggle competition slug."),
    dest: Path = typer.Option(Path("."), help="Folder to download and unzip into."),
) -> None:
    """Find or download the competition data (uses /kaggle/input on Kaggle), and check its layout."""
    from paddy.data import check_layout
    from paddy.kaggle_access import competition_folder

    found = check_layout(competition_folder(competition, dest))
    out.print(
        f"{found.root}: {len(found.classes)} classes, {len(found.train_images)} training and "
        f"{len(found.test_images)} test images. Train with: paddy train --data {found.root}"
    )


@app.command()
@reports_errors
def presize(
    dest: Path = typer.Argument(..., help="Folder for the resized copy (created; re-running resumes)."),
    data: Optional[Path] = typer.Option(None, help="Competition folder to copy (default: Kaggle's, else the demo)."),
    longest: int = typer.Option(256, help="Longest side in pixels; smaller images are copied as they are."),
    quality: int = typer.Option(90, help="JPEG quality, 1 to 95."),
    workers: Optional[int] = typer.Option(None, help="Processes (default: every available core; 0: this process)."),
) -> None:
    """Write a resized copy of the competition images (same layout), so decoding stops starving training."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from paddy.presize import presize_dataset

    source = resolve_data(data).root
    columns = (TextColumn("presize"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=out, transient=True) as progress:
        task = progress.add_task("presize", total=None)
        report = presize_dataset(
            source,
            dest,
            longest,
            quality,
            workers,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    counts = pd.DataFrame([{"resized": report.resized, "copied": report.copied, "already done": report.skipped}])
    out.print(frame_table(counts, title=f"{source} -> {dest} (longest {longest} px)"))
    if report.unreadable:
        out.print(f"[yellow]{report.unreadable} unreadable images[/yellow] copied as they are (see --bad-images)")
    out.print(f"train on it: paddy train --data {dest} --presize {longest} (a larger --presize only upsamples)")


@app.command("probe-memory")
@reports_errors
@functools.partial(with_model_options, whole_config=True)
def probe_memory(
    model: ModelChoice,
    budget: Optional[str] = typer.Option(None, help="GPU memory: 16280 (MiB), 16280MiB, 24GiB, 16GB (default 16280)"),
    headroom: float = typer.Option(0.1, help="Share of the budget kept free, in [0, 0.9)."),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Folder of run folders; writes <out>/memory-probes.json."),
) -> None:
    """Find the smallest accum that fits each model (every entry of --config) in a GPU memory budget."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from paddy.probe import PROBES_FILE, chosen_budget
    from paddy.probe import probe_memory as probe_entries
    from paddy.report import probe_table

    budget_mib = chosen_budget(budget, model.budget)
    path = out_dir / PROBES_FILE
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=True) as bar:
        task = bar.add_task("probing", total=None)

        def show_trial(index: int, entry: ModelEntry, accum: int) -> None:
            where = f"entry {index + 1} of {len(model.entries)}: {entry.describe()} bs {entry.bs}"
            bar.update(task, description=f"{where}, accum {accum} (per-step batch {entry.bs // accum})")

        def show_record(record) -> None:
            bar.console.print(probe_table(record))

        entries = list(model.entries)
        probe_entries(entries, model.data, budget_mib, headroom, path, on_trial=show_trial, on_record=show_record)
    out.print(f"saved in {path}; `paddy train --accum auto` (same model, bs and --budget) uses it")


def main() -> None:
    """Console-script entry point."""
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated")
    app()
