"""Benchmark 2: epoch time reading the original 480x640 JPEGs against the `paddy presize` copy.

The same model and settings train one epoch on each (paddy's real data pipeline, default
workers), alternating. The loader alone is timed too, twice: whole (decode, item resize,
batch augmentation on this device) and its CPU side only (decode, item resize, collate in
the workers): with a GPU, the batch augmentation runs on the GPU and the CPU side's
images/s is what a 2-vCPU machine can feed the model.

With `--decoders` (benchmark 2b) it times instead the CPU side of each item pipeline on the
original JPEGs, alternating: fastai's PIL pipeline (ImageBlock and Resize, paddy before `decode`
and models saved then), paddy's `decode = "pil"` and `"torchvision"`, and a plain PyTorch
DataLoader with the same PIL decode and resize.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from common import alternate, bench_entry, median, paddy_learner, parse, parser, presized_data, sample_data, show, timed
from fastai.vision.all import CategoryBlock, DataBlock, DataLoader, Learner, RandomSplitter, parent_label
from PIL import Image

from paddy.data.competition import CompetitionData
from paddy.settings.entry import DecodeChoice, ModelEntry
from paddy.training.transforms import image_pipeline


def epoch(learn: Learner, lr: float) -> float:
    """Seconds of one training epoch with validation, as `paddy train` runs it."""
    return timed(lambda: learn.fit_one_cycle(1, lr))


def loader_pass(loader: DataLoader) -> float:
    """Seconds to produce every batch once, with no model."""
    return timed(lambda: sum(1 for _ in loader))


def cpu_side(learn: Learner) -> DataLoader:
    """The training loader without its batch transforms: only what the CPU does whatever the device."""
    return learn.dls.train.new(after_batch=[])


def timings(learn: Learner, lr: float, with_epoch: bool) -> dict[str, Callable[[], float]]:
    """What is timed for one source of images, by column name."""
    loader, cpu_loader = learn.dls.train, cpu_side(learn)
    cases = {"epoch s": lambda: epoch(learn, lr)} if with_epoch else {}
    return {**cases, "loader s": lambda: loader_pass(loader), "CPU side s": lambda: loader_pass(cpu_loader)}


def fastai_pil_loader(entry: ModelEntry, data: CompetitionData, workers: int) -> DataLoader:
    """The CPU side of paddy's training loader before `decode` existed: fastai's ImageBlock and Resize
    (`image_pipeline` with no decoder, as a model saved then is rebuilt)."""
    images, item_tfms, _ = image_pipeline(None, str(entry.item), entry.size, entry.resize_to, entry.augmentation())
    block = DataBlock(
        blocks=(images, CategoryBlock(vocab=list(data.classes))),
        get_items=lambda _: list(data.train_images),
        splitter=RandomSplitter(entry.valid_pct, seed=0),
        get_y=parent_label,
        item_tfms=item_tfms,
    )
    return block.dataloaders(data.train_dir, bs=entry.bs, num_workers=workers).train


PLAIN = "plain PyTorch DataLoader, PIL"


class PlainPIL(torch.utils.data.Dataset):
    """A hand-written dataset: PIL decode, PIL bilinear resize to the item size, a uint8 tensor and the label."""

    def __init__(self, data: CompetitionData, size: tuple[int, int]) -> None:
        self.items, self.size = list(data.train_images), size
        self.classes = {c: i for i, c in enumerate(data.classes)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.items[i]) as image:
            pixels = image.convert("RGB").resize(self.size[::-1], Image.BILINEAR)
        return torch.from_numpy(np.array(pixels)).permute(2, 0, 1), self.classes[self.items[i].parent.name]


def pixel_differences(entry: ModelEntry, data: CompetitionData, n: int = 32) -> list[dict]:
    """Mean and largest |difference| in uint8 levels between the validation items of two pipelines,
    over `n` images: the decoders against each other, and paddy's default against fastai's PIL."""
    from fastai.vision.all import PILImage

    _, (legacy,), _ = image_pipeline(None, str(entry.item), entry.size, entry.resize_to, entry.augmentation())
    paths = list(data.train_images)[:n]

    def items(decode: DecodeChoice | None) -> torch.Tensor:
        if decode is None:
            return torch.stack([torch.from_numpy(np.array(legacy(PILImage.create(p), split_idx=1))) for p in paths])
        images, placing, _ = image_pipeline(
            str(decode), str(entry.item), entry.size, entry.resize_to, entry.augmentation()
        )
        read = images.type_tfms[0]
        return torch.stack([(placing[0](read(p), split_idx=1) if placing else read(p)).permute(1, 2, 0) for p in paths])

    pil, torchvision, fastai = items(DecodeChoice.pil), items(DecodeChoice.torchvision), items(None)
    pairs = {'"pil" vs "torchvision"': (pil, torchvision), '"torchvision" vs fastai PIL': (torchvision, fastai)}
    return [
        {
            "items compared": name,
            "mean |diff|": float((a.int() - b.int()).abs().float().mean()),
            "max |diff|": int((a.int() - b.int()).abs().max()),
        }
        for name, (a, b) in pairs.items()
    ]


def decoders_main(args: argparse.Namespace) -> None:
    """Benchmark 2b: images/s of each item pipeline's CPU side, same images, batch and workers."""
    entry = bench_entry(args, item_size=args.item or 480, item=args.item_method)
    data = sample_data(args)
    workers = 2 if args.workers is None else args.workers
    plain = PlainPIL(data, entry.resize_to)
    loaders = {
        "fastai PIL pipeline (paddy before decode)": fastai_pil_loader(entry, data, workers),
        **{
            f'paddy decode = "{decode}"': cpu_side(paddy_learner(replace(entry, decode=decode), data, workers))
            for decode in DecodeChoice
        },
    }
    images = {name: len(loader) * loader.bs for name, loader in loaders.items()}  # training drops the last batch
    cases = {name: (lambda loader=loader: loader_pass(loader)) for name, loader in loaders.items()}
    plain_loader = torch.utils.data.DataLoader(plain, batch_size=entry.bs, shuffle=True, num_workers=workers)
    cases[PLAIN], images[PLAIN] = (lambda: timed(lambda: sum(1 for _ in plain_loader))), len(plain)
    seconds = alternate(cases, args.reps)
    speed = {name: images[name] / median(times) for name, times in seconds.items()}
    first = next(iter(cases))
    rows = [
        {
            "item pipeline": name,
            "images/s": speed[name],
            "CPU ms per image": 1000 * workers / speed[name],
            "x fastai PIL": speed[name] / speed[first],
            "x plain PIL": speed[name] / speed[PLAIN],
        }
        for name in cases
    ]
    show(
        f"item pipelines (CPU side): {len(plain)} JPEGs of {data.root.name}, item {entry.item} "
        f"{entry.resize_to[0]}x{entry.resize_to[1]}, bs {entry.bs}, {workers} workers",
        rows,
        args,
        note="CPU ms per image = workers / images per s (the workers kept busy)",
    )
    show(
        f"validation items' pixels (uint8 levels), item {entry.item} {entry.resize_to[0]}",
        pixel_differences(entry, data),
        args,
    )


def main(args: argparse.Namespace) -> None:
    if args.decoders:
        return decoders_main(args)
    entry = bench_entry(args, item_size=args.item)
    original = sample_data(args)
    sources = {"original 480x640": original, f"presized {args.longest}": presized_data(original, args.longest)}
    learners = {name: paddy_learner(entry, data, args.workers) for name, data in sources.items()}
    cases = {
        f"{name} | {column}": run
        for name, learn in learners.items()
        for column, run in timings(learn, entry.lr, not args.skip_epoch).items()
    }
    seconds = alternate(cases, args.reps)
    n_train = len(learners[next(iter(sources))].dls.train_ds)
    columns = list(timings(learners[next(iter(sources))], entry.lr, not args.skip_epoch))
    rows = []
    for name in sources:
        row = {"images": name, **{column: median(seconds[f"{name} | {column}"]) for column in columns}}
        rows.append(
            {**row, "loader images/s": n_train / row["loader s"], "CPU side images/s": n_train / row["CPU side s"]}
        )
    ratios = [f"{column} original / presized = {rows[0][column] / rows[1][column]:.2f}" for column in columns]
    show(
        f"data loading: {entry.arch} {args.size}px, item resize {entry.resize_to[0]}, bs {entry.bs}, "
        f"{n_train} training images, workers {'default' if args.workers is None else args.workers}, {args.device}",
        rows,
        args,
        note="; ".join(ratios),
    )


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--longest", type=int, default=256, help="presize: longest side in pixels")
    p.add_argument("--item", type=int, default=None, help="item resize before augmentation (default: paddy's, 2x size)")
    p.add_argument("--workers", type=int, default=None, help="data loader workers (default: paddy's)")
    p.add_argument("--skip-epoch", action="store_true", help="time the loader only (large sizes on CPU)")
    p.add_argument("--decoders", action="store_true", help="2b: each item pipeline's CPU side (item default 480)")
    p.add_argument("--item-method", choices=("squish", "crop", "pad"), default="squish", help="2b: the item method")
    main(parse(p))
