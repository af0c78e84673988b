"""torch's AdamW under fastai: the same step as fastai's Adam, and fastai's groups, freezing and rates."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_entry
from fastai.vision.all import even_mults, norm_bias_params
from torch import nn

from paddy.settings.entry import OptimizerChoice
from paddy.training.learner import build_dataloaders, build_learner
from paddy.training.optimizers import opt_func

TORCH_ADAMW = [OptimizerChoice.adamw_foreach, OptimizerChoice.adamw_fused]


def small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def stepped(make_opt, steps: int = 3, no_decay_on_norm_and_bias: bool = True) -> nn.Sequential:
    """A small model after `steps` steps with fixed gradients, two parameter groups at different rates."""
    model = small_model()
    opt = make_opt([[*model[0].parameters(), *model[1].parameters()], list(model[3].parameters())], lr=1e-2)
    if no_decay_on_norm_and_bias:
        for p in norm_bias_params(model, with_bias=True):
            opt.state[p]["do_wd"] = False  # what fastai's Learner does with wd_bn_bias=False
    opt.set_hypers(lr=[3e-3, 3e-2], wd=0.1)  # discriminative rates; a weight decay large enough to show
    for step in range(steps):
        generator = torch.Generator().manual_seed(step)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator)
        opt.step()
    return model


@pytest.mark.parametrize("choice", TORCH_ADAMW)
def test_a_torch_adamw_step_equals_fastais_adam_step(choice):
    fastai, torch_adamw = stepped(opt_func(OptimizerChoice.fastai)), stepped(opt_func(choice))
    for (name, expected), got in zip(fastai.state_dict().items(), torch_adamw.state_dict().values()):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6, msg=name)


def test_norm_and_bias_parameters_are_not_decayed():
    """Without fastai's rule torch would decay them too: the biases would differ."""
    with_rule = stepped(opt_func(OptimizerChoice.adamw_foreach))
    decay_all = stepped(opt_func(OptimizerChoice.adamw_foreach), no_decay_on_norm_and_bias=False)
    assert not torch.allclose(with_rule[0].bias, decay_all[0].bias)
    torch.testing.assert_close(with_rule[0].weight, decay_all[0].weight, rtol=0, atol=0)


@pytest.mark.parametrize("choice", TORCH_ADAMW)
def test_fastais_groups_freezing_and_discriminative_rates_still_apply(tiny_data, choice):
    def learner(opt):
        entry = tiny_entry(opt=opt, finetune=True)
        return build_learner(build_dataloaders(tiny_data, entry, 0, 8, 0), entry, [], tiny_data)

    reference, learn = learner(OptimizerChoice.fastai), learner(choice)
    for each in (reference, learn):
        each.create_opt()
        each.freeze()
    assert len(learn.opt.param_lists) == len(reference.opt.param_lists) > 1
    trainable = [[p.requires_grad for p in group] for group in learn.opt.param_lists]
    assert trainable == [[p.requires_grad for p in group] for group in reference.opt.param_lists]
    assert not all(trainable[0]) and any(trainable[0]), "a frozen body still trains its BatchNorm (train_bn)"
    learn.opt.set_hypers(lr=slice(1e-4, 1e-2))
    rates = [group["lr"] for group in learn.opt.opt.param_groups]
    assert rates == pytest.approx(list(even_mults(1e-4, 1e-2, len(rates))))
