"""Faster steps, the same model: channels_last memory format and torch.compile, as entry settings.

Neither changes what is saved: model.safetensors and checkpoint.pt keep the weights' usual names
(the module is compiled in place, not wrapped), and after each fit the model is back in the default
layout, so TTA after training runs as `paddy predict` on the rebuilt model does.
"""

from __future__ import annotations

import torch
from fastai.callback.channelslast import ChannelsLast
from fastai.vision.all import Callback, Learner


class ChannelsLastWhileFitting(ChannelsLast):
    """fastai's ChannelsLast (the model in channels_last from each fit's start), with the batches
    converted too, and the model put back in the default layout when the fit ends."""

    def before_batch(self) -> None:
        self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in self.xb)

    def after_fit(self) -> None:
        self.learn.model.to(memory_format=torch.contiguous_format)


class PlainTensorBatches(Callback):
    """Batches as plain tensors for a compiled model: dynamo cannot trace fastai's TensorImage
    subclass (its __torch_function__ breaks inductor's batch norm)."""

    order = ChannelsLast.order + 1

    def before_batch(self) -> None:
        self.learn.xb = tuple(x.as_subclass(torch.Tensor) if isinstance(x, torch.Tensor) else x for x in self.xb)


def speed_up(learn: Learner, channels_last: bool, compile_model: bool) -> Learner:
    """`learn` with the entry's channels_last callback, and its model compiled in place (state-dict
    names unchanged, unlike the `_orig_mod.` wrapper torch.compile returns)."""
    if channels_last:
        learn.add_cb(ChannelsLastWhileFitting())
    if compile_model:
        learn.model.compile()
        learn.add_cb(PlainTensorBatches())
    return learn
