"""Optimiser parameter groups and the learning-rate schedule of pre-training (method §9.1).

Faithful by default, including two quirks that change what is learnt (each has an option):
* no weight decay for every 1-D parameter, every ``.bias`` and every name containing the substring
  "token", which catches ``mask_token`` but also all ``token_embed.*`` and ``token_prop.*`` weights
  (``decay_token_fix=True`` restricts the rule to ``mask_token``);
* the warm-up + cosine schedule is stepped once per epoch *after* the epoch, so epoch e trains with
  lr(e − 1) (epochs 0 and 1 both at the warm-up start), and its cosine spans 400 epochs while training
  stops at 300, ending at ≈1.5e-4 (``cosine_to_end=True`` spans the cosine over the epochs run).
"""

from __future__ import annotations

import math

import torch


def param_groups(model: torch.nn.Module, weight_decay: float, decay_token_fix: bool = False) -> list[dict]:
    """Two AdamW groups: no decay (1-D, biases, "token" names) and decay ``weight_decay``."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        tokenish = ("mask_token" in name) if decay_token_fix else ("token" in name)
        (no_decay if param.ndim <= 1 or name.endswith(".bias") or tokenish else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def lr_at(t: int, base_lr: float, warmup: int, t_initial: int, warmup_lr: float, min_lr: float) -> float:
    """timm's CosineLRScheduler (cycle_limit 1, no warm-up prefix) at integer epoch ``t``."""
    if t < warmup:
        return warmup_lr + t * (base_lr - warmup_lr) / warmup
    if t >= t_initial:
        return min_lr
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t / t_initial))


def epoch_lr(
    epoch: int,
    base_lr: float,
    epochs: int,
    warmup: int = 10,
    schedule_epochs: int = 400,
    warmup_lr: float = 1e-6,
    min_lr: float = 1e-6,
    cosine_to_end: bool = False,
) -> float:
    """The lr that epoch ``epoch`` (0-based) trains with: lr(epoch − 1), and the start value at epoch 0."""
    t_initial = epochs if cosine_to_end else schedule_epochs
    return lr_at(max(epoch - 1, 0), base_lr, warmup, t_initial, warmup_lr, min_lr)
