"""Everything that talks to Kaggle: credentials, submitting (a CSV or a code competition's notebook),
downloading competition data, private datasets, and notebooks (kernels) pushed, followed and pulled.

The kaggle library prints help and calls exit(1) when credentials are missing, prints some failures
instead of raising them, and raises ValueError for what it refuses; here each becomes one PaddyError.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import requests

from paddy.core.errors import PaddyError
from paddy.data.competition import KAGGLE_INPUT

CREDENTIALS_HINT = (
    "no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or save kaggle.json "
    "from kaggle.com > Settings > API in ~/.kaggle/ (or KAGGLE_CONFIG_DIR)"
)
NETWORK_ERRORS = (requests.RequestException, OSError)


def kaggle_api() -> Any:
    """An authenticated KaggleApi (Kaggle secrets are used inside a Kaggle notebook, via fastkaggle)."""
    from fastkaggle import import_kaggle

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return import_kaggle()
        except SystemExit:
            raise PaddyError(CREDENTIALS_HINT) from None
        except Exception as e:  # kaggle_secrets and config parsing raise plain Exceptions
            raise PaddyError(f"{CREDENTIALS_HINT} ({e})") from None


def submit_csv(csv: Path, message: str, competition: str) -> str:
    """Send the CSV with `competition_submit`; returns Kaggle's answer.

    Every failure (credentials, network, refusal) says where the CSV is kept for a manual upload.
    """
    keep = f"the CSV is kept at {csv} for upload by hand"
    try:
        api = kaggle_api()
    except PaddyError as e:
        raise PaddyError(f"{e}; {keep}") from None
    printed = io.StringIO()  # the client prints upload errors instead of raising them
    try:
        with contextlib.redirect_stdout(printed):
            response = api.competition_submit(str(csv), message, competition, quiet=True)
    except requests.HTTPError as e:
        raise PaddyError(f"Kaggle refused the submission ({e}); {keep}") from None
    except NETWORK_ERRORS as e:
        raise PaddyError(f"cannot reach Kaggle ({type(e).__name__}); {keep}") from None
    if response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        reason = " ".join(printed.getvalue().split()) or "the upload server refused the file"
        raise PaddyError(f"the upload to Kaggle failed ({reason}); {keep}")
    return response.message or "submitted"


@dataclass(frozen=True)
class LeaderboardEntry:
    """One of your submissions as Kaggle scored it (a score is None while pending, or when hidden)."""

    date: str
    file: str
    message: str
    status: str
    public: float | None
    private: float | None


def score_of(text: str | None) -> float | None:
    """Kaggle sends scores as text: '' or None while it scores (or the private one until the end)."""
    try:
        return float(text) if text else None
    except ValueError:
        return None


def leaderboard_entries(competition: str, most: int = 50) -> list[LeaderboardEntry]:
    """Your latest `most` submissions to `competition` with their public and private scores, newest first."""
    api = kaggle_api()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            submissions = api.competition_submissions(competition, page_size=most) or []
    except requests.HTTPError as e:
        raise PaddyError(f"Kaggle refused the submissions of {competition} ({e}); accepted its rules?") from None
    except NETWORK_ERRORS as e:
        raise PaddyError(f"cannot reach Kaggle ({type(e).__name__})") from None
    return [
        LeaderboardEntry(
            f"{s.date:%Y-%m-%d %H:%M}" if s.date else "-",
            s.file_name or "-",
            s.description or "",
            s.status.name.lower(),
            score_of(s.public_score),
            score_of(s.private_score),
        )
        for s in submissions
        if s is not None
    ]


def competition_folder(competition: str, dest: Path, kaggle_input: Path = KAGGLE_INPUT) -> Path:
    """The competition's data: Kaggle's input folder, a previous download, or a new download."""
    on_kaggle = kaggle_input / competition
    if on_kaggle.is_dir():
        return on_kaggle
    target = dest / competition
    if target.is_dir() and any(target.iterdir()):  # an earlier download: unzipped beside it, renamed into place
        return target
    api = kaggle_api()
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{competition}-", dir=dest))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            api.competition_download_files(competition, path=str(staging), quiet=True)
        with zipfile.ZipFile(staging / f"{competition}.zip") as archive:
            archive.extractall(staging / "data")
        (staging / "data").rename(target)
    except requests.HTTPError as e:
        raise PaddyError(f"Kaggle refused the download of {competition} ({e}); accepted the rules?") from None
    except NETWORK_ERRORS as e:
        raise PaddyError(f"cannot download {competition} ({type(e).__name__}): offline?") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def calling_kaggle(action: str) -> Iterator[None]:
    """One PaddyError for whatever `action` meets (a refusal, no network, the client's own ValueError),
    and the client's prints kept off the terminal."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    except requests.HTTPError as e:
        raise PaddyError(f"Kaggle refused to {action} ({e})") from None
    except NETWORK_ERRORS as e:
        raise PaddyError(f"cannot {action}: Kaggle cannot be reached ({type(e).__name__})") from None
    except ValueError as e:  # the client's refusals; their first sentence says it, the rest is advice
        first_sentence = " ".join(str(e).split()).split(". ")[0].rstrip(".")
        raise PaddyError(f"cannot {action}: {first_sentence}") from None


def kaggle_user(api: Any) -> str:
    """The Kaggle user name the credentials belong to (it owns the notebooks and datasets paddy makes)."""
    user = api.get_config_value(api.CONFIG_NAME_USER)
    if not user:
        raise PaddyError("the Kaggle credentials name no user: set KAGGLE_USERNAME (or use kaggle.json)")
    return user


DATASET_METADATA = "dataset-metadata.json"


def upload_private_dataset(api: Any, folder: Path, ref: str, title: str, notes: str) -> str:
    """Upload `folder`'s files (sub-folders zipped) as the PRIVATE dataset `ref`: created the first time,
    a new version after that; returns what was done. fastkaggle's mk_dataset is not used: it makes
    every dataset public, and models and a competition's code must not be."""
    from paddy.core.files import write_json

    write_json(folder / DATASET_METADATA, {"id": ref, "title": title, "licenses": [{"name": "other"}]})
    with calling_kaggle(f"upload the dataset {ref}"):
        exists = dataset_exists(api, ref)
        if exists:
            answer = api.dataset_create_version(str(folder), notes, quiet=True, dir_mode="zip")
        else:
            answer = api.dataset_create_new(str(folder), public=False, quiet=True, dir_mode="zip")
    if answer.error:
        raise PaddyError(f"Kaggle refused the dataset {ref}: {answer.error}")
    return f"{'new version of' if exists else 'created'} private dataset {ref}"


def dataset_exists(api: Any, ref: str) -> bool:
    """Whether the dataset is there (Kaggle answers 404 when it is not)."""
    try:
        api.dataset_status(ref)
    except requests.HTTPError as e:
        if e.response is not None and e.response.status_code == 404:
            return False
        raise
    return True


@dataclass(frozen=True)
class PushedKernel:
    """A notebook version Kaggle accepted and is running."""

    url: str
    version: int | None


def push_kernel(api: Any, folder: Path) -> PushedKernel:
    """Push the kernel folder (kernel-metadata.json and its script) with the client's `kernels_push`.

    fastkaggle's push_notebook is not used: it calls `kernels_push_cli` with the signature kaggle had
    before 1.7 and fails with the client paddy installs, so paddy calls the layer below it."""
    with calling_kaggle(f"push the notebook in {folder}"), contextlib.redirect_stderr(io.StringIO()):
        answer = api.kernels_push(str(folder))
    if answer.error:
        raise PaddyError(f"Kaggle refused the notebook: {answer.error}")
    invalid = [*answer.invalid_dataset_sources, *answer.invalid_competition_sources]
    if invalid:
        raise PaddyError(f"Kaggle could not attach {', '.join(invalid)} to the notebook (names right? rules accepted?)")
    return PushedKernel(answer.url, answer.version_number)


@dataclass(frozen=True)
class KernelStatus:
    """Where a notebook's latest run is: queued, running, complete, error or cancelled."""

    state: str
    failure: str | None

    @property
    def finished(self) -> bool:
        return self.state not in ("queued", "running", "new_script")


def kernel_status(api: Any, kernel: str) -> KernelStatus:
    """The notebook's run state from `kernels_status`, in lower case (`complete`, `error`, ...)."""
    with calling_kaggle(f"read the status of {kernel}"):
        answer = api.kernels_status(kernel)
    return KernelStatus(answer.status.name.lower(), answer.failure_message or None)


def download_kernel_output(api: Any, kernel: str, dest: Path) -> list[Path]:
    """Every output file of the notebook's latest run (and its log) into `dest`."""
    with calling_kaggle(f"download the output of {kernel}"):
        files, _ = api.kernels_output(kernel, str(dest), force=True, quiet=True)
    return [Path(name) for name in files]


def submit_code(api: Any, kernel: str, kernel_version: int | None, competition: str, message: str) -> str:
    """Submit a code competition's notebook (its submission.csv) with `competition_submit_code`."""
    with calling_kaggle(f"submit {kernel} to {competition}"):
        answer = api.competition_submit_code("submission.csv", message, competition, kernel, kernel_version, quiet=True)
    return answer.message or "submitted"
