"""Corrupt images: found with fastai's parallel verify_images before anything trains; a corrupt test
image always fails, corrupt training images fail or are skipped.

Decoding every image costs 1.4-1.75 CPU-ms each (22 CPU-s for the competition's 16.5k), so each
result is recorded in `<out>/.image-checks.json`, keyed by the file's path, size, mtime and ctime: later
commands, `paddy run --gpus` workers and data-parallel processes with the same `--out` decode only
the images that are new or changed since. The check reports its progress (core.progress), and an
interrupted one records what it had decoded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from paddy.core.errors import PaddyError
from paddy.core.files import write_json
from paddy.core.progress import report_progress
from paddy.data.competition import CompetitionData
from paddy.settings.entry import BadImages

IMAGE_CHECKS_FILE = ".image-checks.json"


def image_checks_path(out: Path) -> Path:
    """Where the image checks of every dataset trained into `out` are recorded."""
    return out / IMAGE_CHECKS_FILE


def file_stamp(path: Path) -> list[int] | None:
    """What says a file is still the one that was checked: its size, mtime and ctime (a copy that
    keeps size and mtime, as `cp -p` or `rsync -t` make, still gets a new ctime). None for a file
    that cannot be stat'ed: decoding it reports it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def recorded_checks(record: Path) -> dict[str, list]:
    """absolute path -> [size, mtime_ns, ctime_ns, readable] of every image checked before; a missing
    or damaged record is empty (it only saves time: what it lacks is decoded again)."""
    try:
        checks = json.loads(record.read_text(encoding="utf-8"))["images"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return {}
    return checks if isinstance(checks, dict) else {}


def record_checks(record: Path, found: dict[str, list]) -> None:
    """Add `found` to the record under a file lock, merged with what other processes wrote meanwhile;
    the file is replaced atomically, so a reader never sees half of it. An output folder that cannot
    be written (`paddy predict --out` on a read-only Kaggle input) records nothing: the check stands."""
    from filelock import FileLock

    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{record}.lock", timeout=60):
            write_json(record, {"images": {**recorded_checks(record), **found}})
    except (OSError, PaddyError):
        pass


# images a pool worker decodes per task: fastai's verify_images sends one task per image and takes 1.3x
# the time (BENCHMARKS.md 6)
CHECK_CHUNK = 64
CHECKING = "checking images"  # what the progress reports name


def decode_checks(paths: list[Path]) -> Iterator[bool]:
    """Whether PIL decodes each image, in order, as they are decoded: fastai's verify_image in fastcore's
    process pool, as fastai's verify_images runs it, but in chunks and streamed. verify_images answers only
    at the end: a long check could show no progress, and an interrupted one would keep nothing. Left
    early (Ctrl-C), the chunks not started are cancelled rather than waited for."""
    from fastai.vision.utils import verify_image
    from fastcore.parallel import ProcessPoolExecutor

    pool = ProcessPoolExecutor()
    try:
        yield from pool.map(verify_image, paths, chunksize=CHECK_CHUNK)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def reported_decode_checks(paths: list[Path]) -> Iterator[tuple[Path, bool]]:
    """Each image of `paths` with whether it decodes, reporting the progress every chunk."""
    for done, (path, readable) in enumerate(zip(paths, decode_checks(paths) if paths else ()), 1):
        yield path, readable
        if done % CHECK_CHUNK == 0 or done == len(paths):
            report_progress(CHECKING, done, len(paths))


def stamped(found: dict[Path, bool], stamps: dict[Path, list[int] | None]) -> dict[str, list]:
    """Decoded results as the record keeps them: absolute path -> [size, mtime_ns, ctime_ns, readable]."""
    return {os.path.abspath(p): [*stamps[p], ok] for p, ok in found.items() if stamps.get(p)}


def checked_images(paths: list[Path] | tuple[Path, ...], record: Path | None) -> tuple[list[Path], dict[str, list]]:
    """The images of `paths` PIL cannot decode, in their order, and the results decoded now for the
    record. An image `record` holds with its current size, mtime and ctime is not decoded again (the
    stamp is taken before decoding, so a file changed meanwhile is decoded again next time). Interrupted,
    what was decoded so far is recorded before the interrupt goes on."""
    checks = recorded_checks(record) if record is not None else {}
    stamps = {p: file_stamp(p) for p in paths} if record is not None else {}
    readable: dict[Path, bool] = {}
    for p in paths:
        seen = checks.get(os.path.abspath(p))
        if isinstance(seen, list) and len(seen) == 4 and seen[:3] == stamps[p]:
            readable[p] = bool(seen[3])
    found: dict[Path, bool] = {}
    try:
        found.update(reported_decode_checks([p for p in paths if p not in readable]))
    except KeyboardInterrupt:
        if record is not None and found:
            record_checks(record, stamped(found, stamps))
        raise
    readable |= found
    return [p for p in paths if not readable[p]], stamped(found, stamps)


def unreadable_images(paths: list[Path] | tuple[Path, ...], record: Path | None = None) -> list[Path]:
    """The images of `paths` PIL cannot decode, in their order; with a `record` file, those it holds
    unchanged are not decoded again and the others are added to it."""
    bad, new = checked_images(paths, record)
    if record is not None and new:
        record_checks(record, new)
    return bad


def bad_images_problem(data: CompetitionData, bad: set[Path], policy: BadImages) -> str | None:
    """Why `data` cannot train with these unreadable images, or None."""
    if bad_test := [p for p in data.test_images if p in bad]:
        return f"test image cannot be read: {bad_test[0]} ({len(bad_test)} in all)"
    if bad and policy == BadImages.fail:
        return (
            f"image cannot be read: {sorted(bad)[0]} ({len(bad)} in all); use --bad-images skip to train without them"
        )
    return None


def without_bad_images(data: CompetitionData, policy: BadImages, out: Path | None = None) -> CompetitionData:
    """Fail on (policy 'fail') or drop (policy 'skip') corrupt training images, once per data; with
    `out`, the images checked by earlier commands with the same `out` are not decoded again.

    A corrupt test image always fails: a submission must cover every test image. A command refused
    for its images creates no output folder (an existing one keeps what was decoded).
    """
    if data.images_checked:
        return data
    record = image_checks_path(out) if out is not None else None
    unreadable, new = checked_images((*data.test_images, *data.train_images), record)
    bad = set(unreadable)
    problem = bad_images_problem(data, bad, policy)
    if record is not None and new and (problem is None or record.parent.is_dir()):
        record_checks(record, new)
    if problem:
        raise PaddyError(problem)
    return replace(data, train_images=tuple(p for p in data.train_images if p not in bad), images_checked=True)
