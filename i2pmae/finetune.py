"""Fine-tuning a pre-trained encoder as a classifier (method §3.5, §9.2), on tensors: the recipe's config,
the loss, one optimiser step and the evaluation passes. The loop around the step (epochs, schedule, best
epoch) is :mod:`pipeline.evaluate.finetune_loop`, as pre-training's is :mod:`pipeline.train.engine`.

Loss: cross-entropy with the official label smoothing (1 − ε on the true class, ε/(n−1) elsewhere; ε = 0.2
for ModelNet40 only), global gradient-norm clip 10, AdamW with the "token" no-decay quirk
(``i2pmae.schedule``). Test inputs: FPS of ``points`` from index 0, no augmentation.

Voting (ModelNet40): ``votes`` passes over the test split, each the FPS ``point_all`` points, one
random ``points`` subset per batch (so the voted accuracy depends on the test batch size, as in the
paper's code) and a ScaleAndTranslate(2/3–3/2, ±0.2); logits averaged. One
voting pass is run (never the maximum over repeated passes, method §12.4). For 2048-point inputs
(ScanObjectNN) voting is not defined by the paper's code (it raises); recipes set ``votes = 0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from i2pmae.augment import scale_and_translate
from i2pmae.classifier import ClassifierConfig, PointClassifier
from i2pmae.finetune_inputs import Augment, fps_inputs, point_all


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 300  # the official loop runs range(0, 301); its extra last epoch trains at ≈ min_lr
    batch_size: int = 32  # train batches, the last partial one dropped (method §9.2)
    test_batch_size: int = 64  # total_bs·2; recipes.finetune_config sets it to a user's batch_size (memory)
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: int = 10
    schedule_epochs: int | None = None  # cosine t_initial; None = epochs (the official 300 = max_epoch)
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    decay_token_fix: bool = False  # True: decay the token_embed weights too (changes behaviour)
    grad_clip: float = 10.0  # global L2 norm
    points: int = 1024  # input points: 1024 ModelNet40, 2048 ScanObjectNN
    label_smoothing: float = 0.2  # ε; 0 gives plain cross-entropy (ScanObjectNN)
    augment: Augment = "scale-translate"  # ModelNet40; "scale-rotate" for ScanObjectNN (method §1.6)
    votes: int = 10  # views of the one voting pass; 0 = no voting
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimiser steps (a quick check; None: all epochs)
    precision: str = "fp32"  # "fp32" as the paper (§9.2); "bf16": the training forward under bf16 autocast
    # recompute the scale-0 token embedding in backward: less memory, same numbers
    recompute_embed: bool = True


def smooth_cross_entropy(logits: Tensor, target: Tensor, eps: float) -> Tensor:
    """The official smoothed loss: target 1 − ε on the true class, ε/(n − 1) on the others."""
    if eps == 0:
        return F.cross_entropy(logits, target)
    n = logits.shape[1]
    one_hot = torch.zeros_like(logits).scatter_(1, target[:, None], 1.0)
    soft = one_hot * (1 - eps) + (1 - one_hot) * eps / (n - 1)
    return -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def build_classifier(
    cfg: ClassifierConfig, encoder_state: Mapping[str, Tensor] | None, seed: int
) -> PointClassifier:
    """A fresh classifier (head, norm and drop path seeded by ``seed``) with the pre-trained encoder."""
    torch.manual_seed(seed)
    model = PointClassifier(cfg)
    if encoder_state is not None:
        model.load_pretrained_encoder(encoder_state)
    return model


@torch.no_grad()
def accuracy(model: PointClassifier, xyz: Tensor, labels: Tensor, batch_size: int, device) -> float:
    """Unvoted accuracy of ``model`` in eval mode on ready inputs xyz (O, N, 3)."""
    model.eval()
    correct = 0
    for i in range(0, len(xyz), batch_size):
        logits = model(xyz[i : i + batch_size].to(device))
        correct += int((logits.argmax(dim=1).cpu() == labels[i : i + batch_size]).sum())
    return correct / max(len(xyz), 1)


@torch.no_grad()
def vote_accuracy(
    model: PointClassifier,
    pool: Tensor,
    labels: Tensor,
    cfg: FinetuneConfig,
    generator: torch.Generator,
    device,
) -> float:
    """One voting pass: pool (O, point_all, 3) FPS points; per batch and vote a shared random subset
    of ``cfg.points`` plus ScaleAndTranslate; logits averaged over ``cfg.votes``."""
    model.eval()
    correct = 0
    for i in range(0, len(pool), cfg.test_batch_size):
        xyz = pool[i : i + cfg.test_batch_size].to(device)
        logits = 0.0
        for _ in range(cfg.votes):
            cols = torch.randperm(pool.shape[1], generator=generator)[: cfg.points].to(device)
            logits = logits + model(scale_and_translate(xyz[:, cols], generator=generator))
        pred = (logits / cfg.votes).argmax(dim=1).cpu()
        correct += int((pred == labels[i : i + cfg.test_batch_size]).sum())
    return correct / max(len(pool), 1)


def evaluate_classifier(
    model: PointClassifier, test_x: Tensor, test_y: Tensor, cfg: FinetuneConfig, device
) -> tuple[float, float | None]:
    """(unvoted, voted or None) accuracy of a trained classifier on (O, P, 3) clouds."""
    model.to(device)
    acc = accuracy(
        model,
        fps_inputs(test_x, cfg.points, cfg.test_batch_size, device),
        test_y,
        cfg.test_batch_size,
        device,
    )
    if cfg.votes <= 0:
        return acc, None
    pool = fps_inputs(test_x, point_all(cfg.points, test_x.shape[1]), cfg.test_batch_size, device)
    return acc, vote_accuracy(model, pool, test_y, cfg, torch.Generator().manual_seed(cfg.seed + 1), device)


def finetune_step(
    model: PointClassifier,
    optimizer: torch.optim.Optimizer,
    xyz: Tensor,
    target: Tensor,
    cfg: FinetuneConfig,
) -> tuple[Tensor, Tensor, bool]:
    """One optimiser step of fine-tuning (method §9.2) on ready inputs xyz (B, N, 3), target (B,) long →
    (loss, logits (B, classes), whether it stepped).

    Smoothed cross-entropy (ε = ``cfg.label_smoothing``) in fp32 on logits from the forward (under bf16
    autocast when ``cfg.precision`` is "bf16"), global gradient-norm clip ``cfg.grad_clip``, then the step. A
    non-finite loss takes no step: nothing is zeroed or updated, and (False) is returned."""
    with torch.autocast(xyz.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        logits = model(xyz)
    loss = smooth_cross_entropy(logits.float(), target, cfg.label_smoothing)
    if not bool(torch.isfinite(loss)):
        return loss, logits, False
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss, logits, True
