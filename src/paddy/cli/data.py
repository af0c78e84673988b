"""`paddy setup` and `paddy presize`: the competition data found, downloaded or resized."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer

from paddy.cli.options import DataOption
from paddy.cli.output import out, reports_errors
from paddy.cli.tables import frame_table
from paddy.data.competition import COMPETITION, resolve_data

app = typer.Typer()


@app.command()
@reports_errors
def setup(
    competition: Annotated[str, typer.Argument(help="Kaggle competition slug.")] = COMPETITION,
    dest: Annotated[Path, typer.Option(help="Folder to download and unzip into.")] = Path("."),
) -> None:
    """Find or download the competition data (uses /kaggle/input on Kaggle), and check its layout."""
    from paddy.data.competition import check_layout
    from paddy.kaggle.access import competition_folder

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

    from paddy.data.presize import presize_dataset

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
