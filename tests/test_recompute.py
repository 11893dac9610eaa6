"""Recomputing the scale-0 token embedding in backward (i2pmae.recompute) changes no number: one
training step, and a whole short fine-tuning, are bit-identical with and without it (tolerance 0:
torch.equal), BatchNorm running statistics included; and it does keep less for backward."""

from __future__ import annotations

from dataclasses import replace

import torch

from i2pmae.finetune import build_classifier, smooth_cross_entropy
from i2pmae.model import I2PMAEConfig
from i2pmae.recipes import RECIPES, classifier_config, finetune_config
from pipeline.evaluate.finetune_loop import finetune

TINY = I2PMAEConfig(
    num_groups=(32, 16, 8),
    group_sizes=(8, 4, 4),
    encoder_dims=(16, 32, 64),
    encoder_depths=(1, 1, 1),
    num_heads=2,
    decoder_dims=(64, 32),
    targets="3d",
)
P = 96


def classifier(recompute: bool):
    rec = RECIPES["modelnet40"]
    model = build_classifier(classifier_config(rec, 4, TINY, P), None, seed=0)  # drop path and dropout on
    model.h_encoder.token_embed[0].recompute = recompute
    return model.train()


def one_step(recompute: bool) -> tuple[torch.Tensor, dict, dict, int, int]:
    """Loss, gradients, buffers after one step; calls of the scale-0 BatchNorms; bytes kept for backward."""
    model = classifier(recompute)
    bn_calls = []
    for m in model.h_encoder.token_embed[0].modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.register_forward_hook(lambda *a: bn_calls.append(1))
    kept = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept.append(t.numel() * t.element_size())
        return t

    g = torch.Generator().manual_seed(1)
    xyz, target = torch.rand(6, P, 3, generator=g) * 2 - 1, torch.arange(6) % 4
    torch.manual_seed(5)  # dropout and drop path draw the same numbers in both runs
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):  # sees what the checkpoint keeps
        loss = smooth_cross_entropy(model(xyz), target, 0.2)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    return loss.detach(), grads, buffers, len(bn_calls), sum(kept)


def test_a_recomputed_step_is_bit_identical_and_updates_batchnorm_once():
    loss0, grads0, bufs0, calls0, kept0 = one_step(recompute=False)
    loss1, grads1, bufs1, calls1, kept1 = one_step(recompute=True)
    assert calls0 == 2 and calls1 == 3  # the first BatchNorm ran again in backward: it was recomputed
    assert torch.equal(loss0, loss1)
    assert grads0.keys() == grads1.keys() and all(torch.equal(grads0[k], grads1[k]) for k in grads0)
    assert all(grads0[k].abs().sum() > 0 for k in grads0 if "token_embed.0." in k)
    # running_mean / running_var / num_batches_tracked: one update per step, as without recomputation
    assert bufs0.keys() == bufs1.keys() and all(torch.equal(bufs0[k], bufs1[k]) for k in bufs0)
    assert int(bufs1["h_encoder.token_embed.0.first_conv.1.num_batches_tracked"]) == 1
    # Kept for backward: 6·32·8 members × (128 + 128 + 512 channels) of float32 fewer, groups kept instead.
    members = 6 * 32 * 8
    assert kept0 - kept1 >= members * (128 + 128 + 512) * 4 - members * 3 * 4


def test_finetuning_with_and_without_recomputation_ends_bit_identical():
    rec = RECIPES["modelnet40"]
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(12, 128, 3, generator=g) * 2 - 1, torch.arange(12) % 4
    cfg = finetune_config(rec, batch_size=4, epochs=2, points=P, votes=0)
    runs = []
    for recompute in (False, True):
        model = classifier(False)
        res = finetune(model, x, y, x[:8], y[:8], replace(cfg, recompute_embed=recompute))
        runs.append(([(h.loss, h.train_acc, h.test_acc) for h in res.history], model.state_dict()))
    (hist0, state0), (hist1, state1) = runs
    assert hist0 == hist1 and len(hist0) == 2
    assert all(torch.equal(state0[k], state1[k]) for k in state0)
