"""The rule both training loops live by (docs/training.md, "The training loop"): one optimiser step is a
function in i2pmae — pre-training's ``pretrain_step``, fine-tuning's ``finetune_step`` — that updates the
weights on a finite loss and, on a non-finite one, zeroes and updates nothing and says so."""

from __future__ import annotations

import copy

import pytest
import torch

from i2pmae.augment import scale_and_translate
from i2pmae.finetune import FinetuneConfig, build_classifier, finetune_step
from i2pmae.model import I2PMAE, I2PMAEConfig
from i2pmae.pretrain import Batch, pretrain_step
from i2pmae.recipes import RECIPES, classifier_config
from tests.builders import TINY_ENCODER


def _pretraining():
    torch.manual_seed(0)
    model = I2PMAE(I2PMAEConfig(**{**TINY_ENCODER, "masking": "random"}))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def _finetuning():
    ccfg = classifier_config(RECIPES["obj-bg"], 3, I2PMAEConfig(**TINY_ENCODER), 48)
    model = build_classifier(ccfg, None, seed=0)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def _state(model):
    return copy.deepcopy(model.state_dict())


def _changed(before, model):
    return [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]


def _steps(clouds):
    """Both steps on the same clouds (B, 48, 3) → [(stepped, names of changed tensors, grads left)]."""
    out = []
    model, opt = _pretraining()
    before = _state(model)
    _, stepped = pretrain_step(model, opt, Batch(clouds, None), augment=False)
    out.append((stepped, _changed(before, model), [p.grad for p in model.parameters() if p.grad is not None]))
    model, opt = _finetuning()
    model.train()
    before = _state(model)
    _, _, stepped = finetune_step(model, opt, clouds, torch.tensor([0, 1, 2, 0]), FinetuneConfig(points=48))
    out.append((stepped, _changed(before, model), [p.grad for p in model.parameters() if p.grad is not None]))
    return out


def test_a_finite_loss_updates_the_weights_in_both_loops():
    clouds = torch.rand(4, 48, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for stepped, changed, grads in _steps(clouds):
        assert stepped and changed and grads


def test_a_non_finite_loss_takes_no_step_in_either_loop():
    clouds = torch.rand(4, 48, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    clouds[0, 5] = float("nan")
    for stepped, changed, grads in _steps(clouds):
        assert not stepped
        assert [k for k in changed if "running" not in k and "num_batches" not in k] == []  # BN stats aside
        assert grads == []  # nothing was back-propagated


@pytest.mark.parametrize("device_generator", [False, True])
def test_scale_and_translate_draws_inside_its_bounds(device_generator):
    """One augmentation for both loops (method §1.6): per object and axis, scale in [low, high], shift in
    [−shift, shift]; pre-training draws from the global RNG, fine-tuning from its own CPU generator."""

    def draw(xyz):  # the same seed each time: the same scale and shift
        g = torch.Generator().manual_seed(0) if device_generator else None
        if g is None:
            torch.manual_seed(0)
        return scale_and_translate(xyz, 0.9, 1.1, 0.05, generator=g)

    shift = draw(torch.zeros(64, 1, 3))
    scale = draw(torch.ones(64, 1, 3)) - shift
    assert shift.abs().max() <= 0.05 and shift.std() > 0.01
    assert scale.min() >= 0.9 - 1e-6 and scale.max() <= 1.1 + 1e-6 and scale.std() > 0.03
    assert torch.equal(draw(torch.ones(64, 1, 3)), scale + shift)
