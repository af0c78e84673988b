"""`paddy setup`, `paddy demo` and `paddy presize`: the competition data found, downloaded, made or resized."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Optional

import pandas as pd
import typer

from paddy.cli.options import BadImagesOption, DataOption, with_competition_options
from paddy.cli.output import err, out, progress_bar, reports_errors
from paddy.cli.tables import description_table, frame_table
from paddy.data.competition import COMPETITION, CompetitionData, check_layout
from paddy.data.demo_layouts import LAYOUTS
from paddy.orchestration.selection import data_source
from paddy.settings.competition import CompetitionSpec
from paddy.settings.config_file import load_config
from paddy.settings.entry import BadImages

DemoLayout = StrEnum("DemoLayout", {name.replace("-", "_"): name for name in LAYOUTS})  # typer's choices

app = typer.Typer()


@app.command()
@reports_errors
def setup(
    competition: Annotated[str, typer.Argument(help="Kaggle competition slug.")] = COMPETITION,
    dest: Annotated[Path, typer.Option(help="Folder to download and unzip into.")] = Path("."),
) -> None:
    """Find or download the competition data (uses /kaggle/input on Kaggle), and check its layout."""
    from paddy.kaggle.access import competition_folder

    print_found(check_layout(competition_folder(competition, dest), CompetitionSpec(slug=competition)))


def print_found(found: CompetitionData) -> None:
    """The data as paddy read it, and the command that trains on it."""
    out.print(description_table(found.description(), str(found.root)))
    out.print(f"Train with: paddy train --data {found.root}")


@app.command()
@reports_errors
def demo(
    layout: Annotated[DemoLayout, typer.Argument(help="Which competition's layout (and target kind) to copy.")],
    dest: Annotated[Path, typer.Option(help="Folder to make it in, under the competition's name.")] = Path("demo"),
) -> None:
    """Make a small demo competition in the layout of a real one (a CSV of labels, its target kind, metric
    and sample submission), to try paddy on before the real data."""
    from paddy.data.demo_layouts import layout_spec, make_layout

    print_found(check_layout(make_layout(str(layout), dest / str(layout_spec(str(layout)).slug))))


@app.command()
@reports_errors
@with_competition_options
def presize(
    dest: Annotated[Path, typer.Argument(help="Folder for the resized copy (created; re-running resumes).")],
    competition: dict[str, Any],
    data: DataOption = None,
    config: Annotated[
        Optional[Path], typer.Option(help="Config whose data and [competition] say what to copy (flags over it).")
    ] = None,
    longest: Annotated[int, typer.Option(help="Longest side in pixels; smaller images are copied as they are.")] = 256,
    quality: Annotated[int, typer.Option(help="JPEG quality, 1 to 95.")] = 90,
    workers: Annotated[
        Optional[int], typer.Option(help="Processes (default: every available core; 0: this process).")
    ] = None,
    bad_images: BadImagesOption = BadImages.fail,
) -> None:
    """Write a resized copy of the competition images (same layout, only what is read: no DICOM or TFRecord
    folders), so decoding stops starving training; the copy is read as its source was."""
    from paddy.data.presize import presize_dataset

    source, spec = data_source(data, load_config(config) if config else None, competition)
    with progress_bar("presize", err) as update:
        report = presize_dataset(source, dest, longest, quality, workers, update, bad_images, spec)
    side = report.pixels_side
    made = "written from pixels" if side else "resized"
    counts = pd.DataFrame([{made: report.resized, "copied": report.copied, "already done": report.skipped}])
    shown = f"{side}x{side} px images" if side else f"longest {longest} px"
    out.print(frame_table(counts, title=f"{source} -> {dest} ({shown})"))
    if report.stale_removed:
        out.print(f"removed {report.stale_removed} half-written temp files an interrupted presize left")
    if report.unreadable:
        out.print(
            f"[yellow]{report.unreadable} unreadable training images[/yellow] copied as they are: "
            f"train on the copy with --bad-images skip"
        )
    if side:
        out.print(f"train on it: paddy train --data {dest} (images of {side}x{side} px: give --size to suit the model)")
        return
    out.print(f"train on it: paddy train --data {dest} --item-size {longest} (a larger --item-size only upsamples)")
