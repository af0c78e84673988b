"""`paddy train` and `paddy lr-find`: one model entry on one dataset."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.markup import escape

from paddy.cli.help import TRAINING
from paddy.cli.options import (
    DEFAULT_OUT,
    BadImagesOption,
    KeepCheckpoint,
    OutDir,
    takes_budget,
    with_model_options,
)
from paddy.cli.output import (
    announce,
    bars,
    command_line,
    epoch_lines,
    err,
    going_on_with,
    kept_words,
    out,
    progress_text,
    reports_errors,
    reports_out_of_memory,
)
from paddy.cli.tables import description_table, entries_cv_table, frame_table
from paddy.core.errors import PaddyError
from paddy.orchestration.selection import ModelChoice
from paddy.settings.entry import BadImages

app = typer.Typer()


@app.command()
@reports_errors
@reports_out_of_memory
@with_model_options
@takes_budget
def train(
    model: ModelChoice,
    out_dir: OutDir = DEFAULT_OUT,
    bad_images: BadImagesOption = BadImages.fail,
    resume: Annotated[
        Optional[str],
        typer.Option(
            help="Go on with an interrupted run (folder name under --out, or path) from its last epoch.",
            rich_help_panel=TRAINING,
        ),
    ] = None,
    keep_checkpoint: KeepCheckpoint = False,
) -> None:
    """Train one model, predict the test set with TTA, and save everything in a run folder."""
    from paddy.runs.lookup import find_run
    from paddy.training.distributed import launch_data_parallel
    from paddy.training.run import plan_runs

    resumed = find_run(resume, out_dir) if resume is not None else None
    if resumed is not None and model.flags_given:
        raise PaddyError(
            f"--resume goes on with the run's own settings: drop --{model.flags_given[0].replace('_', '-')}"
        )
    if resumed is None:
        announce(model)
    if not model.data.is_demo and resumed is None:
        out.print(description_table(model.data.description(), str(model.data.root)))
    plans = plan_runs(model.entry, model.data, out_dir, model.budget_mib, bad_images, resumed)
    if resumed is not None:
        out.print(f"resuming {resumed.path} with its own settings, on the data it trained on: {plans[0].data.root}")
    for warning in plans[0].folds.warnings if plans[0].folds else ():
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    launched = launch_data_parallel(plans, ["-m", "paddy", *sys.argv[1:]])
    if launched is not None:  # the run trained in `gpus` processes, which printed its outcome
        raise typer.Exit(launched)
    results = train_each(plans, out_dir, keep_checkpoint)
    if results and results[0].entry.accum != model.entry.accum:
        out.print(f"--accum auto: accum {results[0].entry.accum}, as probe-memory recorded under {out_dir}")
    if len(results) > 1:
        print_cv(results)


def train_each(plans: list, out_dir: Path, keep_checkpoint: bool) -> list:
    """Train the runs one after the other, printing each outcome as it ends; with k folds, where the entry
    stands before each fold (time so far and left)."""
    from paddy.orchestration.config_runs import estimate_remaining
    from paddy.training.run import train

    results, started = [], time.monotonic()
    for number, plan in enumerate(plans):
        if len(plans) > 1:
            seconds = [r.train_seconds + r.predict_seconds for r in results]
            remaining = estimate_remaining(seconds, len(plans) - number)
            elapsed = progress_text(time.monotonic() - started, remaining)
            out.print(f"[bold]fold {plan.entry.fold} of {plan.entry.folds}[/bold] {elapsed}")
        with going_on_with(lambda: resume_command(plan, out_dir, keep_checkpoint, plans[number + 1 :])):
            result = train(plan, on_epoch=epoch_lines(), keep_checkpoint=keep_checkpoint)
        if result is not None:  # None: not the main process
            results.append(result)
            print_result(result)
    return results


def print_result(result) -> None:
    """A run's outcome and where its predictions are (whole, to copy)."""
    out.print(
        f"{result.entry.describe()} accum={result.entry.accum}: "
        f"valid {result.metric} [bold]{result.valid_error:.4f}[/bold]{kept_words(result.kept.to_json())}; "
        f"training took {result.train_seconds:.1f} s, pictures and TTA {result.predict_seconds:.1f} s; "
        f"predictions: {escape(str(result.predictions_path))}",
        overflow="ignore",
    )


def print_cv(results: list) -> None:
    """The CV of a k-fold entry: every fold's out-of-fold predictions together."""
    from paddy.ensembling.out_of_fold import entry_cv

    runs, errors = [r.run for r in results], [r.valid_error for r in results]
    out.print(entries_cv_table([entry_cv(0, results[0].entry, runs, errors)]))


def resume_command(plan, out_dir: Path, keep_checkpoint: bool, later: list) -> str | None:
    """The command that goes on with an interrupted run (None before its folder was started), and which
    folds are still to train after it."""
    if not plan.run.config_path.is_file():
        return None
    command = command_line(
        "paddy", "train", "--resume", plan.run.name, "--out", out_dir, *(["--keep-checkpoint"] * keep_checkpoint)
    )
    folds = ", ".join(str(p.entry.fold) for p in later)
    return command + (f", then folds {folds} with --fold" if folds else "")


# What lr-find takes no notice of: it sweeps the learning rate itself over its own steps, at `size`,
# without a weight average or trackers.
LR_FIND_IGNORES = ("epochs", "lr", "sizes", "ema", "trackers")


@app.command("lr-find")
@reports_errors
@reports_out_of_memory
@functools.partial(with_model_options, ignored=LR_FIND_IGNORES)
@takes_budget
def lr_find(model: ModelChoice, out_dir: OutDir = DEFAULT_OUT, bad_images: BadImagesOption = BadImages.fail) -> None:
    """Run fastai's learning-rate finder for a model entry (accum aware) and save its plot."""
    from paddy.training.lr_find import find_lr

    announce(model)

    result = find_lr(model.entry, model.data, out_dir, model.budget_mib, bad_images=bad_images, bars=bars())
    suggestions = pd.DataFrame([{"method": k, "learning rate": f"{v:.2e}"} for k, v in result.suggestions.items()])
    out.print(frame_table(suggestions, title=f"lr_find {model.entry.describe()}"))
    out.print(f"plot: {escape(str(result.plot))}", overflow="ignore")
