"""The competition description: where the labels and images are, what kind of target they are, and
which metric Kaggle scores. Every key may be left out; what is left out is inferred from the files
(paddy.data.layout), and the filled-in description is what a run records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any

from paddy.core.errors import PaddyError


class TargetKind(StrEnum):
    """What one training image's label is, and so the model's head and loss.

    single: one class of many (softmax); multi: any set of tags (one sigmoid each); binary: two classes,
    scored on the positive class's probability; regression: a number (one output, `y_range`);
    ordinal: integer grades trained as a number and cut into grades at fitted cut-points."""

    single = "single"
    multi = "multi"
    binary = "binary"
    regression = "regression"
    ordinal = "ordinal"


class MetricName(StrEnum):
    """The competition metrics paddy scores with (paddy.scoring.metrics has their maths)."""

    error_rate = "error_rate"
    accuracy = "accuracy"
    log_loss = "log_loss"
    roc_auc = "roc_auc"
    f1_macro = "f1_macro"
    f1_samples = "f1_samples"
    f2_samples = "f2_samples"  # recall weighed 4 times precision: Planet, iMet
    qwk = "qwk"
    rmse = "rmse"
    map5 = "map5"


LOWER_IS_BETTER = frozenset({MetricName.error_rate, MetricName.log_loss, MetricName.rmse})


def greater_is_better(metric: str) -> bool:
    """Whether a higher value of a metric is a better score, by its name as epochs, runs and CV record it (a
    two-target model's epoch metric `<column>_error` is an error rate)."""
    return metric in set(MetricName) and MetricName(metric) not in LOWER_IS_BETTER


METRICS_OF_KIND: dict[TargetKind, tuple[MetricName, ...]] = {
    # the first is the default: error_rate keeps the paddy competition's reports as they were
    TargetKind.single: (
        MetricName.error_rate,
        MetricName.accuracy,
        MetricName.log_loss,
        MetricName.f1_macro,
        MetricName.map5,
        MetricName.roc_auc,
    ),
    TargetKind.binary: (
        MetricName.roc_auc,
        MetricName.log_loss,
        MetricName.accuracy,
        MetricName.error_rate,
        MetricName.f1_macro,
    ),
    TargetKind.multi: (
        MetricName.f1_samples,
        MetricName.f2_samples,
        MetricName.roc_auc,
        MetricName.f1_macro,
        MetricName.log_loss,
    ),
    TargetKind.regression: (MetricName.rmse,),
    TargetKind.ordinal: (MetricName.qwk, MetricName.rmse, MetricName.accuracy),
}


@dataclass(frozen=True)
class CompetitionSpec:
    """The `[competition]` table of a config (and its flags); None: inferred from the files."""

    slug: str | None = None  # the Kaggle competition (paddy-disease-classification when nothing says)
    labels_file: str | None = None  # train.csv, labels.csv, ...; or COCO-style metadata; none: folders, names
    id_column: str | None = None  # the labels file's image id column
    label_columns: tuple[str, ...] | None = None  # one label column, or one 0/1 column per class (one-hot)
    label_sep: str | None = None  # separator of a label list ("a b c"): multi-label
    label_pattern: str | None = None  # a regex whose group is the label in a training file name (cat.0.jpg)
    train_folder: str | None = None  # e.g. train_images, train, images
    test_folder: tuple[str, ...] | None = None  # e.g. test_images; several: Planet's test-jpg, test-jpg-additional
    test_metadata: str | None = None  # a JSON listing the test images by the sample's ids (test_metadata.json)
    sample_file: str | None = None  # the sample submission: sample_submission.csv, or e.g. sampleSubmission.csv
    extension: str | None = None  # added to ids that have none (".jpg", ".png", ".tif")
    kind: TargetKind | None = None
    metric: MetricName | None = None
    positive_class: str | None = None  # binary: whose probability is submitted (default: the second in order)
    group_column: str | None = None  # folds never split a group (e.g. patient_id)
    fold_column: str | None = None  # the user's own folds (1..K, or 0..K-1) in the labels file

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists, choices as their names)."""
        d = asdict(self)
        for key in LIST_KEYS:
            d[key] = list(getattr(self, key)) if getattr(self, key) else None
        d["kind"] = str(self.kind) if self.kind else None
        d["metric"] = str(self.metric) if self.metric else None
        return d


SPEC_FIELDS = tuple(f.name for f in fields(CompetitionSpec))
LIST_KEYS = {"label_columns": "column name", "test_folder": "folder name"}  # one name, or a list of them


def metric_problem(kind: TargetKind, metric: MetricName) -> str | None:
    """Why `metric` cannot score a `kind` target, or None."""
    if metric in METRICS_OF_KIND[kind]:
        return None
    allowed = ", ".join(METRICS_OF_KIND[kind])
    return f"metric {metric} does not fit a {kind} target (use one of: {allowed})"


def spec_problems(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A `[competition]` table parsed into CompetitionSpec fields, and every problem in it: unknown keys,
    values of the wrong type (never coerced), unknown kinds or metrics."""
    parsed: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        if key not in SPEC_FIELDS:
            problems.append(f"unknown key {key!r} (known: {', '.join(SPEC_FIELDS)})")
        elif key in LIST_KEYS:
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                problems.append(f"{key}: {value!r} is not a {LIST_KEYS[key]} or a list of them")
            else:
                parsed[key] = tuple(names)
        elif not isinstance(value, str) or not value:
            problems.append(f"{key}: {value!r} is not text")
        elif key in ("kind", "metric"):
            choices = TargetKind if key == "kind" else MetricName
            if value not in choices.__members__:
                problems.append(f"{key}: {value!r} is not one of {', '.join(choices)}")
            else:
                parsed[key] = choices(value)
        else:
            parsed[key] = value
    return parsed, problems


PADDY_COMPETITION = "paddy-disease-classification"


KNOWN_COMPETITIONS: dict[str, tuple[TargetKind, MetricName]] = {
    # What each competition's evaluation page scores, for the description to infer from the data folder's name
    # (Kaggle's download and /kaggle/input/<slug> are named after the competition). The paddy competition
    # scores accuracy; paddy reports its complement, error_rate, as it always has.
    PADDY_COMPETITION: (TargetKind.single, MetricName.error_rate),
    "cassava-leaf-disease-classification": (TargetKind.single, MetricName.accuracy),
    "plant-pathology-2020-fgvc7": (TargetKind.single, MetricName.roc_auc),
    "plant-pathology-2021-fgvc8": (TargetKind.multi, MetricName.f1_samples),
    "dog-breed-identification": (TargetKind.single, MetricName.log_loss),
    "histopathologic-cancer-detection": (TargetKind.binary, MetricName.roc_auc),
    "aptos2019-blindness-detection": (TargetKind.ordinal, MetricName.qwk),
    "siim-isic-melanoma-classification": (TargetKind.binary, MetricName.roc_auc),
    "ranzcr-clip-catheter-line-classification": (TargetKind.multi, MetricName.roc_auc),
    "petfinder-pawpularity-score": (TargetKind.regression, MetricName.rmse),
    "hotel-id-2021-fgvc8": (TargetKind.single, MetricName.map5),
    "herbarium-2020-fgvc7": (TargetKind.single, MetricName.f1_macro),  # nybg2020/train/metadata.json
    "herbarium-2021-fgvc8": (TargetKind.single, MetricName.f1_macro),  # COCO-style train/metadata.json
    "herbarium-2022-fgvc9": (TargetKind.single, MetricName.f1_macro),  # train_metadata.json, test_metadata.json
    "iwildcam-2020-fgvc7": (TargetKind.single, MetricName.accuracy),  # iwildcam2020_train_annotations.json
    "inaturalist-2019-fgvc6": (TargetKind.single, MetricName.error_rate),  # top-1 error; train2019.json
    "digit-recognizer": (TargetKind.single, MetricName.accuracy),  # pixels in train.csv: presize writes PNGs
    "Kannada-MNIST": (TargetKind.single, MetricName.accuracy),  # likewise, with test.csv's id column
    "happy-whale-and-dolphin": (TargetKind.single, MetricName.map5),
    "humpback-whale-identification": (TargetKind.single, MetricName.map5),
    "plant-seedlings-classification": (TargetKind.single, MetricName.accuracy),  # micro F1 of one label each
    "aerial-cactus-identification": (TargetKind.binary, MetricName.roc_auc),
    "invasive-species-monitoring": (TargetKind.binary, MetricName.roc_auc),
    "dogs-vs-cats-redux-kernels-edition": (TargetKind.binary, MetricName.log_loss),  # P(dog), labels in names
    "state-farm-distracted-driver-detection": (TargetKind.single, MetricName.log_loss),  # imgs/train/c0..c9/
    "planet-understanding-the-amazon-from-space": (TargetKind.multi, MetricName.f2_samples),
    "imet-2019-fgvc6": (TargetKind.multi, MetricName.f2_samples),
}


def known_competition(spec: CompetitionSpec, folder_name: str) -> CompetitionSpec:
    """`spec` with the slug, kind and metric of a competition paddy knows filled in where it leaves them out:
    the slug is the description's, else the data folder's name when paddy knows it."""
    slug = spec.slug or (folder_name if folder_name in KNOWN_COMPETITIONS else None)
    if slug not in KNOWN_COMPETITIONS:
        return spec
    kind, metric = KNOWN_COMPETITIONS[slug]
    return replace(spec, slug=slug, kind=spec.kind or kind, metric=spec.metric or metric)


def given_over(base: CompetitionSpec, given: CompetitionSpec) -> CompetitionSpec:
    """`base` with each key that `given` gives in its place."""
    return replace(base, **{key: getattr(given, key) for key in SPEC_FIELDS if getattr(given, key) is not None})


def overridden(spec: CompetitionSpec, raw: dict[str, Any], where: str) -> CompetitionSpec:
    """`spec` with the keys of `raw` (a `[competition]` table, or flags) over it, every problem in one line
    (a metric that does not fit the kind among them)."""
    parsed, problems = spec_problems(raw)
    merged = replace(spec, **parsed)
    if not problems and merged.kind and merged.metric and (problem := metric_problem(merged.kind, merged.metric)):
        problems.append(problem)
    if problems:
        raise PaddyError(f"{where}: " + "; ".join(problems))
    return merged


def recorded_spec(recorded: dict[str, Any] | None) -> CompetitionSpec:
    """The description a run or predictions file recorded (`CompetitionSpec.to_json`), so later commands read
    the data as training did; runs of releases before 0.3 recorded none (the paddy layout, inferred)."""
    return overridden(CompetitionSpec(), {k: v for k, v in (recorded or {}).items() if v is not None}, "recorded")
