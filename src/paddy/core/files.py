"""Files paddy writes and reads: atomic writes with the user's permissions, and reads that fail
with one line naming the file instead of a traceback."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import pandas as pd

from paddy.core.errors import PaddyError

TEMP_SUFFIX = ".tmp"


class FileNotWritten(PaddyError):
    """An atomic write failed (disk full, read-only folder): `reason` says why, and `path` is unchanged."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot write {path}: {reason}")
        self.path, self.reason = path, reason


def user_file_mode() -> int:
    """The mode a plain `open(path, "w")` would give: 0666 less the umask (mkstemp gives 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def temp_name_prefix(path: Path) -> str:
    """Temporary files are `.NAME.<random>.tmp` beside `path`, so leftovers of a kill can be found."""
    return f".{path.name}."


def atomic_write_with(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Let `write` fill a temp file in the same folder, fsync, then rename it over `path`: a reader
    never sees half a file, and a large one (a checkpoint) is streamed, not held twice in memory.
    Disk full or a read-only folder is one PaddyError naming the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_name_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise FileNotWritten(path, e.strerror or str(e)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), user_file_mode())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise FileNotWritten(path, e.strerror or str(e)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def folder_written_whole(dest: Path) -> Iterator[Path]:
    """A temp folder beside `dest` to fill; when the block ends well it becomes `dest` with one rename
    (an older `dest` is removed first), otherwise it is removed: `dest` is never half written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=temp_name_prefix(dest), suffix=TEMP_SUFFIX, dir=dest.parent))
    try:
        yield staging
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """`data` written atomically (see atomic_write_with)."""
    return atomic_write_with(path, lambda f: f.write(data))


def remove_stale_temp_files(folder: Path) -> int:
    """Delete the temp files an interrupted atomic write left in `folder` (and below); returns how many."""
    stale = [p for p in folder.rglob(f".*{TEMP_SUFFIX}") if p.is_file()] if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file paddy wrote; a missing, damaged or non-UTF-8 one is one PaddyError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PaddyError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PaddyError(f"{path} is damaged or unreadable ({type(e).__name__}: {e}); delete it or its run") from None


def read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    """A CSV file as a DataFrame; an empty, damaged or non-UTF-8 one is one PaddyError naming it."""
    try:
        return pd.read_csv(path, encoding="utf-8", **kwargs)
    except FileNotFoundError:
        raise PaddyError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise PaddyError(f"cannot read {path} ({type(e).__name__}: {str(e).strip().splitlines()[0]})") from None
