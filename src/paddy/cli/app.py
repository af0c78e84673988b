"""The `paddy` command: every command group joined into one Typer app, and the console script."""

from __future__ import annotations

import warnings

import typer

from paddy.cli import configs, data, ensemble, kaggle, probe, run, runs, submit, train

app = typer.Typer(
    help="Train, probe, ensemble and submit for Kaggle image competitions (fastai + timm).",
    add_completion=False,
    pretty_exceptions_enable=False,
)


for group in (train, runs, run, configs, ensemble, submit, data, probe):
    app.add_typer(group.app)
app.add_typer(kaggle.app, name="kaggle")


@app.callback()
def paddy() -> None:
    """Train, probe, ensemble and submit for Kaggle image competitions (fastai + timm)."""


def main() -> None:
    """Console-script entry point."""
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated")
    app()
