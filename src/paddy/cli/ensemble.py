"""`paddy ensemble` and `paddy predict`: finished runs put together, and any folder predicted."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from paddy.cli.options import DEFAULT_OUT, DataOption, OutDir
from paddy.cli.output import err, out, reports_errors
from paddy.cli.tables import cv_table, members_table
from paddy.settings.config_file import load_config

app = typer.Typer()
NO_CROSS_VALIDATION = "no cross-validation: no member was trained with folds (paddy train --folds K, or folds = K)"


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
    from paddy.ensembling.average import ENSEMBLE_FILE, build_ensemble, parse_weights

    outs = out_dirs or [DEFAULT_OUT]
    target = dest or outs[0] / ENSEMBLE_FILE
    chosen = load_config(config) if config else None
    _, members, report = build_ensemble(
        outs, runs, parse_weights(weight or []), chosen, target, data, fit_weights=fit_weights
    )
    out.print(members_table(members))
    if report.without_folds:
        out.print(NO_CROSS_VALIDATION)
    else:
        out.print(cv_table(report))
    if advice := report.fitting_does_not_help():
        err.print(f"[yellow]warning:[/yellow] {escape(advice)}", highlight=False)
    out.print(f"ensemble predictions: {target}")


@app.command("predict")
@reports_errors
def predict_images(
    images: Annotated[
        list[Path],
        typer.Option(help="Folder of images to predict (no training data needed); repeat it for a split test set."),
    ],
    runs: Annotated[
        Optional[list[str]],
        typer.Argument(help="Finished runs (folder names under --out, or paths), averaged. Default: all finished."),
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
    force: Annotated[bool, typer.Option("--force", help="Replace earlier predictions at --dest.")] = False,
) -> None:
    """Predict any folder of images with saved models: probabilities (safetensors) and a readable CSV."""
    from paddy.ensembling.predict import predict

    chosen = load_config(config) if config else None
    preds, written = predict(runs or [], images, out_dir, dest, tta, chosen, trained_on, replace_earlier=force)
    runs_used = ", ".join(preds.run_names())
    out.print(f"{len(preds.image_ids)} images predicted by {runs_used}: {written} and {written.with_suffix('.csv')}")
