"""The `paddy` command: parse options, call one library function, print the outcome."""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape

from paddy.config import AUTO, BadImages, OptimizerChoice, Precision, ResizeMethod, default_of, load_config
from paddy.data import COMPETITION, resolve_data
from paddy.errors import PaddyError
from paddy.kaggle_kernels import KERNELS_FOLDER, LIBS_SLUG, KaggleGpu
from paddy.kaggle_libs import KAGGLE_PYTHON
from paddy.memory_probes import DEFAULT_BUDGET
from paddy.report import cv_table, entries_cv_table, frame_table, run_table, time_plan_table
from paddy.selection import ModelChoice, choose_model

app = typer.Typer(
    help="Train, probe, ensemble and submit for Kaggle image competitions (fastai + timm).",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def console(stderr: bool = False) -> Console:
    """A terminal gets rich's width; a log (Kaggle's "Save & Run All", `tee`, CI) gets tables unwrapped."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=True, width=None if stream.isatty() else 10_000)


out = console()
err = console(stderr=True)


@app.callback()
def paddy() -> None:
    """Train, probe, ensemble and submit for Kaggle image competitions (fastai + timm)."""


def bars() -> bool:
    """fastai's redrawn bars and table belong on a terminal; a log (Kaggle's "Save & Run All", `tee`,
    CI) gets one plain line per epoch instead."""
    return sys.stdout.isatty()


def print_epoch(row: dict[str, Any]) -> None:
    """One history row as one log line: `fit 1 epoch 0: train_loss 0.9213 valid_loss ...`."""
    fit, epoch = row.get("fit"), row.get("epoch")
    values = " ".join(
        f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}"
        for name, value in row.items()
        if name not in ("fit", "epoch")
    )
    out.print(f"fit {fit} epoch {epoch}: {values}", highlight=False)


def epoch_lines() -> Callable[[dict[str, Any]], None] | None:
    """What train hears each epoch: None (fastai's own bars and table) on a terminal, else log lines."""
    return None if bars() else print_epoch


def one_line(error: BaseException) -> str:
    """An exception as one line: its message, or for OS errors what failed and on which file."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return " ".join(str(error).split())


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn what a user or the machine can cause into one red line and exit 1 (Ctrl-C: exit 130).

    PaddyError is paddy's own; a disk or permission problem (OSError) and running out of GPU
    memory outside a probe or `paddy run`'s retries are the machine's. Anything else is a bug
    and keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from paddy.interrupts import note_interrupts

        note_interrupts()
        try:
            return command(*args, **kwargs)
        except (PaddyError, OSError) as e:
            err.print(f"[red]error:[/red] {escape(one_line(e))}", highlight=False)
            raise typer.Exit(1) from None
        except MemoryError:
            err.print("[red]error:[/red] out of memory: use a smaller --bs, a larger --accum or `paddy probe-memory`")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]: finished files are kept, unfinished runs have no predictions")
            raise typer.Exit(130) from None

    return wrapper


def reports_out_of_memory(command: Callable[..., Any]) -> Callable[..., Any]:
    """CUDA out of memory is a RuntimeError, not a MemoryError: one line with the way out."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        try:
            return command(*args, **kwargs)
        except torch.OutOfMemoryError:
            raise MemoryError from None

    return wrapper


def defaulting(help_text: str, name: str) -> str:
    """A help text ending with the field's default, read from ModelEntry (never written twice)."""
    value = default_of(name)
    if isinstance(value, tuple):
        value = "x".join(map(str, value))
    elif isinstance(value, bool):
        value = "on" if value else "off"
    return f"{help_text} (default {value})."


def accum_flag(text: str) -> int | str:
    """--accum takes a whole number or 'auto'."""
    if text != AUTO and not text.isdigit():
        raise typer.BadParameter(f"{text!r} is not a whole number or 'auto'")
    return text if text == AUTO else int(text)


# Options shared by commands, each declared once.
DataOption = Annotated[
    Optional[Path],
    typer.Option(help="Competition folder (default: the config's, /kaggle/input/<competition>, else the demo)."),
]
OutDir = Annotated[Path, typer.Option("--out", help="Folder of run folders.")]
Budget = Annotated[
    Optional[str],
    typer.Option(help=f"GPU memory for --accum auto: 16280 (MiB), 16280MiB, 24GiB, 16GB (default {DEFAULT_BUDGET})."),
]
BadImagesOption = Annotated[BadImages, typer.Option(help="Corrupt training images: fail, or skip them.")]
KeepCheckpoint = Annotated[
    bool, typer.Option(help="Keep checkpoint.pt in a finished run (it is removed at the end otherwise).")
]
DEFAULT_OUT = Path("runs")
CompetitionOption = Annotated[str, typer.Option(help="Kaggle competition slug.")]

MODEL_OPTIONS: dict[str, Any] = {
    "data": DataOption,
    "config": Annotated[Optional[Path], typer.Option(help="TOML config (see configs/); flags override it.")],
    "entry": Annotated[Optional[str], typer.Option(help="Which models entry of --config: its index or arch.")],
    "arch": Annotated[Optional[str], typer.Option(help=defaulting("timm architecture name", "arch"))],
    "size": Annotated[
        Optional[str], typer.Option(help=defaulting("Training size: N or HxW, e.g. 224 or 288x224", "size"))
    ],
    "item": Annotated[Optional[ResizeMethod], typer.Option(help=defaulting("Item resize method", "item"))],
    "item_size": Annotated[
        Optional[str], typer.Option(help="Item resize before augmentation: N or HxW (default twice --size).")
    ],
    "accum": Annotated[
        Optional[str],
        typer.Option(
            parser=accum_flag,
            metavar="<int|auto>",
            help=defaulting("Gradient accumulation factor (divides bs), or 'auto' from probe-memory", "accum"),
        ),
    ],
    "bs": Annotated[Optional[int], typer.Option(help=defaulting("Effective batch size", "bs"))],
    "epochs": Annotated[Optional[int], typer.Option(help=defaulting("Epochs", "epochs"))],
    "lr": Annotated[Optional[float], typer.Option(help=defaulting("Learning rate", "lr"))],
    "finetune": Annotated[
        Optional[bool],
        typer.Option(
            "--finetune/--one-cycle", help=defaulting("fine_tune, or fit_one_cycle of every layer", "finetune")
        ),
    ],
    "seed": Annotated[
        Optional[int], typer.Option(help="Random seed; unset draws one (a new split each run) and records it.")
    ],
    "valid_pct": Annotated[
        Optional[float], typer.Option(help=defaulting("Fraction of training images held out", "valid_pct"))
    ],
    "precision": Annotated[
        Optional[Precision],
        typer.Option(help=defaulting("auto (fp16 on CUDA, fp32 on CPU), fp16 or fp32", "precision")),
    ],
    "pretrained": Annotated[
        Optional[bool],
        typer.Option("--pretrained/--no-pretrained", help=defaulting("Start from pretrained weights", "pretrained")),
    ],
    "pretrained_file": Annotated[
        Optional[Path], typer.Option(help="Local pretrained weights (.safetensors or .pth) for offline use.")
    ],
    "multi_target": Annotated[
        Optional[str],
        typer.Option(help="Also predict this train.csv column (e.g. variety); loss adds both cross-entropies."),
    ],
    "label_smoothing": Annotated[
        Optional[float], typer.Option(help="Label smoothing epsilon in [0, 1) (fastai LabelSmoothingCrossEntropy).")
    ],
    "mixup": Annotated[Optional[float], typer.Option(help="MixUp alpha (> 0) (fastai MixUp callback).")],
    "folds": Annotated[
        Optional[int],
        typer.Option(help="k-fold CV: one run per fold on stratified folds (instead of --valid-pct), with OOF."),
    ],
    "opt": Annotated[
        Optional[OptimizerChoice],
        typer.Option(help=defaulting("Optimizer: fastai's Adam, or torch's AdamW (foreach or fused kernels)", "opt")),
    ],
    "aug": Annotated[
        Optional[bool],
        typer.Option("--aug/--no-aug", help=defaulting("Batch augmentation; --no-aug resizes to --size only", "aug")),
    ],
    "flip": Annotated[Optional[bool], typer.Option("--flip/--no-flip", help=defaulting("Left-right flips", "flip"))],
    "flip_vert": Annotated[
        Optional[bool],
        typer.Option("--flip-vert/--no-flip-vert", help=defaulting("Up-down flips and 90-degree turns", "flip_vert")),
    ],
    "max_rotate": Annotated[Optional[float], typer.Option(help=defaulting("Largest rotation, degrees", "max_rotate"))],
    "max_zoom": Annotated[Optional[float], typer.Option(help=defaulting("Largest zoom (1: none)", "max_zoom"))],
    "max_warp": Annotated[Optional[float], typer.Option(help=defaulting("Largest perspective warp", "max_warp"))],
    "max_lighting": Annotated[
        Optional[float], typer.Option(help=defaulting("Largest brightness/contrast change", "max_lighting"))
    ],
    "min_scale": Annotated[
        Optional[float], typer.Option(help=defaulting("Smallest share of the image a random crop keeps", "min_scale"))
    ],
    "sizes": Annotated[
        Optional[str],
        typer.Option(help="Progressive resizing: sizes smallest first, ending at --size, e.g. 128,192,256."),
    ],
    "ema": Annotated[
        Optional[float],
        typer.Option(help="Average the weights (decay, e.g. 0.9998): validated, predicted with and saved."),
    ],
    "gpus": Annotated[
        Optional[int],
        typer.Option(help=defaulting("GPUs training this one model data-parallel (bs is shared out)", "gpus")),
    ],
    "fold": Annotated[Optional[int], typer.Option(help="With --folds: train only this fold (1..folds).")],
    "fold_seed": Annotated[
        Optional[int], typer.Option(help=defaulting("Seed that draws the folds (shared by every entry)", "fold_seed"))
    ],
}
SELECTION = ("data", "config", "entry")


def with_model_options(command: Callable[..., Any], whole_config: bool = False) -> Callable[..., Any]:
    """Give a command all of MODEL_OPTIONS; it receives them resolved, as `model: ModelChoice`
    (with its own `budget` option, if it has one, applied)."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "model"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in MODEL_OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        options = {name: kwargs.pop(name) for name in MODEL_OPTIONS}
        flags = {k: v for k, v in options.items() if k not in SELECTION}
        selection = {k: options[k] for k in SELECTION}
        choice = choose_model(flags, **selection, budget=kwargs.pop("budget", None), whole_config=whole_config)
        for warning in choice.warnings:
            err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
        if choice.note:
            out.print(choice.note)
        return command(model=choice, **kwargs)

    wrapper.__signature__ = inspect.Signature([*own, *added])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
    return wrapper


def takes_budget(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared --budget option; with_model_options hands it to choose_model."""
    signature = inspect.signature(command, eval_str=True)
    budget = inspect.Parameter("budget", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Budget)
    command.__signature__ = signature.replace(parameters=[*signature.parameters.values(), budget])  # type: ignore
    return command


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
        typer.Option(help="Go on with an interrupted run (folder name under --out, or path) from its last epoch."),
    ] = None,
    keep_checkpoint: KeepCheckpoint = False,
) -> None:
    """Train one model, predict the test set with TTA, and save everything in a run folder."""
    from paddy.train import launch_data_parallel, train_or_resume

    options = {"budget_mib": model.budget_mib, "bad_images": bad_images}
    launched = launch_data_parallel(model.entry, model.data, out_dir, sys.argv[1:], resume=resume, **options)
    if launched is not None:  # the run trained in `gpus` processes, which printed its outcome
        raise typer.Exit(launched)
    results = train_or_resume(
        model.entry,
        model.data,
        out_dir,
        resume=resume,
        settings_given=model.flags_given,
        on_epoch=epoch_lines(),
        keep_checkpoint=keep_checkpoint,
        **options,
    )
    results = [result for result in results if result is not None]  # a data-parallel process but the main one
    if not results:
        return
    if results[0].entry.accum != model.entry.accum:
        out.print(f"--accum auto: accum {results[0].entry.accum}, as probe-memory recorded under {out_dir}")
    for result in results:
        out.print(
            f"{result.entry.describe()} accum={result.entry.accum}: valid error [bold]{result.valid_error:.4f}[/bold]; "
            f"training took {result.train_seconds:.1f} s, pictures and TTA {result.predict_seconds:.1f} s; "
            f"predictions: {result.predictions_path}"
        )
    if len(results) > 1:
        from paddy.out_of_fold import entry_cv

        runs, errors = [r.run for r in results], [r.valid_error for r in results]
        out.print(entries_cv_table([entry_cv(0, results[0].entry, runs, errors)]))


@app.command("lr-find")
@reports_errors
@reports_out_of_memory
@with_model_options
@takes_budget
def lr_find(model: ModelChoice, out_dir: OutDir = DEFAULT_OUT, bad_images: BadImagesOption = BadImages.fail) -> None:
    """Run fastai's learning-rate finder for a model entry (accum aware) and save its plot."""
    from paddy.lrfind import find_lr

    result = find_lr(model.entry, model.data, out_dir, budget_mib=model.budget_mib, bad_images=bad_images, bars=bars())
    suggestions = pd.DataFrame([{"method": k, "learning rate": f"{v:.2e}"} for k, v in result.suggestions.items()])
    out.print(frame_table(suggestions, title=f"lr_find {model.entry.describe()}"))
    out.print(f"plot: {result.plot}")


@app.command()
@reports_errors
def show(
    run: Annotated[str, typer.Argument(help="Run folder, or its name under --out.")],
    out_dir: OutDir = DEFAULT_OUT,
) -> None:
    """Print a run's settings, history, validation error and where its pictures are."""
    from paddy.runs import find_run, run_summary

    summary = run_summary(find_run(run, out_dir))
    settings = pd.DataFrame([{"setting": k, "value": v} for k, v in summary.config.items()])
    out.print(frame_table(settings, title=summary.run.name))
    if not summary.history.empty:
        out.print(frame_table(summary.history, title="history"))
    if summary.result:
        result = summary.result
        timing = (
            f"training took {result['train_seconds']:.1f} s, pictures and TTA {result['predict_seconds']:.1f} s"
            if "train_seconds" in result
            else f"training, pictures and TTA took {result['seconds']:.1f} s"
        )
        out.print(f"valid error [bold]{result['valid_error']:.4f}[/bold]; {timing}")
    else:
        out.print("[yellow]unfinished[/yellow]: no predictions yet")
    for picture in summary.pictures:
        out.print(f"picture: {picture}")


@app.command("run")
@reports_errors
@reports_out_of_memory
def run_ensemble(
    config: Annotated[Path, typer.Argument(help="Ensemble config (TOML) listing the models to train.")],
    data: DataOption = None,
    out_dir: OutDir = DEFAULT_OUT,
    budget: Budget = None,
    force: Annotated[
        bool, typer.Option("--force", "--restart", help="Train every entry from scratch: finished or interrupted.")
    ] = False,
    bad_images: BadImagesOption = BadImages.fail,
    keep_checkpoint: KeepCheckpoint = False,
    time_budget: Annotated[
        Optional[str],
        typer.Option(help="e.g. 11h30m: plan the time from probe-memory's speeds first; refuse if over."),
    ] = None,
    fit_budget: Annotated[
        bool, typer.Option("--fit-budget", help="With --time-budget: leave out the lowest-weight entries to fit.")
    ] = False,
    gpus: Annotated[
        Optional[str],
        typer.Option(help="GPUs to train on in parallel, one run per GPU at a time: 0,1 or all. Default: one GPU."),
    ] = None,
    shard: Annotated[
        Optional[str], typer.Option(help="I/N: train only this machine's share of the runs (N machines split them).")
    ] = None,
    only_run: Annotated[
        Optional[str], typer.Option(hidden=True, help="ENTRY[:FOLD]: one run (a pool's worker).")
    ] = None,
) -> None:
    """Train every model of a config; re-running skips finished entries (resumable)."""
    from paddy.ensemble_training import BUSY, entries_cv, entry_runs, run_config, selected_runs
    from paddy.selection import choose_config
    from paddy.time_plan import plan_within

    choice = choose_config(config, data, budget)
    for warning in choice.config.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    runs = selected_runs(choice.config.models, shard, only_run)
    if shard is not None:
        out.print(f"shard {shard}: {len(runs)} of the config's runs")
    if time_budget is not None:
        plan = plan_within(choice.config, choice.data, out_dir, choice.budget_mib, time_budget, fit_budget)
        out.print(time_plan_table(plan.planned, plan.budget_s))
        if plan.refused:
            raise PaddyError(plan.refused)
        for left in plan.dropped:
            out.print(f"[yellow]left out (time budget):[/yellow] entry {left.index + 1} {left.entry.describe()}")
        runs &= entry_runs(choice.config.models, {p.index for p in plan.kept})
    options = {"budget_mib": choice.budget_mib, "force": force, "bad_images": bad_images, "only": runs}
    if gpus is not None:
        outcomes = train_on_gpu_pool(choice, out_dir, gpus, keep_checkpoint, options)
    else:
        outcomes = run_config(
            choice.config,
            choice.data,
            out_dir,
            on_progress=announce_entry,
            on_epoch=epoch_lines(),
            keep_checkpoint=keep_checkpoint,
            **options,
        )
    out.print(run_table(outcomes))
    if cv := entries_cv(outcomes):
        out.print(entries_cv_table(cv))
    if busy := [o for o in outcomes if o.status == BUSY]:
        out.print(f"[yellow]{len(busy)} entries are being trained by another paddy[/yellow]; run again when it ends")


def announce_entry(progress) -> None:
    """`paddy run`'s line before each entry: which, and how long so far and still to go."""
    remaining = f", about {progress.remaining:.0f} s left" if progress.remaining is not None else ""
    entry = progress.entry
    fold = f", fold {entry.fold} of {entry.folds}" if entry.fold is not None else ""
    out.print(
        f"[bold]entry {progress.index + 1} of {progress.total}{fold}: {entry.describe()}[/bold] "
        f"({progress.elapsed:.0f} s elapsed{remaining})"
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


def train_on_gpu_pool(choice, out_dir: Path, gpus: str, keep_checkpoint: bool, options: dict[str, Any]) -> list:
    """`paddy run --gpus`: the runs in parallel, one worker per GPU; a failed run is reported, and the
    command fails once every other run has ended."""
    import torch

    from paddy.ensemble_training import run_on_gpus
    from paddy.gpu_pool import parse_gpus

    devices = parse_gpus(gpus, torch.cuda.device_count())
    out.print(f"GPU pool: {len(devices)} GPUs ({', '.join(devices)}), one run on each at a time")
    outcomes, failures = run_on_gpus(
        choice.config,
        choice.data,
        out_dir,
        devices,
        keep_checkpoint=keep_checkpoint,
        on_event=announce_pool_event,
        **options,
    )
    if failures:
        out.print(run_table(outcomes))
        raise PaddyError(f"{len(failures)} runs failed; the others are kept. " + "; ".join(failures))
    return outcomes


@app.command()
@reports_errors
def ensemble(
    runs: Annotated[
        Optional[list[str]],
        typer.Option("--run", help="A run folder (name under --out, or path); repeat. Default: all finished runs."),
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option(help="Use the newest finished run of each entry of this config, with its weights.")
    ] = None,
    data: DataOption = None,
    weight: Annotated[
        Optional[list[str]], typer.Option(help="NAME=W: weight of a run (folder name) or of every run of an arch.")
    ] = None,
    out_dirs: Annotated[
        Optional[list[Path]],
        typer.Option("--out", help="Folder of run folders; repeat for runs trained on several machines (--shard)."),
    ] = None,
    dest: Annotated[
        Optional[Path], typer.Option(help="Where to write the ensemble (default: <first --out>/ensemble.safetensors).")
    ] = None,
    fit_weights: Annotated[
        bool, typer.Option("--fit-weights", help="Weights fitted on out-of-fold predictions (members need folds).")
    ] = False,
) -> None:
    """Average the runs' TTA probabilities after checking they line up (ids, classes, softmax), and
    score members and ensemble on out-of-fold predictions where they have them."""
    from paddy.ensemble import ENSEMBLE_FILE, build_ensemble, parse_weights

    outs = out_dirs or [DEFAULT_OUT]
    target = dest or outs[0] / ENSEMBLE_FILE
    chosen = load_config(config) if config else None
    _, members, report = build_ensemble(
        outs, runs, parse_weights(weight or []), chosen, target, data, fit_weights=fit_weights
    )
    out.print(frame_table(pd.DataFrame([m.describe() for m in members]), title=f"ensemble of {len(members)} members"))
    out.print(cv_table(report))
    if advice := report.fitting_does_not_help():
        err.print(f"[yellow]warning:[/yellow] {escape(advice)}", highlight=False)
    out.print(f"ensemble predictions: {target}")


@app.command()
@reports_errors
def submit(
    predictions: Annotated[
        Optional[Path], typer.Option(help="Predictions file (default: <out>/ensemble.safetensors).")
    ] = None,
    run: Annotated[
        Optional[str], typer.Option(help="Submit a single run's predictions instead of the ensemble.")
    ] = None,
    data: Annotated[
        Optional[Path], typer.Option(help="Competition folder (default: the one the predictions were made from).")
    ] = None,
    competition: CompetitionOption = COMPETITION,
    message: Annotated[Optional[str], typer.Option(help="Submission message (default: the members).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write and check the CSV, but do not send it.")] = False,
    out_dir: OutDir = DEFAULT_OUT,
    submissions: Annotated[Path, typer.Option(help="Folder for submission CSVs and log.jsonl.")] = Path("submissions"),
    kernel: Annotated[
        Optional[str],
        typer.Option(help="USER/SLUG: a code competition's notebook (`paddy kaggle push --inference`) instead."),
    ] = None,
    version: Annotated[Optional[int], typer.Option(help="With --kernel: its version (default: the latest).")] = None,
) -> None:
    """Write submission.csv from the ensemble (or a run), check it against the sample, send it to Kaggle;
    or, with --kernel, submit a code competition's notebook."""
    from paddy.submit import prepare_submission, send_code_submission, send_submission

    if kernel is not None:
        if run or predictions or dry_run:
            raise PaddyError("--kernel submits the notebook's own submission.csv: no --run, --predictions or --dry-run")
        out.print(f"Kaggle: {send_code_submission(kernel, version, competition, message, submissions)}")
        return
    if version is not None:
        raise PaddyError("--version goes with --kernel")
    made, preds = prepare_submission(out_dir, run, predictions, data, submissions, message)
    out.print(f"wrote {made.path} ({made.rows} rows, checked against sample_submission.csv)")
    if dry_run:
        out.print(f"dry run: not sent. Message would be: {made.message}")
        return
    out.print(f"Kaggle: {send_submission(made, preds, competition)}")


@app.command("predict")
@reports_errors
def predict_images(
    images: Annotated[Path, typer.Option(help="Folder of images to predict (no training data needed).")],
    runs: Annotated[
        Optional[list[str]], typer.Argument(help="Finished runs (folder names under --out, or paths); averaged.")
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option(help="Every entry's finished run of this config, with its ensemble weights.")
    ] = None,
    trained_on: Annotated[
        Optional[Path],
        typer.Option("--data", help="With --config: the data its runs were trained on (default: the config's)."),
    ] = None,
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="Test-time augmentation, as training predicted.")] = True,
    out_dir: OutDir = DEFAULT_OUT,
    dest: Annotated[
        Optional[Path], typer.Option(help="Predictions file (default: <out>/predictions-<images folder>.safetensors).")
    ] = None,
) -> None:
    """Predict any folder of images with saved models: probabilities (safetensors) and a readable CSV."""
    from paddy.predict import predict

    chosen = load_config(config) if config else None
    preds, written = predict(runs or [], images, out_dir, dest, tta, chosen, trained_on)
    out.print(f"{len(preds.image_ids)} images: {written} and {written.with_suffix('.csv')}")


@app.command()
@reports_errors
def setup(
    competition: Annotated[str, typer.Argument(help="Kaggle competition slug.")] = COMPETITION,
    dest: Annotated[Path, typer.Option(help="Folder to download and unzip into.")] = Path("."),
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
    dest: Annotated[Path, typer.Argument(help="Folder for the resized copy (created; re-running resumes).")],
    data: DataOption = None,
    longest: Annotated[int, typer.Option(help="Longest side in pixels; smaller images are copied as they are.")] = 256,
    quality: Annotated[int, typer.Option(help="JPEG quality, 1 to 95.")] = 90,
    workers: Annotated[
        Optional[int], typer.Option(help="Processes (default: every available core; 0: this process).")
    ] = None,
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
    if report.stale_removed:
        out.print(f"removed {report.stale_removed} half-written temp files an interrupted presize left")
    if report.unreadable:
        out.print(f"[yellow]{report.unreadable} unreadable images[/yellow] copied as they are (see --bad-images)")
    out.print(f"train on it: paddy train --data {dest} --item-size {longest} (a larger --item-size only upsamples)")


@app.command("probe-memory")
@reports_errors
@functools.partial(with_model_options, whole_config=True)
@takes_budget
def probe_memory(
    model: ModelChoice,
    headroom: Annotated[float, typer.Option(help="Share of the budget kept free, in [0, 0.9).")] = 0.1,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder of run folders; writes <out>/memory-probes.json.")] = (
        DEFAULT_OUT
    ),
    bad_images: BadImagesOption = BadImages.fail,
) -> None:
    """Find the smallest accum that fits each model (every entry of --config) in a GPU memory budget."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from paddy.memory_probes import PROBES_FILE
    from paddy.probe import probe_memory as probe_entries
    from paddy.report import probe_table

    path = out_dir / PROBES_FILE
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=True) as bar:
        task = bar.add_task("probing", total=None)

        def show_trial(index: int, entry, accum: int) -> None:
            where = f"entry {index + 1} of {len(model.entries)}: {entry.describe()} bs {entry.bs}"
            bar.update(task, description=f"{where}, accum {accum} (per-step batch {entry.bs // accum})")

        def show_record(record) -> None:
            bar.console.print(probe_table(record))

        entries = list(model.entries)
        probe_entries(
            entries,
            model.data,
            model.budget_mib,
            headroom,
            path,
            on_trial=show_trial,
            on_record=show_record,
            bad_images=bad_images,
        )
    out.print(f"saved in {path}; `paddy train --accum auto` (same model, bs and --budget) uses it")


kaggle_app = typer.Typer(help="Train on Kaggle's GPUs and take part in code competitions, from here.")
app.add_typer(kaggle_app, name="kaggle")
KernelArgument = Annotated[str, typer.Argument(help="The notebook, USER/SLUG (as `paddy kaggle push` printed).")]
KernelsFolder = Annotated[Path, typer.Option("--folder", help="Where notebook folders and pulled outputs are kept.")]


@kaggle_app.command("push")
@reports_errors
def kaggle_push(
    targets: Annotated[
        Optional[list[str]], typer.Argument(help="The config (TOML) to train; with --inference, finished run folders.")
    ] = None,
    inference: Annotated[
        bool,
        typer.Option(
            "--inference", help="A notebook, internet off, predicting with finished runs (code competitions)."
        ),
    ] = False,
    config: Annotated[
        Optional[Path], typer.Option(help="With --inference: every entry's finished run of this config, weighted.")
    ] = None,
    data: Annotated[
        Optional[Path], typer.Option(help="With --inference --config: the data its runs were trained on.")
    ] = None,
    gpu: Annotated[
        KaggleGpu, typer.Option(help="Kaggle's accelerator: t4x2 (a run on each T4), p100 or none.")
    ] = KaggleGpu.t4x2,
    internet: Annotated[
        bool,
        typer.Option("--internet/--no-internet", help="Internet for training (pretrained weights); inference: off."),
    ] = True,
    title: Annotated[Optional[str], typer.Option(help="Notebook title (default: paddy <config>).")] = None,
    competition: CompetitionOption = COMPETITION,
    out_dirs: Annotated[
        Optional[list[Path]], typer.Option("--out", help="With --inference: folder of run folders; repeat.")
    ] = None,
    folder: KernelsFolder = KERNELS_FOLDER,
) -> None:
    """Push a notebook that trains a config on Kaggle's GPU (or, --inference, predicts with your runs).

    It installs paddy offline from your libs dataset (paddy kaggle pack-libs) and writes submission.csv."""
    from paddy.kaggle_kernels import push_inference, push_training

    targets = targets or []
    if not inference and (len(targets) != 1 or config or data or out_dirs):
        raise PaddyError("push takes one config to train, or --inference with run folders or --config")
    with out.status("uploading the models and pushing the notebook" if inference else "pushing the notebook"):
        if inference:
            outs = out_dirs or [DEFAULT_OUT]
            pushed = push_inference(targets, config, data, outs, competition, gpu, title, folder)
        else:
            pushed = push_training(Path(targets[0]), competition, gpu, internet, title, folder)
    if pushed.uploaded:
        out.print(pushed.uploaded)
    if gpu is KaggleGpu.p100:
        err.print("[yellow]warning:[/yellow] Kaggle has retired the P100: the session runs on a T4", highlight=False)
    ref = pushed.kernel.ref
    out.print(f"pushed {ref} version {pushed.pushed.version} ({pushed.folder}): {pushed.pushed.url}")
    out.print(f"follow it: paddy kaggle status {ref} --wait")
    follow_up = f"paddy submit --kernel {ref} --version {pushed.pushed.version}" if inference else "paddy kaggle pull"
    out.print(f"then: {follow_up}" + ("" if inference else f" {ref}"))


@kaggle_app.command("status")
@reports_errors
def kaggle_status(
    kernel: KernelArgument,
    wait: Annotated[bool, typer.Option("--wait", help="Poll until the run ends.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls, with --wait.")] = 30.0,
) -> None:
    """The notebook's latest run: queued, running, complete, error or cancelled (exit 1 on error)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from paddy.kaggle_kernels import follow_kernel

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=True, disable=not wait) as bar:
        task = bar.add_task(kernel, total=None)
        status = follow_kernel(kernel, wait, interval, lambda s: bar.update(task, description=f"{kernel}: {s.state}"))
    if status.state == "error":
        raise PaddyError(f"{kernel} failed: {status.failure or 'see its log on Kaggle'}")
    out.print(f"{kernel}: {status.state}")
    if status.state == "complete":
        out.print(f"get its runs: paddy kaggle pull {kernel}")


@kaggle_app.command("pull")
@reports_errors
def kaggle_pull(kernel: KernelArgument, out_dir: OutDir = DEFAULT_OUT, folder: KernelsFolder = KERNELS_FOLDER) -> None:
    """Download a finished notebook's output and add its finished runs to --out.

    A run already in --out is never replaced; `paddy ensemble` and `paddy submit` then go on here."""
    from paddy.kaggle_kernels import pull_kernel

    pulled = pull_kernel(kernel, out_dir, folder)
    rows = [
        *({"run": name, "": f"added to {out_dir}"} for name in pulled.merged),
        *({"run": name, "": f"already in {out_dir}: yours kept"} for name in pulled.already_here),
        *({"run": name, "": "unfinished: left in the output"} for name in pulled.unfinished),
    ]
    if rows:
        out.print(frame_table(pd.DataFrame(rows), title=f"runs of {kernel}"))
    else:
        err.print(f"[yellow]warning:[/yellow] {kernel}'s output has no runs", highlight=False)
    out.print(f"output (log, submission.csv): {pulled.folder}")


@kaggle_app.command("pack-libs")
@reports_errors
def kaggle_pack_libs(
    dest: Annotated[Path, typer.Option(help="Folder for the wheels (replaced).")] = KERNELS_FOLDER / LIBS_SLUG,
    python_version: Annotated[str, typer.Option(help="Kaggle's Python, whose wheels are packed.")] = KAGGLE_PYTHON,
) -> None:
    """Pack the wheels paddy needs on Kaggle and upload them as your private dataset paddy-libs.

    paddy's own wheel and every dependency but torch and torchvision (Kaggle's stay), for Kaggle's Python:
    paddy's notebooks install from it with the internet off."""
    from paddy.kaggle_kernels import pack_and_upload_libs

    with out.status("building paddy's wheel, downloading the others, uploading them"):
        packed, uploaded = pack_and_upload_libs(dest, python_version)
    out.print(f"{len(packed.wheels)} wheels ({packed.size_mib:.0f} MiB) in {packed.folder}; {uploaded}")


def main() -> None:
    """Console-script entry point."""
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated")
    app()
