"""How images become batches: each file decoded and resized on uint8 tensors (the item resize),
then fastai's batch augmentation to the training size.

One function for training and for `paddy predict`, so a saved model sees its images as it was
trained (TTA draws the same augmentations). The item resize is split in two: `ReadImage` decodes
and scales (deterministic, so TTA does it once per image), `PlaceItem` takes the crop or pads to
the item size (random in training, centred on validation, as fastai's Resize). Models saved before
`decode` existed keep fastai's PIL pipeline (`ImageBlock` and `Resize`) and predict as before.
"""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.vision.all import (
    ImageBlock,
    IntToFloatTensor,
    RandTransform,
    Resize,
    TensorImage,
    Transform,
    TransformBlock,
    aug_transforms,
)
from PIL import Image

from paddy.settings.entry import DecodeChoice, ResizeMethod


def image_pipeline(
    decode: str | None,
    item: str,
    size: tuple[int, int],
    item_size: tuple[int, int],
    augmentation: dict[str, Any] | None,
) -> tuple[TransformBlock, list[Transform], list[Transform]]:
    """The image block, item and batch transforms: each image resized to `item_size` (the course's
    Resize(480, method)) and augmented per batch to `size` with fastai's aug_transforms(**augmentation);
    without augmentation (None) each image is resized straight to `size`, centred: nothing is random.
    `decode` None is fastai's PIL pipeline, for models saved before `decode` existed."""
    target = size if augmentation is None else item_size
    batch_tfms = [] if augmentation is None else aug_transforms(size=size, **augmentation)
    if decode is None:
        resize = CentredResize(size, method=item) if augmentation is None else Resize(item_size, method=item)
        return ImageBlock(), [resize], batch_tfms
    block = TransformBlock(
        type_tfms=ReadImage(DecodeChoice(decode), ResizeMethod(item), target), batch_tfms=IntToFloatTensor
    )
    placing = (
        [] if item == ResizeMethod.squish else [PlaceItem(ResizeMethod(item), target, centred=augmentation is None)]
    )
    return block, placing, batch_tfms


class CentredResize(Resize):
    """fastai's Resize centred in training too: its crop and pad positions are random in training."""

    def before_call(self, b: Any, split_idx: int) -> None:
        super().before_call(b, 1)  # as on the validation set


def scaled_size(height: int, width: int, item: ResizeMethod, target: tuple[int, int]) -> tuple[int, int]:
    """(height, width) an image is scaled to before `PlaceItem`: squish, the target; crop, the aspect kept
    and the target covered; pad, the aspect kept and inside the target."""
    if item == ResizeMethod.squish:
        return target
    th, tw = target
    ratio = (max if item == ResizeMethod.crop else min)(th / height, tw / width)
    h, w = max(1, round(height * ratio)), max(1, round(width * ratio))
    return (max(h, th), max(w, tw)) if item == ResizeMethod.crop else (min(h, th), min(w, tw))


TORCHVISION_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}


def decoded(path: Path, decode: DecodeChoice, item: ResizeMethod, target: tuple[int, int]) -> torch.Tensor:
    """The image file as RGB uint8 (channels, height, width), scaled for `item` to `target`.

    PIL decodes JPEGs at 1/2, 1/4 or 1/8 scale (`Image.draft`) when the scaled size is at most that:
    fewer pixels to decode and to resize. torchvision decodes only JPEG, PNG, WebP and GIF: other files
    (TIFF, BMP) go to PIL whatever `decode` says."""
    if decode == DecodeChoice.torchvision and path.suffix.lower() in TORCHVISION_SUFFIXES:
        from torchvision.io import ImageReadMode, decode_image, read_file

        pixels = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        return resized(pixels, scaled_size(*pixels.shape[1:], item, target))
    with Image.open(path) as image:
        h, w = scaled_size(image.height, image.width, item, target)
        image.draft("RGB", (w, h))
        pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    return resized(pixels, (h, w))


def resized(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 pixels resized with antialiased bilinear interpolation (PIL's BILINEAR, to rounding), as
    they are if already that size."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2.functional import resize_image

    if tuple(pixels.shape[1:]) == tuple(size):
        return pixels.contiguous()
    return resize_image(pixels, list(size), InterpolationMode.BILINEAR, antialias=True).contiguous()


class ReadImage(Transform):
    """The input's type transform: an image file decoded and scaled (`decoded`); an image already
    decoded (TTA's, decoded once) passes through."""

    def __init__(self, decode: DecodeChoice, item: ResizeMethod, target: tuple[int, int]) -> None:
        super().__init__()
        self.decode, self.item, self.target = decode, item, target

    def encodes(self, path: Path) -> TensorImage:
        return TensorImage(decoded(path, self.decode, self.item, self.target))


# decoded pixels TTA holds at once: about 1,800 images at item 448, 600 at 768 (crop's longer side is more);
# a whole hidden test set of 15k images at item 768 would need 26 GB, nearly all of a Kaggle machine's 30
TTA_CHUNK_BYTES = 2**30


def item_readers(dls: Any) -> list[ReadImage]:
    """The loaders' image readers: one for paddy's uint8 pipeline, none for fastai's PIL pipeline."""
    return [t for t in dls.valid_ds.tls[0].tfms.fs if isinstance(t, ReadImage)]


def tta_chunk(dls: Any) -> int | None:
    """The most images TTA holds decoded at once (TTA_CHUNK_BYTES of uint8 pixels at the item size); None
    for fastai's PIL pipeline, which holds none (it decodes in every pass)."""
    if not (readers := item_readers(dls)):
        return None
    height, width = readers[0].target
    return max(1, TTA_CHUNK_BYTES // (3 * height * width))


def test_loader(dls: Any, images: list[Path]) -> Any:
    """TTA's loader of `images`: each image decoded and scaled once (in the loaders' workers), so that
    TTA's passes only place and augment it, in this process (sending the decoded pixels to worker
    processes in every pass costs more than placing them); the files themselves for fastai's PIL
    pipeline, which decodes in every pass in the workers."""
    if not (readers := item_readers(dls)):
        return dls.test_dl(images)
    read = partial(decoded, decode=readers[0].decode, item=readers[0].item, target=readers[0].target)
    workers = dls.valid.fake_l.num_workers  # the loader's processes (fastai's own num_workers is its shard count)
    loader = torch.utils.data.DataLoader(images, batch_size=None, collate_fn=read, num_workers=workers)
    return dls.test_dl([TensorImage(pixels.clone()) for pixels in loader], num_workers=0)  # out of shared memory


class PlaceItem(RandTransform):
    """The item's crop from its scaled image (crop), or the scaled image padded by reflection (pad, fastai's
    pad mode), at a random position in training and centred on validation (or always, `centred`), as
    fastai's Resize draws them."""

    split_idx, order = None, 1  # both sets, right after the type transforms, as Resize

    def __init__(self, item: ResizeMethod, target: tuple[int, int], centred: bool) -> None:
        super().__init__()
        self.item, self.target, self.centred = item, target, centred

    def before_call(self, b: Any, split_idx: int) -> None:
        self.pcts = (0.5, 0.5) if split_idx or self.centred else (random.random(), random.random())

    def encodes(self, x: TensorImage) -> TensorImage:
        (th, tw), (h, w) = self.target, x.shape[1:]
        left, top = int(self.pcts[0] * abs(w - tw)), int(self.pcts[1] * abs(h - th))
        if self.item == ResizeMethod.crop:
            return x[:, top : top + th, left : left + tw]
        return reflected(x, top, th - h - top, left, tw - w - left)


def reflected(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """`x` padded by reflection, repeatedly where a side needs more than the image has (as numpy's
    reflect, which fastai's PIL padding uses)."""
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        step = [min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1)]
        if not any(step):  # one pixel wide or high: nothing to reflect
            return torch.nn.functional.pad(x[None], [left, right, top, bottom], mode="replicate")[0]
        x = torch.nn.functional.pad(x[None], step, mode="reflect")[0]
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return x
