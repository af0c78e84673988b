"""A resized copy of the competition images, so decoding JPEGs no longer starves the model.

Decoding 480x640 JPEGs takes most of a 2-vCPU Kaggle machine; the course resizes every
image once to 256 px on its longest side. The copy keeps the folder layout and file names,
so `paddy train --data` takes it like the original. Every file is written atomically, so a
file that exists is complete and an interrupted presize resumes where it stopped.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

from fastcore.basics import num_cpus
from PIL import Image

from paddy.core.errors import PaddyError
from paddy.core.files import atomic_write_bytes, read_json, remove_stale_temp_files, write_json
from paddy.core.processes import die_with_parent
from paddy.data.competition import CompetitionData, check_layout
from paddy.data.images import bad_images_problem
from paddy.data.locations import IMAGE_SUFFIXES, PRESIZE_MARKER, SAMPLE, found_name, sample_name
from paddy.data.pixel_images import PixelTables, images_to_write, pixel_tables, write_pixel_images
from paddy.data.submission_format import read_sample
from paddy.settings.competition import CompetitionSpec, known_competition
from paddy.settings.entry import BadImages

MARKER = PRESIZE_MARKER
MAX_QUALITY = 95  # Pillow: above 95 JPEG files grow with no visible gain
RESIZED, COPIED, UNREADABLE = "resized", "copied", "unreadable"
OWN_FILES = {".csv", ".json", ".txt"}  # a data folder's own small files: labels, sample, metadata, paddy's marker


@dataclass(frozen=True)
class PresizeReport:
    """What a presize did; resized + copied + skipped is every file the copy needs (files_read)."""

    dest: Path
    resized: int  # images written smaller
    copied: int  # files copied unchanged: CSVs, images no larger than `longest`, unreadable images
    skipped: int  # already in dest from an earlier, interrupted run
    unreadable: int  # training images PIL cannot decode, copied unchanged (`bad_images` skip) for train to skip
    stale_removed: int  # temp files a killed earlier run left half-written, deleted before resuming
    pixels_side: int | None = None  # images written from pixel CSVs (resized: how many), this many px a side

    @property
    def total(self) -> int:
        return self.resized + self.copied + self.skipped


def check_settings(longest: int, quality: int, workers: int | None) -> None:
    """Refuse a size, quality or number of workers that cannot give a usable copy."""
    if longest <= 0:
        raise PaddyError(f"longest side must be a positive number of pixels, not {longest}")
    if not 1 <= quality <= MAX_QUALITY:
        raise PaddyError(f"JPEG quality must be between 1 and {MAX_QUALITY}, not {quality}")
    if workers is not None and workers < 0:
        raise PaddyError(f"workers must be 0 (this process) or more, not {workers}")


def check_dest(src: Path, dest: Path) -> None:
    """Refuse a destination inside the source (the copy would be read as data) or that is a file."""
    if dest.resolve().is_relative_to(src.resolve()):
        raise PaddyError(f"destination {dest} is inside the source {src}; choose a folder outside it")
    if dest.exists() and not dest.is_dir():
        raise PaddyError(f"destination {dest} is a file, not a folder")


def claim_dest(dest: Path, settings: dict[str, int], description: CompetitionSpec) -> None:
    """Mark `dest` as a presize with these settings and how its source was read (locations.copied_description);
    refuse a folder written otherwise, so a resumed run never mixes two sizes or overwrites someone's files."""
    marker = dest / MARKER
    if marker.is_file():
        found = read_json(marker)
        if {key: found.get(key) for key in settings} != settings:
            raise PaddyError(
                f"{dest} holds a presize with longest {found.get('longest')} and quality {found.get('quality')}; "
                "use another destination or delete it"
            )
        return
    if dest.is_dir() and any(dest.iterdir()):
        raise PaddyError(f"{dest} is not empty and is not a paddy presize; choose a new folder")
    write_json(marker, {**settings, "competition": description.slug, "description": description.to_json()})


def shrunk_image(src: Path, longest: int, quality: int) -> bytes | None:
    """`src` encoded again with its longest side `longest`, or None when it is no larger already (decoded
    all the same: a truncated image fails here, not copied as it is)."""
    with Image.open(src) as img:
        if max(img.size) <= longest:
            img.load()
            return None
        img.thumbnail((longest, longest))  # keeps the aspect ratio; JPEGs decode at a reduced scale
        buffer = io.BytesIO()
        image_format = Image.registered_extensions()[src.suffix.lower()]
        img.convert("RGB").save(buffer, format=image_format, quality=quality)  # fastai reads RGB anyway
        return buffer.getvalue()


def presize_file(job: tuple[Path, Path], longest: int, quality: int) -> str:
    """Write one file of the copy (job: source, destination); return what was done with it. An image
    PIL cannot decode is not written: `presize_dataset` decides what becomes of it."""
    src, dest = job
    try:
        data = shrunk_image(src, longest, quality) if src.suffix.lower() in IMAGE_SUFFIXES else None
    except (OSError, ValueError, Image.DecompressionBombError):
        return UNREADABLE
    atomic_write_bytes(dest, src.read_bytes() if data is None else data)
    return COPIED if data is None else RESIZED


def files_read(data: CompetitionData) -> list[Path]:
    """What a copy needs to be read as its source: the training and test images, and the data folder's own
    small files (labels, sample, metadata); never the rest (siim-isic's DICOM train/, Planet's .tif copies,
    TFRecords, zips), which would be copied for nothing."""
    own = [p for p in data.root.iterdir() if p.is_file() and p.suffix.lower() in OWN_FILES and p.name != MARKER]
    metadata = [data.root / name for name in (data.spec.labels_file, data.spec.test_metadata) if name]  # train/...
    return sorted({*data.train_images, *data.test_images, *own, *metadata})


def pending_jobs(files: list[Path], src: Path, dest: Path) -> tuple[list[tuple[Path, Path]], int]:
    """(source, destination) of every file not yet copied, and how many are done already."""
    jobs = [(p, dest / p.relative_to(src)) for p in files]
    todo = [job for job in jobs if not job[1].exists()]
    return todo, len(jobs) - len(todo)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Processes that die with this one; forked on Linux, so their parent is this process, as
    die_with_parent checks (Python 3.14 defaults to a forkserver, which would be their parent)."""
    context = multiprocessing.get_context("fork") if sys.platform == "linux" else None
    return ProcessPoolExecutor(workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),))


def run_jobs(jobs: list[tuple[Path, Path]], work: Callable[[tuple[Path, Path]], str], workers: int) -> Iterable[str]:
    """Outcomes in job order, from `workers` processes (0: this process, e.g. under a debugger)."""
    if workers == 0:
        yield from map(work, jobs)
        return
    with worker_pool(workers) as pool:
        yield from pool.map(work, jobs, chunksize=16)


def run_counted(
    jobs: list[tuple[Path, Path]],
    work: Callable[[tuple[Path, Path]], str],
    workers: int,
    skipped: int,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[Counter[str], list[tuple[Path, Path]]]:
    """Run the jobs (run_jobs), following them with `on_progress` after the `skipped` already done: how many
    had each outcome, and the jobs whose image was unreadable."""
    total, counts, unreadable = skipped + len(jobs), Counter[str](), []
    if on_progress:
        on_progress(skipped, total)
    for done, (job, outcome) in enumerate(zip(jobs, run_jobs(jobs, work, workers)), skipped + 1):
        counts[outcome] += 1
        unreadable += [job] if outcome == UNREADABLE else []
        if on_progress:
            on_progress(done, total)
    return counts, unreadable


def presize_pixels(
    src: Path,
    dest: Path,
    tables: PixelTables,
    settings: dict[str, int],
    on_progress: Callable[[int, int], None] | None,
    spec: CompetitionSpec,
) -> PresizeReport:
    """The images of pixel CSVs written as PNG files (paddy.data.pixel_images) in a copy marked and described
    as a presize: the copy is read as the competition (its kind and metric) with class folders."""
    check_dest(src, dest)
    sample_csv = src / sample_name(found_name(src, spec.sample_file, SAMPLE))
    files = images_to_write(src, tables, list(read_sample(sample_csv).iloc[:, 0]))  # every row checked first
    claim_dest(dest, settings, known_competition(spec, src.absolute().name))
    stale_removed = remove_stale_temp_files(dest)
    written, skipped = write_pixel_images(files, tables.side, sample_csv, dest, on_progress)
    return PresizeReport(dest, written, 1, skipped, unreadable=0, stale_removed=stale_removed, pixels_side=tables.side)


def presize_dataset(
    src: Path,
    dest: Path,
    longest: int = 256,
    quality: int = 90,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    bad_images: BadImages = BadImages.fail,
    spec: CompetitionSpec = CompetitionSpec(),
) -> PresizeReport:
    """Copy the competition folder `src`, as `spec` reads it, to `dest` with images shrunk to `longest` px on
    their longest side.

    Same layout and file names, only what is read (files_read); images are never enlarged; the folder's own
    small files (train.csv, sample_submission.csv) are copied. The copy records how its source was read.
    Files already in `dest` are skipped, so re-running resumes; temp files a killed run left are deleted
    first. `on_progress(done, total)` follows the files; workers default to every core. Unreadable images
    follow train's rule (bad_images_problem): a test image, or with `bad_images` fail any image, is refused
    naming it and left out of the copy (a re-run tries it again); skipped training images are copied
    unchanged, for `train --bad-images skip`.
    """
    check_settings(longest, quality, workers)  # before touching any file
    settings = {"longest": longest, "quality": quality}
    if (tables := pixel_tables(src)) is not None:  # digit-recognizer: no image files to resize, pixels to write
        return presize_pixels(src, dest, tables, settings, on_progress, spec)
    data = check_layout(src, spec)
    check_dest(src, dest)
    claim_dest(dest, settings, data.spec)
    stale_removed = remove_stale_temp_files(dest)
    jobs, skipped = pending_jobs(files_read(data), data.root, dest)
    work = partial(presize_file, longest=longest, quality=quality)
    counts, unreadable = run_counted(jobs, work, num_cpus() if workers is None else workers, skipped, on_progress)
    if problem := bad_images_problem(data, {image.absolute() for image, _ in unreadable}, bad_images):
        raise PaddyError(f"{problem} (not copied to {dest})")
    for image, copy in unreadable:
        atomic_write_bytes(copy, image.read_bytes())
    return PresizeReport(
        dest=dest,
        resized=counts[RESIZED],
        copied=counts[COPIED] + counts[UNREADABLE],
        skipped=skipped,
        unreadable=counts[UNREADABLE],
        stale_removed=stale_removed,
    )
