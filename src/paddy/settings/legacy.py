"""What runs of older paddy releases recorded: renamed config keys, and the settings added since
paddy 0.2 with what 0.2 did instead.
"""

from __future__ import annotations

from typing import Any

from paddy.settings.entry import ModelEntry, OptimizerChoice

# Old TOML keys, still read for one release with a warning: key -> its new name.
RENAMED_KEYS = {"weights": "pretrained_file", "weight": "ensemble_weight", "presize": "item_size"}


# Settings added since paddy 0.2: a run that did not record one was trained with what 0.2 did, which is
# the default except where BEHAVIOUR_OF_0_2 says otherwise.
SETTINGS_SINCE_0_2 = (
    *("folds", "fold", "fold_seed", "opt"),
    *("aug", "flip", "flip_vert", "max_rotate", "max_zoom", "max_warp", "max_lighting", "min_scale"),
    *("sizes", "ema", "gpus"),
)


BEHAVIOUR_OF_0_2 = {"opt": str(OptimizerChoice.fastai)}


def unrecorded_settings() -> dict[str, Any]:
    """What a run that records none of the settings added since paddy 0.2 was trained with."""
    defaults = ModelEntry().to_json()
    return {k: BEHAVIOUR_OF_0_2.get(k, defaults[k]) for k in SETTINGS_SINCE_0_2}
