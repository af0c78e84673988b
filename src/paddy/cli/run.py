"""`paddy run`: every entry of a config, in this process or on a pool of GPUs, with its time plan."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer
from rich.markup import escape

from paddy.cli.help import TRAINING
from paddy.cli.options import (
    DEFAULT_OUT,
    BadImagesOption,
    Budget,
    DataOption,
    KeepCheckpoint,
    OutDir,
    competition_args,
    with_competition_options,
)
from paddy.cli.output import (
    command_line,
    epoch_lines,
    err,
    going_on_with,
    out,
    progress_text,
    reports_errors,
    reports_out_of_memory,
)
from paddy.cli.tables import description_table, entries_cv_table, run_table, time_plan_table
from paddy.core.errors import PaddyError
from paddy.settings.entry import BadImages

if TYPE_CHECKING:  # config_runs imports torch: only for --gpus and training
    from paddy.orchestration.config_runs import RunKey

app = typer.Typer()


Force = Annotated[
    bool,
    typer.Option(
        "--force", "--restart", help="Train every entry from scratch, finished or not.", rich_help_panel=TRAINING
    ),
]
TimeBudget = Annotated[
    Optional[str],
    typer.Option(
        help="e.g. 11h30m: plan the time from probe-memory's speeds first; refuse if over.", rich_help_panel=TRAINING
    ),
]
FitBudget = Annotated[
    bool,
    typer.Option(
        "--fit-budget", help="With --time-budget: leave out the lowest-weight entries to fit.", rich_help_panel=TRAINING
    ),
]
Gpus = Annotated[
    Optional[str],
    typer.Option(
        help="GPUs to train on in parallel, one run per GPU at a time: 0,1 or all. Default: one GPU.",
        rich_help_panel=TRAINING,
    ),
]
Shard = Annotated[
    Optional[str],
    typer.Option(
        help="I/N: train only this machine's share of the runs (N machines split them).", rich_help_panel=TRAINING
    ),
]
OnlyRun = Annotated[Optional[str], typer.Option(hidden=True, help="ENTRY[:FOLD]: one run (a pool's worker).")]


def builtin_names(incomplete: str) -> list[str]:
    """Shell completion of a config: the built-in names it may start (files are the shell's own)."""
    from paddy.settings.builtin_configs import builtin_configs

    return [config.name for config in builtin_configs() if config.name.startswith(incomplete)]


@app.command("run")
@reports_errors
@reports_out_of_memory
@with_competition_options
def run_ensemble(
    config: Annotated[
        Path,
        typer.Argument(
            help="Ensemble config (TOML) listing the models to train, or a built-in's name (paddy configs).",
            autocompletion=builtin_names,
        ),
    ],
    competition: dict[str, Any],
    data: DataOption = None,
    bad_images: BadImagesOption = BadImages.fail,
    budget: Budget = None,
    force: Force = False,
    time_budget: TimeBudget = None,
    fit_budget: FitBudget = False,
    gpus: Gpus = None,
    shard: Shard = None,
    out_dir: OutDir = DEFAULT_OUT,
    keep_checkpoint: KeepCheckpoint = False,
    only_run: OnlyRun = None,
) -> None:
    """Train every model of a config; re-running skips finished entries (resumable)."""
    from paddy.orchestration.config_runs import RunStatus, entries_cv, run_config
    from paddy.orchestration.selection import choose_config

    choice = choose_config(config, data, budget, competition)
    for warning in choice.config.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    if not choice.data.is_demo and only_run is None:  # a pool's worker: its pool printed it
        out.print(description_table(choice.data.description(), str(choice.data.root)))
    runs = runs_to_train(choice, out_dir, shard, only_run, time_budget, fit_budget)
    options = {"budget_mib": choice.budget_mib, "force": force, "bad_images": bad_images, "only": runs}
    again = run_again(config, data, out_dir, budget, keep_checkpoint, bad_images, gpus, shard, competition)
    with going_on_with(lambda: again):
        if gpus is not None:
            flags = (force, keep_checkpoint, bad_images, competition_args(competition))
            worker = worker_command(choice.config.source, choice.data.root, out_dir, choice.budget_mib, *flags)
            outcomes = train_on_gpu_pool(choice, out_dir, gpus, worker, options, again)
        else:
            progress = {"on_progress": announce_entry, "on_epoch": epoch_lines()}
            outcomes = run_config(
                choice.config, choice.data, out_dir, keep_checkpoint=keep_checkpoint, **progress, **options
            )
    out.print(run_table(outcomes))
    if cv := entries_cv(outcomes):
        out.print(entries_cv_table(cv))
    if busy := [o for o in outcomes if o.status == RunStatus.busy]:
        out.print(f"[yellow]{len(busy)} entries are being trained by another paddy[/yellow]; run again when it ends")


def run_again(
    config: Path,
    data: Path | None,
    out_dir: Path,
    budget: str | None,
    keep_checkpoint: bool,
    bad_images: BadImages,
    gpus: str | None,
    shard: str | None,
    competition: dict[str, Any],
) -> str:
    """The same paddy run, less --force: what goes on after a Ctrl-C or a checkpoint the disk had no room for."""
    again = [config, *(["--data", data] if data else []), "--out", out_dir, *(["--budget", budget] if budget else [])]
    again += [*(["--keep-checkpoint"] if keep_checkpoint else []), "--bad-images", bad_images]
    again += [*(["--gpus", gpus] if gpus else []), *(["--shard", shard] if shard else [])]
    return command_line("paddy", "run", *again, *competition_args(competition))


def runs_to_train(
    choice, out_dir: Path, shard: str | None, only_run: str | None, time_budget: str | None, fit_budget: bool
) -> set[RunKey]:
    """The config's runs this `paddy run` trains: its shard's, or its one run's, within its time budget
    (the plan printed; refused when over the budget unless entries may be left out)."""
    from paddy.orchestration.config_runs import entry_runs, selected_runs
    from paddy.orchestration.time_plan import plan_within

    shard_of = parse_shard(shard) if shard is not None else None
    runs = selected_runs(choice.config.models, shard_of, parse_run_key(only_run) if only_run is not None else None)
    if shard is not None:
        out.print(f"shard {shard}: {len(runs)} of the config's runs")
    if time_budget is None:
        return runs
    plan = plan_within(choice.config, choice.data, out_dir, choice.budget_mib, time_budget, fit_budget)
    out.print(time_plan_table(plan.planned, plan.budget_s))
    if plan.refused:
        raise PaddyError(plan.refused)
    for left in plan.dropped:
        out.print(f"[yellow]left out (time budget):[/yellow] entry {left.index} {left.entry.describe()}")
    return runs & entry_runs(choice.config.models, {p.index for p in plan.kept})


def announce_entry(progress) -> None:
    """`paddy run`'s line before each entry: which, and how long so far and still to go."""
    entry = progress.entry
    fold = f", fold {entry.fold} of {entry.folds}" if entry.fold is not None else ""
    out.print(
        f"[bold]entry {progress.index} of 0-{progress.total - 1}{fold}: {entry.describe()}[/bold] "
        f"{progress_text(progress.elapsed, progress.remaining)}"
    )


def announce_pool_event(event) -> None:
    """A pool worker started or ended: which run, on which GPU, and where its log is."""
    if event.outcome is None:
        out.print(
            f"[bold]GPU {event.device}[/bold]: {event.job.label} started (log {event.log}); {event.waiting} waiting"
        )
        return
    took = f"{event.outcome.ended - event.outcome.started:.0f} s"
    if event.outcome.failed:
        err.print(
            f"[red]GPU {event.device}: {escape(event.job.label)} failed after {took}[/red]: "
            f"{escape(event.outcome.last_line())}",
            highlight=False,
        )
    else:
        out.print(f"GPU {event.device}: {event.job.label} ended after {took}; {event.waiting} waiting")


def parse_shard(text: str) -> tuple[int, int]:
    """--shard 'I/N': this machine's share (1..N) of N."""
    try:
        number, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise PaddyError(f"--shard {text!r} is not I/N, e.g. 1/2 on one machine and 2/2 on the other") from None
    if not 1 <= number <= count:
        raise PaddyError(f"--shard {text!r}: I must be one of 1..N")
    return number, count


def parse_run_key(text: str) -> RunKey:
    """An --only-run value: 'I' (entry I, counted from 0) or 'I:F' (its fold F)."""
    try:
        index, _, fold = text.partition(":")
        return int(index), int(fold) if fold else None
    except ValueError:
        raise PaddyError(f"--only-run {text!r} is not ENTRY or ENTRY:FOLD") from None


def worker_command(
    config: Path | None,
    data: Path,
    out_dir: Path,
    budget_mib: float,
    force: bool,
    keep_checkpoint: bool,
    bad_images: BadImages,
    competition: list[str],
) -> Callable[[RunKey], list[str]]:
    """The command of a pool's worker for one run of the config: `paddy run` of that run alone, with this
    command's data, output folder, budget, options and competition flags."""
    options = [*(["--force"] if force else []), *(["--keep-checkpoint"] if keep_checkpoint else [])]
    where = [
        "--data",
        str(data),
        "--out",
        str(out_dir),
        "--budget",
        f"{budget_mib}MiB",
        "--bad-images",
        str(bad_images),
        *competition,
    ]

    def command(key: RunKey) -> list[str]:
        index, fold = key
        run = f"{index}" if fold is None else f"{index}:{fold}"
        return [sys.executable, "-m", "paddy", "run", str(config), *where, "--only-run", run, *options]

    return command


def train_on_gpu_pool(
    choice, out_dir: Path, gpus: str, worker: Callable[[RunKey], list[str]], options: dict[str, Any], again: str
) -> list:
    """`paddy run --gpus`: the runs in parallel, one worker per GPU; a failed run is reported, and the
    command fails once every other run has ended, saying how to go on with the pool (`again`): each
    worker's own line names the worker's command."""
    import torch

    from paddy.orchestration.config_runs import run_on_gpus
    from paddy.orchestration.gpu_pool import parse_gpus

    devices = parse_gpus(gpus, torch.cuda.device_count())
    out.print(f"GPU pool: {len(devices)} GPUs ({', '.join(devices)}), one run on each at a time")
    outcomes, failures = run_on_gpus(
        choice.config,
        choice.data,
        out_dir,
        devices,
        worker,
        on_event=announce_pool_event,
        **options,
    )
    if failures:
        out.print(run_table(outcomes))
        failed = f"{len(failures)} runs failed; the others are kept. " + "; ".join(failures)
        raise PaddyError(f"{failed}; when that is fixed, the pool goes on with `{again}`")
    return outcomes
