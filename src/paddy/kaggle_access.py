"""Everything that talks to Kaggle: credentials, submitting, downloading competition data.

The kaggle library prints help and calls exit(1) when credentials are missing; here that
becomes one PaddyError with the fix, and network failures say where the CSV was kept.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import requests

from paddy.data import KAGGLE_INPUT
from paddy.errors import PaddyError

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


def competition_folder(competition: str, dest: Path, kaggle_input: Path = KAGGLE_INPUT) -> Path:
    """The competition's data: Kaggle's input folder, a previous download, or a new download."""
    on_kaggle = kaggle_input / competition
    if on_kaggle.is_dir():
        return on_kaggle
    target = dest / competition
    if (target / "sample_submission.csv").is_file():
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
