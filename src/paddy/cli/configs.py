"""`paddy configs`: the configs that ship with paddy, each run by its name (`paddy run tiny`)."""

from __future__ import annotations

import pandas as pd
import typer

from paddy.cli.output import out, reports_errors
from paddy.cli.tables import frame_table

app = typer.Typer()


@app.command()
@reports_errors
def configs() -> None:
    """List the built-in configs (name and what each trains); give a name wherever a config goes."""
    from paddy.settings.builtin_configs import builtin_configs, builtin_folder

    shipped = pd.DataFrame([{"name": c.name, "description": c.description} for c in builtin_configs()])
    out.print(frame_table(shipped, title=f"built-in configs ({builtin_folder()})"))
    out.print("run one by its name, e.g. paddy run tiny; copy its file to change it")
