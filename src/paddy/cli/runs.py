"""`paddy show`: one run folder's settings, history, outcome and pictures; `paddy runs`: every run folder
under --out in one table, and removing the dead ones."""

from __future__ import annotations

from typing import Annotated, Optional

import pandas as pd
import typer

from paddy.cli.options import DEFAULT_OUT, OutDir
from paddy.cli.output import kept_words, out, reports_errors
from paddy.cli.tables import frame_table, runs_table

app = typer.Typer()


@app.command()
@reports_errors
def show(
    run: Annotated[str, typer.Argument(help="Run folder, or its name under --out.")],
    out_dir: OutDir = DEFAULT_OUT,
) -> None:
    """Print a run's settings, history, validation error and where its pictures are."""
    from paddy.runs.listing import best_so_far, setting_text
    from paddy.runs.lookup import find_run, run_summary

    summary = run_summary(find_run(run, out_dir))
    settings = pd.DataFrame([{"setting": k, "value": setting_text(v)} for k, v in summary.config.items()])
    out.print(frame_table(settings, title=summary.run.name))
    if not summary.history.empty:
        out.print(history_table(summary.history, summary.result))
    if summary.result:
        result = summary.result
        timing = (
            f"training took {result['train_seconds']:.1f} s, pictures and TTA {result['predict_seconds']:.1f} s"
            if "train_seconds" in result
            else f"training, pictures and TTA took {result['seconds']:.1f} s"
        )
        score = f"[bold]{result['valid_error']:.4f}[/bold]{kept_words(result)}"
        out.print(f"valid {result['metric']} {score}; {timing}")
    else:
        metric, best = best_so_far(summary.history)
        so_far = f"; best epoch so far: valid {metric} {best:.4f}" if metric else ""
        out.print(f"[yellow]unfinished[/yellow]: no predictions yet{so_far}")
    for picture in summary.pictures:
        out.print(f"picture: {picture}")


def history_table(history: pd.DataFrame, result: dict | None):
    """The epochs, the one whose weights the run kept (saved and predicted with) marked; none for an unfinished
    run, or one from before runs said which."""
    kept = (result or {}).get("kept_epoch")
    marks = ["*" if row == kept else "" for row in range(len(history))]
    table = frame_table(history.assign(kept=marks), title="history")
    table.caption = "*: the epoch whose weights were kept" if kept is not None else None
    return table


@app.command()
@reports_errors
def runs(
    out_dir: OutDir = DEFAULT_OUT,
    sort: Annotated[
        Optional[str], typer.Option(help="Sort by a column: valid (best first), seconds, state, epochs_done, a setting")
    ] = None,
    clean: Annotated[
        bool,
        typer.Option(
            "--clean",
            help="Remove the dead run folders (no predictions, no checkpoint, not being written) and list them.",
        ),
    ] = False,
) -> None:
    """One table of every run folder under --out: finished, resumable or dead, arch, size, fold, valid
    error, time, and the settings that differ between the runs."""
    from paddy.runs.listing import listed_runs, remove_dead_runs, runs_frame

    if clean:
        removed = remove_dead_runs(out_dir)
        for run in removed:
            out.print(f"removed {run.path}")
        out.print(f"{len(removed)} dead run folder{'s' * (len(removed) != 1)} removed from {out_dir}")
        return
    out.print(runs_table(runs_frame(listed_runs(out_dir), sort), str(out_dir)))
