"""`paddy probe-memory`: the accum that fits each model in a GPU memory budget."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from paddy.cli.options import DEFAULT_OUT, BadImagesOption, takes_budget, with_model_options
from paddy.cli.output import announce, out, reports_errors
from paddy.orchestration.selection import ModelChoice
from paddy.settings.entry import BadImages

app = typer.Typer()


# What a memory probe takes no notice of: it tries every accum itself, trains two steps of the unfrozen
# model at `size` on a subset, and keeps nothing.
PROBE_IGNORES = ("accum", "epochs", "lr", "finetune", "seed", "folds", "fold", "fold_seed", "sizes", "trackers")


@app.command("probe-memory")
@reports_errors
@functools.partial(with_model_options, whole_config=True, ignored=PROBE_IGNORES)
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

    from paddy.cli.tables import probe_table
    from paddy.memory.search import probe_memory as probe_entries
    from paddy.runs.probes import PROBES_FILE

    announce(model)

    path = out_dir / PROBES_FILE
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=True) as bar:
        task = bar.add_task("probing", total=None)

        def show_trial(index: int, entry, accum: int) -> None:
            where = f"entry {index} of 0-{len(model.entries) - 1}: {entry.describe()} bs {entry.bs}"
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
