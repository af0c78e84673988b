"""The `paddy` command: every command group joined into one Typer app, and the console script."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer

from paddy.cli import configs, data, ensemble, kaggle, probe, run, runs, submit, train
from paddy.cli.help import PaddyGroup, use_paddy_help
from paddy.core.processes import collect_rarely

app = typer.Typer(
    help="Train, probe, ensemble and submit for Kaggle image competitions (fastai + timm).",
    cls=PaddyGroup,
    pretty_exceptions_enable=False,
)


for group in (train, runs, run, configs, ensemble, submit, data, probe):
    app.add_typer(group.app)
app.add_typer(kaggle.app, name="kaggle")
use_paddy_help(app)


def print_version(asked: bool) -> None:
    """--version: paddy's version (the paddy-trainer distribution's), then exit."""
    if asked:
        from paddy import __version__

        print(f"paddy {__version__}")
        raise typer.Exit()


@app.callback()
def paddy(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=print_version, help="Print paddy's version and exit.")
    ] = False,
) -> None:
    """Train, probe, ensemble and submit for Kaggle image competitions (fastai + timm)."""


def main() -> None:
    """Console-script entry point."""
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated")
    collect_rarely()
    app()
