"""What runs of older paddy releases recorded, upgraded to what this release records: the one place
each legacy rule lives (renamed config keys, settings added since paddy 0.2, results and ensemble
weights of paddy 0.1), as Ultralytics keeps every renamed key in one function.

This release is paddy 0.3 in development (pyproject's version, 0.3.0.dev0): runs of 0.1 and 0.2
still load, match their entries and resume; the 0.1 key names go when 0.3 is released.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Any

from paddy.settings.entry import Keep, ModelEntry, OptimizerChoice

OLD_NAMES_UNTIL = "0.3"  # the release that stops reading the 0.1 key names
# Old TOML keys, still read with a warning until OLD_NAMES_UNTIL: key -> its new name.
RENAMED_KEYS = {"weights": "pretrained_file", "weight": "ensemble_weight", "presize": "item_size"}


# Settings added since paddy 0.2: a run that did not record one was trained with what 0.2 did, which is
# the default except where BEHAVIOUR_OF_0_2 says otherwise.
SETTINGS_SINCE_0_2 = (
    *("folds", "fold", "fold_seed", "opt"),
    *("aug", "flip", "flip_vert", "max_rotate", "max_zoom", "max_warp", "max_lighting", "min_scale"),
    *("sizes", "ema", "gpus"),
    "trackers",
    *("channels_last", "compile"),
    "decode",  # matched as the default: the paths differ only by decoder rounding (BENCHMARKS.md 2b)
    *("keep", "patience"),
)


BEHAVIOUR_OF_0_2 = {"opt": str(OptimizerChoice.fastai), "keep": str(Keep.last)}


# What a result.json written before runs kept their best epoch means: the last epoch was kept (its index,
# None, is the history's last row) and every planned epoch trained.
RESULT_BEFORE_KEEP = {"keep": str(Keep.last), "kept_epoch": None, "stopped_early": False}


# What a result.json written before runs recorded their metric was scored on: every run then was the paddy
# competition's, and its valid_error the error rate.
RESULT_BEFORE_METRIC = {"metric": "error_rate"}


# Recorded since paddy 0.3: the training set a run trains on (how many images, a digest of their ids, and one of
# ids with labels; CompetitionData.training_identity). A run of an older release recorded none: None, which a
# resume does not compare, so such a run still goes on.
TRAINING_SET_SINCE_0_3 = ("train_images", "train_ids_sha256", "train_labels_sha256")


class Recorded(StrEnum):
    """What a run folder records that older releases recorded otherwise."""

    settings = "settings"  # config.json, and the settings a checkpoint carries
    result = "result"  # result.json
    member = "member"  # a predictions file's metadata, read as an ensemble member


def unrecorded_settings() -> dict[str, Any]:
    """What a run that records none of the settings added since paddy 0.2 was trained with (a fresh dict of
    the values worked out once: every run folder read is upgraded with them)."""
    return dict(_unrecorded_settings())


@lru_cache(maxsize=1)
def _unrecorded_settings() -> tuple[tuple[str, Any], ...]:
    defaults = ModelEntry().to_json()
    return tuple((k, BEHAVIOUR_OF_0_2.get(k, defaults[k])) for k in SETTINGS_SINCE_0_2)


def upgraded(kind: Recorded, recorded: dict[str, Any]) -> dict[str, Any]:
    """`recorded` (read from a run of any release) as this release records it."""
    if kind is Recorded.settings:
        unrecorded = {**unrecorded_settings(), **dict.fromkeys(TRAINING_SET_SINCE_0_3)}  # as 0.2 did
        return {**recorded, **{key: value for key, value in unrecorded.items() if key not in recorded}}
    if kind is Recorded.result:  # paddy 0.1 recorded one total, "seconds", for training, pictures and TTA
        total = recorded.get("train_seconds", 0.0) + recorded.get("predict_seconds", 0.0)
        return {"seconds": total, **RESULT_BEFORE_KEEP, **RESULT_BEFORE_METRIC, **recorded}
    weight = recorded.get("ensemble_weight", recorded.get("weight", 1.0))  # paddy 0.1 called it "weight"
    return {**recorded, "ensemble_weight": weight}


def renamed_key_warning(where: str, key: str) -> str:
    return f"{where}: {key!r} is now called {RENAMED_KEYS[key]!r}; the old name will stop working in {OLD_NAMES_UNTIL}"
