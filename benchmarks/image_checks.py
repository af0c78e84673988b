"""The image check once per dataset: what a first and a second `paddy train` on the same data and
`--out` spend finding corrupt images (target: the second < 5% of the first), and the first's decoding
against fastai's verify_images (one pool task per image), which paddy's chunked check replaced.

Each round checks the sample with a fresh output folder (every image decoded by fastai's
verify_image in chunks, the results recorded in `<out>/.image-checks.json`), then as a later command
does: a fresh CompetitionData with the same `--out`, so only the record is read and each file stat'ed;
then verify_images decodes the same images.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from common import median, parse, parser, sample_data, show
from fastai.vision.utils import verify_images

from paddy.data.competition import check_layout
from paddy.data.images import without_bad_images
from paddy.settings.entry import BadImages


def check_seconds(root: Path, out: Path) -> float:
    """Seconds one command's image check takes (`train`'s prepare_run makes exactly this call)."""
    data = check_layout(root)
    started = time.perf_counter()
    without_bad_images(data, BadImages.fail, out)
    return time.perf_counter() - started


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(per_class=100, reps=3)
    args = parse(p)
    data = sample_data(args)
    images = [*data.test_images, *data.train_images]
    first, second, fastai = [], [], []
    for _ in range(args.reps):
        out = Path(tempfile.mkdtemp(prefix="image-checks-", dir=args.work))
        first.append(check_seconds(data.root, out))
        second.append(check_seconds(data.root, out))
        shutil.rmtree(out)
        started = time.perf_counter()
        verify_images(images)
        fastai.append(time.perf_counter() - started)
    n = len(images)
    rows = [
        {"command": "first (decodes every image)", "images": n, "seconds": median(first)},
        {"command": "second (same --out)", "images": n, "seconds": median(second)},
        {"command": "fastai's verify_images (no record)", "images": n, "seconds": median(fastai)},
    ]
    ratio = median(second) / median(first)
    show(
        "image check: first vs second command on the same data",
        rows,
        args,
        f"second / first = {ratio:.4f} (target < 0.05); per image: first {1000 * median(first) / n:.3f} ms, "
        f"second {1000 * median(second) / n:.4f} ms; verify_images / first = {median(fastai) / median(first):.2f}",
    )


if __name__ == "__main__":
    main()
