"""Fine-tuning a pre-trained encoder as a classifier (method §3.5, §9.2), on tensors: the recipe's config,
the loss, one optimiser step and the evaluation passes. The loop around the step (epochs, schedule, best
epoch) is :mod:`pipeline.evaluate.finetune_loop`, as pre-training's is :mod:`pipeline.train.engine`.

Loss: cross-entropy with the official label smoothing (1 − ε on the true class, ε/(n−1) elsewhere; ε = 0.2
for ModelNet40 only), global gradient-norm clip 10, AdamW with the "token" no-decay quirk
(``i2pmae.schedule``). Test inputs: FPS of ``points`` from index 0, no augmentation.

Voting (ModelNet40): a pass averages the logits of ``votes`` views of the test split, each the FPS
``point_all`` points, one random ``points`` subset per batch of ``vote_batch_size`` (so the voted accuracy
depends on that batch, 32 in the paper's ``--test``) and a ScaleAndTranslate(2/3–3/2, ±0.2).
``vote_repeats`` passes are run: 1 by default (one honest pass); the paper's ``--test --vote`` runs 49 and
reports the maximum (method §9.2, §12.4), which callers must say. For 2048-point inputs (ScanObjectNN)
voting is not defined by the paper's code (it raises); recipes set ``votes = 0``.
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
from i2pmae.ops import fps_eps


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 301  # the official loop: range(0, max_epoch + 1), max_epoch 300 (method §9.2)
    batch_size: int = 32  # train batches, the last partial one dropped (method §9.2)
    test_batch_size: int = 64  # total_bs·2; recipes.finetune_config sets it to a user's batch_size (memory)
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: int = 10
    schedule_epochs: int | None = None  # cosine t_initial; None: epochs − 1, the official max_epoch (300)
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    decay_token_fix: bool = False  # True: decay the token_embed weights too (changes behaviour)
    grad_clip: float = 10.0  # global L2 norm
    points: int = 1024  # input points: 1024 ModelNet40, 2048 ScanObjectNN
    label_smoothing: float = 0.2  # ε; 0 gives plain cross-entropy (ScanObjectNN)
    augment: Augment = "scale-translate"  # ModelNet40; "scale-rotate" for ScanObjectNN (method §1.6)
    votes: int = 10  # views averaged in a voting pass; 0 = no voting
    vote_repeats: int = 1  # voting passes; the paper's --test runs 49 and reports the max (method §12.4)
    vote_batch_size: int = 32  # objects sharing a vote's random subset: the paper's --test loader's batch
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimiser steps (a quick check; None: all epochs)
    precision: str = "fp32"  # "fp32" as the paper (§9.2); "bf16": the training forward under bf16 autocast
    # recompute the scale-0 token embedding in backward: less memory, same numbers
    recompute_embed: bool = True

    @property
    def t_initial(self) -> int:
        """The cosine's length in epochs: ``schedule_epochs``, else epochs − 1 (at least 1), the official
        relation of a loop of max_epoch + 1 epochs over a cosine of max_epoch (method §9.2)."""
        return self.schedule_epochs or max(self.epochs - 1, 1)


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
    """One voting pass: pool (O, point_all, 3) FPS points; per batch of ``cfg.vote_batch_size`` and vote a
    shared random subset of ``cfg.points`` plus ScaleAndTranslate; logits averaged over ``cfg.votes``."""
    model.eval()
    correct, bs = 0, cfg.vote_batch_size
    for i in range(0, len(pool), bs):
        xyz = pool[i : i + bs].to(device)
        logits = 0.0
        for _ in range(cfg.votes):
            cols = torch.randperm(pool.shape[1], generator=generator)[: cfg.points].to(device)
            logits = logits + model(scale_and_translate(xyz[:, cols], generator=generator))
        pred = (logits / cfg.votes).argmax(dim=1).cpu()
        correct += int((pred == labels[i : i + bs]).sum())
    return correct / max(len(pool), 1)


def vote_passes(
    model: PointClassifier,
    pool: Tensor,
    labels: Tensor,
    cfg: FinetuneConfig,
    generator: torch.Generator,
    device,
) -> list[float]:
    """``cfg.vote_repeats`` voting passes (:func:`vote_accuracy`) drawing on one generator in turn, so they
    differ; the first is the single pass of ``vote_repeats = 1``. The paper reports their max (§12.4)."""
    return [vote_accuracy(model, pool, labels, cfg, generator, device) for _ in range(cfg.vote_repeats)]


def evaluate_classifier(
    model: PointClassifier, test_x: Tensor, test_y: Tensor, cfg: FinetuneConfig, device
) -> tuple[float, list[float] | None]:
    """(unvoted accuracy, the ``cfg.vote_repeats`` voted accuracies or None) of a trained classifier on
    (O, P, 3) clouds: the paper's ``--test [--vote]`` (method §9.2), whose report is the max of 49."""
    model.to(device)
    eps = fps_eps(model.cfg.fps_origin_rule)
    acc = accuracy(
        model,
        fps_inputs(test_x, cfg.points, cfg.test_batch_size, device, eps),
        test_y,
        cfg.test_batch_size,
        device,
    )
    if cfg.votes <= 0:
        return acc, None
    pool = fps_inputs(test_x, point_all(cfg.points, test_x.shape[1]), cfg.test_batch_size, device, eps)
    return acc, vote_passes(model, pool, test_y, cfg, torch.Generator().manual_seed(cfg.seed + 1), device)


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
