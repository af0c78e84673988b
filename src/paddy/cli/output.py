"""What the CLI prints and how: consoles for a terminal or a log, epoch lines, and every error a
user or the machine can cause turned into one line and an exit code (1, or 130 for Ctrl-C).
"""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Callable

import typer
from rich.console import Console
from rich.markup import escape

from paddy.core.errors import PaddyError
from paddy.runs.probes import ProbeNeeded, ProbeRequest
from paddy.settings.budget import duration_text


def console(stderr: bool = False) -> Console:
    """A terminal gets rich's width; a log (Kaggle's "Save & Run All", `tee`, CI) gets tables unwrapped."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=True, width=None if stream.isatty() else 10_000)


out = console()


err = console(stderr=True)


def announce(choice) -> None:
    """What a ModelChoice chose for the user, before the work: old config key names, and the demo dataset."""
    for warning in choice.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    if choice.note:
        out.print(choice.note)


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


def kept_words(result: dict[str, Any]) -> str:
    """Which epoch a run kept, from result.json's keys (kept_epoch counts history.csv's rows from 0):
    ' (best of 5 epochs: the 3rd, stopped early)', or '' for a run of one epoch (nothing to choose from) or
    from before runs said so. An ordinal, since history's epoch column starts again with each fit (fine-tuning's
    frozen epoch, progressive resizing), where "epoch 0" could be two rows."""
    if result.get("kept_epoch") is None or result["epochs_run"] == 1:
        return ""
    stopped = ", stopped early" if result.get("stopped_early") else ""
    return f" ({result['keep']} of {result['epochs_run']} epochs: the {ordinal(result['kept_epoch'] + 1)}{stopped})"


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def epoch_lines() -> Callable[[dict[str, Any]], None] | None:
    """What train hears each epoch: None (fastai's own bars and table) on a terminal, else log lines."""
    return None if bars() else print_epoch


def probe_command(request: ProbeRequest) -> str:
    """The `paddy probe-memory` command that records what a request asks for: every entry of its config,
    or its one entry's model, with the user's data and output folder."""
    entry = request.entry
    where = (
        f" --data {request.data}" if request.data else ""
    ) + f" --out {request.out} --budget {request.budget_mib:g}MiB"
    if request.config is not None:
        return f"paddy probe-memory --config {request.config}{where}"
    (h, w), (ih, iw) = entry.size, entry.resize_to
    return (
        f"paddy probe-memory{where} --arch {entry.arch} --size {h}x{w} --item {entry.item} "
        f"--item-size {ih}x{iw} --bs {entry.bs} --precision {entry.precision}"
        + (f" --ema {entry.ema:g}" if entry.ema else "")
        + (f" --gpus {entry.gpus}" if entry.gpus > 1 else "")
    )


def one_line(error: BaseException) -> str:
    """An exception as one line: its message (with the command that fixes it, where the library says what
    is missing), or for OS errors what failed and on which file."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    if isinstance(error, ProbeNeeded) and error.request is not None:
        return " ".join(f"{error}; run `{probe_command(error.request)}`".split())
    return " ".join(str(error).split())


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the command that goes on from where it stopped (None: nothing to go on with)."""

    def __init__(self, go_on: str | None):
        super().__init__()
        self.go_on = go_on


@contextmanager
def going_on_with(command: Callable[[], str | None]) -> Iterator[None]:
    """What stopped the block, with `command()`, the command line that goes on where it stopped: a Ctrl-C,
    and a checkpoint the disk had no room for (one line: free space, then go on from the checkpoint kept).
    Training imports torch: only then."""
    from paddy.core.interrupts import interrupt_first
    from paddy.training.not_saved import CheckpointNotSaved

    try:
        with interrupt_first():
            yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(command()) from None
    except CheckpointNotSaved as e:
        go_on = command()
        raise PaddyError(f"{e}; free space" + (f", then go on with `{go_on}`" if go_on else "")) from None


def progress_text(elapsed: float, remaining: float | None) -> str:
    """'(12m elapsed, about 1h05m left)' for a line before each of several runs; nothing left to say before
    the first has ended."""
    left = f", about {duration_text(remaining)} left" if remaining is not None else ""
    return f"({duration_text(elapsed)} elapsed{left})"


@contextmanager
def progress_bar(what: str, shown_on: Console, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """A bar of work that reports how far it is (done, total), with the time left; gone once the block ends.
    A log, not a terminal, shows none (rich would leave an empty line in it for each)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=shown_on, transient=True, disable=not shown_on.is_terminal) as progress:
        task = progress.add_task(what, total=total)
        yield lambda done, total: progress.update(task, completed=done, total=total)


class LibraryProgress:
    """The reporter of a command (core.progress): a bar for each piece of work the library reports, from its
    first report to its last (done == total), on stderr."""

    def __init__(self, shown_on: Console):
        self.shown_on = shown_on
        self.what: str | None = None
        self.bar = ExitStack()
        self.update: Callable[[int, int], None] = lambda done, total: None

    def __call__(self, what: str, done: int, total: int) -> None:
        if what != self.what:
            self.close()
            self.what, self.update = what, self.bar.enter_context(progress_bar(what, self.shown_on, total))
        self.update(done, total)
        if done >= total:
            self.close()

    def close(self) -> None:
        self.bar.close()
        self.what = None


@contextmanager
def library_progress() -> Iterator[None]:
    """The library's progress reports drawn as bars inside the block; any bar still drawn is gone at its end
    (before an error line is printed)."""
    from paddy.core.progress import reporting_to

    bars = LibraryProgress(err)
    try:
        with reporting_to(bars):
            yield
    finally:
        bars.close()


def command_line(*words: Any) -> str:
    """A command line to copy: its words quoted for the shell where they need it."""
    return shlex.join(str(word) for word in words)


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn what a user or the machine can cause into one red line and exit 1 (Ctrl-C, and any error it caused
    once noted, such as a DataLoader worker it ended: exit 130).

    PaddyError is paddy's own; a disk or permission problem (OSError) and running out of GPU
    memory outside a probe or `paddy run`'s retries are the machine's. Anything else is a bug
    and keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from paddy.core.interrupts import interrupt_first, note_interrupts

        note_interrupts()
        try:
            with library_progress(), interrupt_first():
                return command(*args, **kwargs)
        except (PaddyError, OSError) as e:
            err.print(f"[red]error:[/red] {escape(one_line(e))}", highlight=False)
            raise typer.Exit(1) from None
        except MemoryError:
            err.print("[red]error:[/red] out of memory: use a smaller --bs, a larger --accum or `paddy probe-memory`")
            raise typer.Exit(1) from None
        except KeyboardInterrupt as e:
            go_on = f"; go on with: {e.go_on}" if isinstance(e, Interrupted) and e.go_on else ""
            err.print(
                "[yellow]interrupted[/yellow]: finished files are kept, unfinished runs have no predictions"
                + escape(go_on),
                highlight=False,
            )
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
