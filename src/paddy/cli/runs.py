"""`paddy show`: one run folder's settings, history, outcome and pictures."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer

from paddy.cli.options import DEFAULT_OUT, OutDir
from paddy.cli.output import out, reports_errors
from paddy.cli.tables import frame_table

app = typer.Typer()


@app.command()
@reports_errors
def show(
    run: Annotated[str, typer.Argument(help="Run folder, or its name under --out.")],
    out_dir: OutDir = DEFAULT_OUT,
) -> None:
    """Print a run's settings, history, validation error and where its pictures are."""
    from paddy.runs.lookup import find_run, run_summary

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
