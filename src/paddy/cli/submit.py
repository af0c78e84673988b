"""`paddy submit`: the checked submission CSV sent to Kaggle, or a code competition's notebook."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from paddy.cli.options import DEFAULT_OUT, OptionalCompetition, OutDir
from paddy.cli.output import out, reports_errors
from paddy.core.errors import PaddyError
from paddy.data.competition import competition_slug

app = typer.Typer()


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
    competition: OptionalCompetition = None,
    message: Annotated[
        Optional[str], typer.Option(help="Submission message (default: the members and their CV or validation score).")
    ] = None,
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
    from paddy.kaggle.submit import prepare_submission, send_code_submission, send_submission

    if kernel is not None:
        if run or predictions or dry_run:
            raise PaddyError("--kernel submits the notebook's own submission.csv: no --run, --predictions or --dry-run")
        slug = competition_slug(competition, None)
        out.print(f"Kaggle: {send_code_submission(kernel, version, slug, message, submissions)}")
        return
    if version is not None:
        raise PaddyError("--version goes with --kernel")
    made, preds = prepare_submission(out_dir, run, predictions, data, submissions, message)
    out.print(f"wrote {made.path} ({made.rows} rows, checked against {made.sample.name})")
    if dry_run:
        out.print(f"dry run: not sent. Message would be: {made.message}")
        return
    out.print(f"Kaggle: {send_submission(made, preds, competition_slug(competition, preds.meta.get('competition')))}")
