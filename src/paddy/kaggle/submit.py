"""Building a submission CSV that Kaggle will accept, and keeping a log of what was sent.

The CSV copies sample_submission.csv exactly (header, ids, order) and fills in its value columns in the
sample's own format (paddy.data.submission_format), joined on the images' file names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from paddy.core.errors import PaddyError
from paddy.core.files import atomic_write_text
from paddy.data.competition import competition_slug, ids_fingerprint, resolve_data
from paddy.data.demo import is_demo_data
from paddy.data.submission_format import (
    check_submission,
    format_submission,
    ids_way,
    infer_sample_format,
    named_sample,
    read_sample,
)
from paddy.ensembling.average import ENSEMBLE_FILE, Member
from paddy.kaggle.access import LeaderboardEntry, kaggle_api, leaderboard_entries, submit_code, submit_csv
from paddy.runs.lookup import find_run
from paddy.runs.predictions import Predictions, load_predictions
from paddy.scoring.recorded import recorded_scoring
from paddy.settings.competition import MetricName, TargetKind, recorded_spec

LOG_FILE = "log.jsonl"


@dataclass(frozen=True)
class Submission:
    """A validated submission file and the message it will be sent with."""

    path: Path
    message: str
    rows: int
    sample: Path  # the sample submission it was checked against
    demo: bool = False  # made from paddy's demo data: never sent to a competition


def recorded_kind(preds: Predictions) -> TargetKind:
    """The predictions' target kind; files of older releases record none and are single-label."""
    kind = preds.meta.get("kind", TargetKind.single)
    if kind not in TargetKind.__members__:
        raise PaddyError(f"predictions record an unknown target kind {kind!r} (known: {', '.join(TargetKind)})")
    return TargetKind(kind)


def recorded_metric(preds: Predictions) -> MetricName | None:
    """The metric the predictions were scored with (an ensemble's CV, or the run's), when recorded."""
    cv = preds.meta.get("cv") or {}
    metric = cv.get("metric", preds.meta.get("metric"))
    return MetricName(metric) if metric in MetricName.__members__ else None


def build_submission(preds: Predictions, sample: pd.DataFrame, id_files: Mapping[str, str] | None) -> pd.DataFrame:
    """The sample's rows, in its order and under its header, with each image's values in the sample's own
    format (a class, probabilities, a number, a list of labels), checked before anyone writes them. The ids
    join on the test files' names (`id_files`' where test metadata names them)."""
    kind, named = recorded_kind(preds), named_sample(sample, id_files)
    fmt = infer_sample_format(named, kind, preds.vocab, list(preds.image_ids), recorded_metric(preds))
    decisions = preds.meta.get("decisions")
    submission = format_submission(named, fmt, preds.image_ids, preds.probs, preds.vocab, kind, decisions)
    submission[fmt.id_column] = sample[fmt.id_column].to_numpy()  # the sample's own ids again
    check_submission(submission, sample, fmt, preds.vocab)
    return submission


def predictions_source(out: Path, run: str | None, predictions: Path | None) -> Path:
    """The predictions to submit: one run's, a given file, or the ensemble under `out`."""
    if run and predictions:
        raise PaddyError("give --run or --predictions, not both")
    if run:
        return find_run(run, out, finished=True).predictions_path
    if predictions is None and not (out / ENSEMBLE_FILE).is_file():
        raise PaddyError(
            f"no predictions file at {out / ENSEMBLE_FILE}: make the ensemble with paddy ensemble --out {out} first, "
            "or submit one run's with --run NAME"
        )
    return predictions or out / ENSEMBLE_FILE


def sample_for(preds: Predictions, data: Path | None, source: Path) -> tuple[Path, Mapping[str, str] | None]:
    """The sample submission of the data the predictions were made from (or of `data`), refused if
    it lists other test images: a submission checked against another dataset's sample means nothing; and
    each id's test file, where the data's test metadata names them."""
    recorded = preds.meta.get("data")
    if data is None and recorded is None:
        raise PaddyError(f"{source} does not record its data (made before paddy 0.2): pass --data")
    found = resolve_data(data or Path(recorded), recorded_spec(preds.meta.get("competition")))
    sample_ids = list(named_sample(read_sample(found.sample_submission), found.sample_id_files).iloc[:, 0])
    fingerprint = preds.meta.get("test_ids_sha256", ids_fingerprint(preds.image_ids))
    if ids_way(sample_ids, list(preds.image_ids)) is None or fingerprint != ids_fingerprint(preds.image_ids):
        raise PaddyError(
            f"{found.sample_submission} lists other test images than {source} was predicted on "
            f"(data {recorded}); pass the --data the predictions were made from"
        )
    return found.sample_submission, found.sample_id_files


def submission_path(folder: Path) -> Path:
    """A time-stamped CSV name, so earlier submissions stay next to the log that names them."""
    return folder / f"submission-{datetime.now():%Y%m%d-%H%M%S}.csv"


def member_rows(preds: Predictions) -> list[dict[str, Any]]:
    """The ensemble's members as recorded, or the single run the predictions came from."""
    return preds.meta.get("members") or [Member(str(preds.meta.get("run")), preds, 1.0).describe()]


def default_message(preds: Predictions) -> str:
    """'paddy: <members>' so the leaderboard entry says which models scored it."""
    parts = []
    for member in member_rows(preds):
        weight = "" if member["weight"] == 1 else f" w{member['weight']:g}"
        parts.append(f"{member['arch']} {member['size']} {member['item']}{weight}")
    return "paddy: " + "; ".join(parts) + score_text(preds.meta)


def score_text(meta: dict[str, Any]) -> str:
    """The score the message carries: the ensemble's CV, else one run's validation score on its metric."""
    if meta.get("cv"):
        return cv_text(meta["cv"])
    if meta.get("ensemble") or meta.get("valid_error") is None:
        return ""
    return f" | valid {recorded_scoring(meta).metric} {meta['valid_error']:.4f}"


def cv_text(cv: dict[str, Any]) -> str:
    """The ensemble's CV score for the message: its metric, or the error and log loss older releases recorded."""
    if "metric" in cv:
        return f" | CV {cv['metric']} {cv['value']:.4f}"
    return f" | CV error {cv['error']:.4f}, log loss {cv['log_loss']:.4f}"


def write_submission(
    preds: Predictions, sample_csv: Path, dest: Path, message: str | None, id_files: Mapping[str, str] | None = None
) -> Submission:
    """Build, check and atomically write the submission CSV: the sample's ids in its order, values for each."""
    submission = build_submission(preds, read_sample(sample_csv), id_files)
    atomic_write_text(dest, submission.to_csv(index=False))
    demo = bool(preds.meta.get("demo")) or is_demo_data(sample_csv.parent)
    return Submission(dest, message or default_message(preds), len(submission), sample_csv, demo)


def prepare_submission(
    out: Path, run: str | None, predictions: Path | None, data: Path | None, folder: Path, message: str | None
) -> tuple[Submission, Predictions]:
    """The checked submission CSV of the ensemble (or a run, or a file) under `folder`, and its predictions."""
    source = predictions_source(out, run, predictions)
    preds = load_predictions(source)
    sample_csv, id_files = sample_for(preds, data, source)
    return write_submission(preds, sample_csv, submission_path(folder), message, id_files), preds


def log_submission(log: Path, sent: str, message: str, members: list[Any], answer: str, competition: str) -> Path:
    """Append one JSON line (time, what was sent, message, members, Kaggle's answer) to the log, atomically."""
    record = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "competition": competition,
        "file": sent,
        "message": message,
        "members": members,
        "answer": answer,
    }
    previous = log.read_text() if log.is_file() else ""
    return atomic_write_text(log, previous + json.dumps(record) + "\n")


def send_submission(submission: Submission, preds: Predictions, competition: str) -> str:
    """Submit the CSV to Kaggle and log the answer next to it; returns Kaggle's answer. Predictions of
    paddy's demo data are refused: they would be scored against another competition's test images."""
    if submission.demo:
        raise PaddyError(
            f"{submission.path} was predicted on paddy's demo data, not on {competition}'s: train on the "
            f"competition's data first (paddy setup {competition}); the CSV is kept to look at"
        )
    answer = submit_csv(submission.path, submission.message, competition)
    log = submission.path.parent / LOG_FILE
    log_submission(log, str(submission.path), submission.message, member_rows(preds), answer, competition)
    return answer


def send_code_submission(
    kernel: str, kernel_version: int | None, competition: str, message: str | None, folder: Path
) -> str:
    """Submit a code competition's notebook (Kaggle re-runs it on the hidden test set) and log it."""
    version = f" version {kernel_version}" if kernel_version else " (latest version)"
    message = message or f"paddy: notebook {kernel}{version}"
    answer = submit_code(kaggle_api(), kernel, kernel_version, competition, message)
    log_submission(folder / LOG_FILE, f"notebook {kernel}{version}", message, [], answer, competition)
    return answer


def last_logged_competition(log: Path) -> str | None:
    """The competition of the newest submission in the log, or None (no log yet, or a damaged last line)."""
    lines = log.read_text().splitlines() if log.is_file() else []
    try:
        return json.loads(lines[-1]).get("competition") if lines else None
    except ValueError:
        return None


def submission_scores(competition: str | None, submissions: Path, most: int) -> tuple[str, list[LeaderboardEntry]]:
    """Your latest submissions with their leaderboard scores: to `competition`, else to the one paddy last
    submitted to from `submissions`, else the paddy competition."""
    slug = competition_slug(competition or last_logged_competition(submissions / LOG_FILE), None)
    return slug, leaderboard_entries(slug, most)
