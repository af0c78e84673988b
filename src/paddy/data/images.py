"""Corrupt images: found with fastai's parallel verify_images before anything trains; a corrupt test
image always fails, corrupt training images fail or are skipped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from paddy.core.errors import PaddyError
from paddy.data.competition import CompetitionData
from paddy.settings.entry import BadImages


def unreadable_images(paths: list[Path] | tuple[Path, ...]) -> list[Path]:
    """Images PIL cannot decode, found with fastai's parallel verify_images."""
    from fastai.vision.utils import verify_images

    return [Path(p) for p in verify_images(list(paths))]


def without_bad_images(data: CompetitionData, policy: BadImages) -> CompetitionData:
    """Fail on (policy 'fail') or drop (policy 'skip') corrupt training images, once per data.

    A corrupt test image always fails: a submission must cover every test image.
    """
    if data.images_checked:
        return data
    bad_test = unreadable_images(data.test_images)
    if bad_test:
        raise PaddyError(f"test image cannot be read: {bad_test[0]} ({len(bad_test)} in all)")
    bad_train = set(unreadable_images(data.train_images))
    if not bad_train:
        return replace(data, images_checked=True)
    if policy == BadImages.fail:
        first = sorted(bad_train)[0]
        raise PaddyError(
            f"image cannot be read: {first} ({len(bad_train)} in all); use --bad-images skip to train without them"
        )
    kept = tuple(p for p in data.train_images if p not in bad_train)
    return replace(data, train_images=kept, images_checked=True)
