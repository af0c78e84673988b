"""`paddy kaggle push/status/pull/pack-libs`: training and inference notebooks on Kaggle; `paddy kaggle scores`:
your submissions' leaderboard scores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer

from paddy.cli.help import PaddyGroup
from paddy.cli.options import DEFAULT_OUT, OptionalCompetition, OutDir
from paddy.cli.output import err, out, reports_errors
from paddy.cli.tables import frame_table, leaderboard_table
from paddy.core.errors import PaddyError
from paddy.kaggle.kernels import KERNELS_FOLDER, LIBS_SLUG, KaggleGpu
from paddy.kaggle.libs import KAGGLE_PYTHON

app = typer.Typer(help="Train on Kaggle's GPUs and take part in code competitions, from here.", cls=PaddyGroup)


KernelArgument = Annotated[str, typer.Argument(help="The notebook, USER/SLUG (as `paddy kaggle push` printed).")]


KernelsFolder = Annotated[Path, typer.Option("--folder", help="Where notebook folders and pulled outputs are kept.")]


@app.command("push")
@reports_errors
def kaggle_push(
    targets: Annotated[
        Optional[list[str]], typer.Argument(help="The config (TOML) to train; with --inference, finished run folders.")
    ] = None,
    inference: Annotated[
        bool,
        typer.Option(
            "--inference", help="A notebook, internet off, predicting with finished runs (code competitions)."
        ),
    ] = False,
    config: Annotated[
        Optional[Path], typer.Option(help="With --inference: every entry's finished run of this config, weighted.")
    ] = None,
    data: Annotated[
        Optional[Path], typer.Option(help="With --inference --config: the data its runs were trained on.")
    ] = None,
    gpu: Annotated[
        KaggleGpu, typer.Option(help="Kaggle's accelerator: t4x2 (a run on each T4), p100 or none.")
    ] = KaggleGpu.t4x2,
    internet: Annotated[
        bool,
        typer.Option("--internet/--no-internet", help="Internet for training (pretrained weights); inference: off."),
    ] = True,
    title: Annotated[Optional[str], typer.Option(help="Notebook title (default: paddy <config>).")] = None,
    competition: OptionalCompetition = None,
    out_dirs: Annotated[
        Optional[list[Path]], typer.Option("--out", help="With --inference: folder of run folders; repeat.")
    ] = None,
    folder: KernelsFolder = KERNELS_FOLDER,
) -> None:
    """Push a notebook that trains a config on Kaggle's GPU (or, --inference, predicts with your runs).

    It installs paddy offline from your libs dataset (paddy kaggle pack-libs) and writes submission.csv."""
    from paddy.kaggle.kernels import push_inference, push_training

    targets = targets or []
    if not inference and (len(targets) != 1 or config or data or out_dirs):
        raise PaddyError("push takes one config to train, or --inference with run folders or --config")
    with out.status("uploading the models and pushing the notebook" if inference else "pushing the notebook"):
        if inference:
            outs = out_dirs or [DEFAULT_OUT]
            pushed = push_inference(targets, config, data, outs, competition, gpu, title, folder)
        else:
            pushed = push_training(Path(targets[0]), competition, gpu, internet, title, folder)
    print_pushed(pushed, gpu, inference)


def print_pushed(pushed, gpu: KaggleGpu, inference: bool) -> None:
    """What was uploaded and pushed, and the commands that follow the notebook and take its results."""
    if pushed.uploaded:
        out.print(pushed.uploaded)
    if gpu is KaggleGpu.p100:
        err.print("[yellow]warning:[/yellow] Kaggle has retired the P100: the session runs on a T4", highlight=False)
    ref = pushed.kernel.ref
    out.print(f"pushed {ref} version {pushed.pushed.version} ({pushed.folder}): {pushed.pushed.url}")
    out.print(f"follow it: paddy kaggle status {ref} --wait")
    follow_up = f"paddy submit --kernel {ref} --version {pushed.pushed.version}" if inference else "paddy kaggle pull"
    out.print(f"then: {follow_up}" + ("" if inference else f" {ref}"))


@app.command("status")
@reports_errors
def kaggle_status(
    kernel: KernelArgument,
    wait: Annotated[bool, typer.Option("--wait", help="Poll until the run ends.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls, with --wait.")] = 30.0,
) -> None:
    """The notebook's latest run: queued, running, complete, error or cancelled (exit 1 on error)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from paddy.kaggle.kernels import follow_kernel

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=True, disable=not wait) as bar:
        task = bar.add_task(kernel, total=None)
        status = follow_kernel(kernel, wait, interval, lambda s: bar.update(task, description=f"{kernel}: {s.state}"))
    if status.state == "error":
        raise PaddyError(f"{kernel} failed: {status.failure or 'see its log on Kaggle'}")
    out.print(f"{kernel}: {status.state}")
    if status.state == "complete":
        out.print(f"get its runs: paddy kaggle pull {kernel}")


@app.command("pull")
@reports_errors
def kaggle_pull(kernel: KernelArgument, out_dir: OutDir = DEFAULT_OUT, folder: KernelsFolder = KERNELS_FOLDER) -> None:
    """Download a finished notebook's output and add its finished runs to --out.

    A run already in --out is never replaced; `paddy ensemble` and `paddy submit` then go on here."""
    from paddy.kaggle.outputs import pull_kernel

    pulled = pull_kernel(kernel, out_dir, folder)
    rows = [
        *({"run": name, "": f"added to {out_dir}"} for name in pulled.merged),
        *({"run": name, "": f"already in {out_dir}: yours kept"} for name in pulled.already_here),
        *({"run": name, "": "unfinished: left in the output"} for name in pulled.unfinished),
    ]
    if rows:
        out.print(frame_table(pd.DataFrame(rows), title=f"runs of {kernel}"))
    else:
        err.print(f"[yellow]warning:[/yellow] {kernel}'s output has no runs", highlight=False)
    out.print(f"output (log, submission.csv): {pulled.folder}")


@app.command("pack-libs")
@reports_errors
def kaggle_pack_libs(
    dest: Annotated[Path, typer.Option(help="Folder for the wheels (replaced).")] = KERNELS_FOLDER / LIBS_SLUG,
    python_version: Annotated[str, typer.Option(help="Kaggle's Python, whose wheels are packed.")] = KAGGLE_PYTHON,
) -> None:
    """Pack the wheels paddy needs on Kaggle and upload them as your private dataset paddy-libs.

    paddy's own wheel and every dependency but torch and torchvision (Kaggle's stay), for Kaggle's Python:
    paddy's notebooks install from it with the internet off."""
    from paddy.kaggle.kernels import pack_and_upload_libs

    with out.status("building paddy's wheel, downloading the others, uploading them"):
        packed, uploaded = pack_and_upload_libs(dest, python_version)
    out.print(f"{len(packed.wheels)} wheels ({packed.size_mib:.0f} MiB) in {packed.folder}; {uploaded}")


@app.command("scores")
@reports_errors
def kaggle_scores(
    competition: OptionalCompetition = None,
    submissions: Annotated[
        Path, typer.Option(help="paddy submit's folder: its log names the competition when --competition does not.")
    ] = Path("submissions"),
    most: Annotated[int, typer.Option(help="How many of the latest submissions.", min=1, max=100)] = 20,
) -> None:
    """Your latest submissions' public and private scores, beside the CV each paddy message carries."""
    from paddy.kaggle.submit import submission_scores

    slug, entries = submission_scores(competition, submissions, most)
    if not entries:
        out.print(f"no submissions to {slug} yet")
        return
    out.print(leaderboard_table(entries, slug))
