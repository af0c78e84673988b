"""Rich tables and summary lines the CLI prints; kept apart so commands share one style."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd
from rich.table import Table

from paddy.settings.budget import duration_text


def frame_table(frame: pd.DataFrame, title: str | None = None, floats: str = "{:.4f}") -> Table:
    """A rich table of a DataFrame, floats formatted alike so columns compare at a glance."""
    table = Table(title=title)
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left", overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(floats.format(v) if isinstance(v, float) else str(v) for v in row))
    return table


def description_table(description: dict[str, str], root: str) -> Table:
    """The competition as paddy read it: one row per key, so a wrong guess shows before anything trains."""
    table = Table(title=f"data {root}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in description.items():
        table.add_row(key, value)
    return table


STATE_STYLES = {"finished": "green", "resumable": "yellow", "writing": "cyan", "lr-find": "blue", "dead": "red"}


def runs_table(frame: pd.DataFrame, out_dir: str) -> Table:
    """`paddy runs`: one row per run folder, its state coloured, '-' where a value is missing (an unfinished
    run has no time, and its best epoch so far is marked); the columns after `seconds` are the settings that
    differ between the runs. The metric heads the score's column when every run shares it, else it has a
    column of its own."""
    unfinished = (frame["state"] != "finished") & frame["valid"].notna()
    so_far = "; *: an unfinished run's best epoch so far" if unfinished.any() else ""
    caption = f"{len(frame)} run folder{'s' * (len(frame) != 1)}{so_far}"
    table = Table(title=f"runs in {out_dir}", caption=caption)
    metrics = set(frame["metric"].dropna())
    shown = [column for column in frame.columns if column != "metric" or len(metrics) > 1]
    headers = {"valid": valid_header(metrics)}
    for column in shown:
        numeric = column in ("epochs_done", "valid", "seconds")
        table.add_column(headers.get(column, column), justify="right" if numeric else "left", overflow="fold")
    for row, mark in zip(frame.to_dict("records"), unfinished.map({True: "*", False: ""})):
        cells = {**row, "state": f"[{STATE_STYLES[row['state']]}]{row['state']}[/]"}
        cells["metric"] = missing_or(row["metric"], str)
        cells["valid"] = missing_or(row["valid"], "{:.4f}".format) + mark
        cells["seconds"] = missing_or(row["seconds"], duration_text)
        table.add_row(*(str(cells[column]) for column in shown))
    return table


def valid_header(metrics: Iterable[str | None]) -> str:
    """A validation score's column, headed by the metric its rows share ("valid accuracy": a lower "valid_error"
    misread a higher-is-better metric); "valid" when they share none."""
    shared = {metric for metric in metrics if metric}
    return f"valid {shared.pop()}" if len(shared) == 1 else "valid"


def missing_or(value, show: Callable[[float], str]) -> str:
    """A number shown, or '-' where there is none."""
    return "-" if value is None or pd.isna(value) else show(value)


def run_table(outcomes) -> Table:
    """One row per entry of a `paddy run`: what happened, its validation score (headed by its metric), accum,
    and the time its training, pictures and TTA took (recorded, for a skipped entry; '-' where there is none)."""
    valid = valid_header(o.metric for o in outcomes)
    frame = pd.DataFrame(
        [
            {
                "#": o.index,
                "model": o.entry.describe(),
                "run": o.run.name,
                "status": o.status,
                "accum": "-" if o.accum is None else str(o.accum),
                valid: "-" if o.valid_error is None else f"{o.valid_error:.4f}",
                "train+TTA": "-" if o.seconds is None else f"{o.seconds:.1f} s",
            }
            for o in outcomes
        ]
    )
    return frame_table(frame, title="paddy run")


def fp32_estimate(trial, record) -> str:
    """A 16-bit estimate's fp32 figure, as a peak (the same CUDA context allowance added)."""
    if "tensors_mib_fp32" not in trial.parts:
        return "-"
    return f"{trial.parts['tensors_mib_fp32'] + record.context_allowance_mib:.0f}"


def speed_cell(trial) -> str:
    """A try's training images/s, '-' where it ran out of memory."""
    return f"{trial.parts['images_per_s']:.1f}" if "images_per_s" in trial.parts else "-"


def probe_table(record) -> Table:
    """One row per accum a memory probe tried; the caption says what the peak figures are
    (a measurement, or an estimate and how it was made) and which accum was chosen."""
    in_16_bit = any("tensors_mib_16bit" in t.parts for t in record.trials)
    speed_of = next((t.parts["speed_of"] for t in record.trials if "speed_of" in t.parts), "")
    trials = pd.DataFrame(
        [
            {
                "accum": t.accum,
                "per-step batch": t.step_bs,
                f"peak MiB ({record.kind})": "out of memory" if t.out_of_memory else f"{t.peak_mib:.0f}",
                **({"fp32 estimate MiB": fp32_estimate(t, record)} if in_16_bit else {}),
                **({f"images/s ({speed_of})": speed_cell(t)} if speed_of else {}),
                "fits": "yes" if t.fits else "no",
            }
            for t in record.trials
        ]
    )
    budget, headroom = record.key["budget_mib"], record.headroom
    title = f"{record.describe()}: limit {record.limit_mib:.0f} MiB = {budget:g} MiB less {headroom:.0%}"
    table = frame_table(trials, title=title)
    if record.kind == "estimate":
        how = (
            "ESTIMATE for a GPU, not a measurement: peak bytes of live tensors on the CPU "
            f"({'in 16-bit autocast, as the GPU run in fp16; the fp32 figure beside it' if in_16_bit else 'fp32'}) "
            f"+ {record.context_allowance_mib} MiB CUDA context allowance"
        )
    else:
        how = f"measured on {record.device}: caching allocator peak + memory outside it (NVML)"
    last = record.trials[-1]
    verdict = (
        f"chosen accum: {record.accum}"
        if record.accum
        else f"does not fit even at accum {last.accum} (per-step batch {last.step_bs})"
    )
    table.caption = f"{how}\n{verdict}"
    return table


def score_cells(scores, metric) -> dict[str, str]:
    """The CV metric ("CV error" for the error rate) and log loss beside it (unless it is the metric), or '-'
    where there is none."""
    header = "CV error" if metric == "error_rate" else f"CV {metric}"
    cells = {header: "-" if scores is None else f"{scores.value:.4f}"}
    if metric == "log_loss":
        return cells
    log_loss = None if scores is None else scores.log_loss
    return {**cells, "CV log loss": "-" if log_loss is None else f"{log_loss:.4f}"}


def lines_metric(lines) -> str:
    """The metric of the scored lines of one table (all share it); the error rate where none is scored."""
    return next((line.scores.metric for line in lines if line.scores is not None), "error_rate")


def entries_cv_table(lines) -> Table:
    """Each k-fold entry's CV score (every fold's out-of-fold predictions together) beside the mean of
    its folds' own validation errors; the caption says why a score is missing."""
    metric = lines_metric(lines)
    frame = pd.DataFrame(
        [
            {
                "#": line.index,
                "model": line.entry.describe(),
                "folds": line.entry.folds,
                **score_cells(line.scores, metric),
                f"mean fold {valid_header([metric])}": missing_or(line.mean_valid_error, "{:.4f}".format),
            }
            for line in lines
        ]
    )
    table = frame_table(frame, title="cross-validation (out-of-fold TTA)")
    table.caption = "\n".join(f"#{line.index}: no CV score: {line.why}" for line in lines if line.why) or None
    return table


def members_table(members) -> Table:
    """An ensemble's members: what each trained, its validation score (headed by the metric) and weight."""
    valid = valid_header(member.preds.meta.get("metric") for member in members)
    frame = pd.DataFrame([member.describe() for member in members]).rename(columns={"valid_error": valid})
    return frame_table(frame, title=f"ensemble of {len(members)} members")


def cv_table(report) -> Table:
    """Members' and the ensemble's CV scores, the weights of each weighting, and why a score is missing."""
    lines = [*report.members, *report.ensemble]
    metric = lines_metric(lines)
    rows = [
        {
            "": line.name,
            "weights": "-" if line.weights is None else " / ".join(f"{w:.3g}" for w in line.weights),
            **score_cells(line.scores, metric),
            "note": line.why or "",
        }
        for line in lines
    ]
    return frame_table(pd.DataFrame(rows), title="cross-validation (out-of-fold TTA)")


def time_plan_table(planned, budget_s: float) -> Table:
    """Each entry's runs left, the speed its probe timed (and on what), and its expected time; the
    caption adds them up against the budget."""
    frame = pd.DataFrame(
        [
            {
                "#": p.index,
                "model": p.entry.describe(),
                "runs left": p.runs_left,
                "images/s": f"{p.images_per_s:.1f}",
                "timed on": p.speed_of,
                "expected": duration_text(p.seconds),
            }
            for p in planned
        ]
    )
    table = frame_table(frame, title="time plan")
    total = sum(p.seconds for p in planned)
    table.caption = (
        f"about {duration_text(total)} in all, for a budget of {duration_text(budget_s)}: epochs x training images "
        "/ images/s, plus validation and TTA at 3x that speed; speeds timed on a CPU are not a GPU's"
    )
    return table


def leaderboard_table(entries, competition: str) -> Table:
    """Your submissions newest first: when, the message (paddy's names the members and their CV), status and
    the public and private scores ('-' while Kaggle scores them, or until the competition ends)."""
    frame = pd.DataFrame(
        [
            {
                "date": e.date,
                "message": e.message,
                "status": e.status,
                "public": missing_or(e.public, "{:.5f}".format),
                "private": missing_or(e.private, "{:.5f}".format),
            }
            for e in entries
        ]
    )
    return frame_table(frame, title=f"your submissions to {competition}")
