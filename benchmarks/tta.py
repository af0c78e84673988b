"""Benchmark 4: inference images/s of paddy's test-time augmentation against one plain pass.

TTA is what `paddy train` predicts the test set with (`tta_predictions`: fastai's
`learn.tta`, 4 augmented passes and one plain pass), so it should cost about n + 1 = 5
plain passes, every pass decoding the test JPEGs again. The two alternate in one run.
"""

from __future__ import annotations

import argparse

from common import alternate, bench_entry, median, paddy_learner, parse, parser, sample_data, show, timed

from paddy.training.predicting import tta_predictions

TTA_PASSES = 4 + 1  # fastai's learn.tta default n=4, plus the plain pass


def main(args: argparse.Namespace) -> None:
    entry = bench_entry(args)
    data = sample_data(args)
    learn = paddy_learner(entry, data)
    images = list(data.test_images)
    test_dl = learn.dls.test_dl(images)
    cases = {
        "plain pass (get_preds)": lambda: timed(lambda: learn.get_preds(dl=test_dl)),
        "paddy TTA (tta_predictions)": lambda: timed(lambda: tta_predictions(learn, images, data.classes, {})),
    }
    seconds = alternate(cases, args.reps)
    plain_s = median(seconds["plain pass (get_preds)"])
    n = len(data.test_images)
    rows = [
        {
            "inference": name,
            "images/s": n / median(times),
            "median s": median(times),
            "x plain time": median(times) / plain_s,
        }
        for name, times in seconds.items()
    ]
    show(
        f"TTA inference: {entry.arch} {args.size}px on {n} test images of {data.root.name}, "
        f"{args.precision} on {args.device}",
        rows,
        args,
        note=f"TTA / plain time = {rows[1]['x plain time']:.2f} (expected about {TTA_PASSES} passes)",
    )


if __name__ == "__main__":
    main(parse(parser(__doc__.splitlines()[0])))
