"""How images become batches: the item resize, then fastai's batch augmentation to the training size.

One function for training and for `paddy predict`, so a saved model sees its images as it was
trained (TTA draws the same augmentations).
"""

from __future__ import annotations

from typing import Any

from fastai.vision.all import Resize, Transform, aug_transforms


def image_transforms(
    item: str, size: tuple[int, int], item_size: tuple[int, int], augmentation: dict[str, Any] | None
) -> tuple[Transform, list[Transform]]:
    """Item and batch transforms: each image resized to `item_size` (the course's Resize(480, method))
    and augmented per batch to `size` with fastai's aug_transforms(**augmentation); without
    augmentation (None) each image is resized straight to `size`, centred: nothing is random."""
    if augmentation is None:
        return CentredResize(size, method=item), []
    return Resize(item_size, method=item), aug_transforms(size=size, **augmentation)


class CentredResize(Resize):
    """fastai's Resize centred in training too: its crop and pad positions are random in training."""

    def before_call(self, b: Any, split_idx: int) -> None:
        super().before_call(b, 1)  # as on the validation set
