"""Benchmark 4: inference images/s of paddy's test-time augmentation against one plain pass.

TTA is what `paddy train` predicts the test set with (`tta_predictions`: fastai's
`learn.tta`, 4 augmented passes and one plain pass). It decodes and item-resizes each test
image once, and the 5 passes crop and augment the decoded pixels; a model saved before
`decode` existed keeps fastai's PIL pipeline, which decodes the JPEGs again in every pass.
The learner's own loops (get_preds, tta_predictions) are timed, and `paddy predict` with
and without TTA on a run trained here, from the run's model as a user runs it, for both
kinds of saved model. All cases alternate in one run.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from common import alternate, bench_entry, median, paddy_learner, parse, parser, quietly, sample_data, show, timed
from safetensors import safe_open
from safetensors.torch import save_file

from paddy.data.competition import CompetitionData
from paddy.ensembling.predict import predict
from paddy.runs.folder import RunFolder
from paddy.settings.budget import chosen_budget
from paddy.settings.entry import ModelEntry
from paddy.training.predicting import TTA_PASSES, tta_predictions
from paddy.training.run import plan_run, train


def trained_run(entry: ModelEntry, data: CompetitionData, work: Path) -> RunFolder:
    """A finished run of `entry` to predict with (trained once, then reused)."""
    out = work / f"tta-runs-{data.root.name}"
    shutil.rmtree(out, ignore_errors=True)
    result: list = []
    quietly(lambda: result.append(train(plan_run(entry, data, out, chosen_budget()), pictures=False)))
    return result[0].run


def saved_before_decode(run: RunFolder) -> RunFolder:
    """A copy of `run` whose model card has no `decode`, as paddy saved models before it existed."""
    old = RunFolder(shutil.copytree(run.path, run.path.with_name(f"{run.name}-before-decode")))
    with safe_open(old.model_path, framework="pt") as f:
        header = json.loads(f.metadata()["paddy"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    header.pop("decode")
    save_file(state, old.model_path, metadata={"paddy": json.dumps(header)})
    return old


def main(args: argparse.Namespace) -> None:
    entry = bench_entry(args)
    data = sample_data(args)
    learn = paddy_learner(entry, data)
    images = list(data.test_images)
    test_dl = learn.dls.test_dl(images)
    run = trained_run(entry, data, args.work)
    models = {f'decode = "{entry.decode}"': run, "saved before decode (fastai PIL)": saved_before_decode(run)}
    dest = args.work / "tta-predictions.safetensors"
    plain, augmented = "learner: plain pass (get_preds)", "learner: paddy TTA (tta_predictions)"
    cases = {
        plain: lambda: timed(lambda: learn.get_preds(dl=test_dl)),
        augmented: lambda: timed(lambda: tta_predictions(learn, images, data.classes, {})),
    }
    plain_of = {plain: plain, augmented: plain}  # each case's one-pass counterpart
    for name, model in models.items():
        for tta in (False, True):
            case = f"paddy predict {'--tta' if tta else '--no-tta'}, {name}"
            cases[case] = lambda model=model, tta=tta: timed(
                lambda: predict(
                    [str(model.path)], data.root / "test_images", model.path.parent, dest, tta=tta, replace_earlier=True
                )
            )
            plain_of[case] = f"paddy predict --no-tta, {name}"
    seconds = alternate(cases, args.reps)
    n = len(images)
    rows = [
        {
            "inference": name,
            "images/s": n / median(times),
            "median s": median(times),
            "x its plain pass": median(times) / median(seconds[plain_of[name]]),
        }
        for name, times in seconds.items()
    ]
    show(
        f"TTA inference: {entry.arch} {args.size}px, item {entry.resize_to[0]}, on {n} test images of "
        f"{data.root.name}, {args.precision} on {args.device}",
        rows,
        args,
        note=f"TTA: {TTA_PASSES} passes of augmentation and forward, one decode ({TTA_PASSES} before decode)",
    )


if __name__ == "__main__":
    main(parse(parser(__doc__.splitlines()[0])))
