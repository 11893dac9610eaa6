"""Part-segmentation training on tensors (method §14.3): the recipe's config, the inputs (points drawn with
replacement from each shape's own points, isotropic scale and shift), one optimiser step and the test pass.
The loop around the step (epochs, schedule, metrics per epoch) is :mod:`pipeline.evaluate.partseg_loop`.

The reference step takes **two** optimiser steps per batch on the same gradient: one unclipped, one after
clipping the gradient norm at 10 (method §14.3); ``single_step=True`` is the named fix (clip, then
one step). All randomness comes from explicit CPU generators, so a seed fixes the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from i2pmae.ops import farthest_point_sample, fps_eps, gather_points
from i2pmae.partseg import PartSegmenter

TestPoints = Literal["resample", "fps", "all"]


@dataclass(frozen=True)
class PartSegTrainConfig:
    epochs: int = 300
    batch_size: int = 16  # train batches, the last partial one dropped
    test_batch_size: int = 16
    lr: float = 2e-4
    weight_decay: float = 0.05  # not on biases, 1-D params and names containing "token"
    warmup_epochs: int = 10
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    grad_clip: float = 10.0  # global L2 norm, before the second step (or the only one with single_step)
    points: int = 2048  # drawn with replacement from each shape's points, at test time too
    scale: tuple[float, float] = (0.8, 1.25)  # one isotropic factor per shape
    shift: float = 0.1  # per shape and axis, U(−shift, shift)
    single_step: bool = False  # True: clip, then one step (the fix); False: the reference's two steps
    test_points: TestPoints = "resample"  # resample (reference) | fps (fixed FPS subset) | all points
    seed: int = 0
    max_steps: int | None = None  # stop after this many batches (a quick check)
    precision: str = "fp32"  # "bf16": the forward under bf16 autocast (speed)


def draw_points(
    points: Tensor, parts: Tensor, count: Tensor, n: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``n`` points per shape drawn uniformly with replacement among its first ``count`` rows.

    points (B, P, 3), parts (B, P), count (B,) -> xyz (B, n, 3), target (B, n)."""
    idx = (
        (torch.rand(len(count), n, generator=generator) * count[:, None])
        .long()
        .clamp(max=points.shape[1] - 1)
    )
    idx = idx.to(points.device)
    return gather_points(points, idx), torch.gather(parts, 1, idx)


def augment(xyz: Tensor, cfg: PartSegTrainConfig, generator: torch.Generator) -> Tensor:
    """Per shape an isotropic scale U(scale) and a shift U(−shift, shift)³: (B, N, 3) -> (B, N, 3)."""
    B = xyz.shape[0]
    scale = torch.empty(B, 1, 1).uniform_(*cfg.scale, generator=generator)
    offset = torch.empty(B, 1, 3).uniform_(-cfg.shift, cfg.shift, generator=generator)
    return xyz * scale.to(xyz) + offset.to(xyz)


def partseg_step(
    model: PartSegmenter,
    optimizer: torch.optim.Optimizer,
    xyz: Tensor,
    category: Tensor,
    target: Tensor,
    cfg: PartSegTrainConfig,
) -> tuple[Tensor, Tensor, bool]:
    """One batch of training (method §14.3) on xyz (B, N, 3), category (B,), target (B, N) global part ids
    -> (loss, log-probabilities (B, N, parts), whether it stepped).

    Negative log-likelihood over all points; the reference's two steps (unclipped, then clipped at
    ``cfg.grad_clip``) or with ``cfg.single_step`` one clipped step. A non-finite loss steps nothing."""
    with torch.autocast(xyz.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        logp = model(xyz, category)
    logp = logp.float()
    loss = F.nll_loss(logp.reshape(-1, logp.shape[-1]), target.reshape(-1))
    if not bool(torch.isfinite(loss)):
        return loss, logp, False
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if not cfg.single_step:
        optimizer.step()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss, logp, True


@torch.no_grad()
def predict(
    model: PartSegmenter,
    points: Tensor,
    parts: Tensor,
    count: Tensor,
    category: Tensor,
    cfg: PartSegTrainConfig,
    generator: torch.Generator,
    device: str | torch.device,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Test pass in eval mode: per shape the log-probabilities (N_i, parts) and the true parts (N_i,).

    ``cfg.test_points``: "resample" draws ``cfg.points`` with replacement (the reference, new each pass),
    "fps" takes the FPS subset of ``cfg.points`` from the shape's first point, "all" every point (one
    shape per forward pass)."""
    model.eval()
    logps: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    if cfg.test_points == "resample":
        for i in range(0, len(count), cfg.test_batch_size):
            sl = slice(i, i + cfg.test_batch_size)
            xyz, target = draw_points(points[sl], parts[sl], count[sl], cfg.points, generator)
            out = model(xyz.to(device), category[sl].to(device)).float().cpu().numpy()
            logps += list(out)
            targets += list(target.numpy())
        return logps, targets
    for i in range(len(count)):
        xyz, target = points[i : i + 1, : int(count[i])], parts[i : i + 1, : int(count[i])]
        if cfg.test_points == "fps" and xyz.shape[1] > cfg.points:
            idx = farthest_point_sample(xyz, cfg.points, fps_eps(model.cfg.fps_origin_rule))  # (1, points)
            xyz, target = gather_points(xyz, idx), torch.gather(target, 1, idx)
        out = model(xyz.to(device), category[i : i + 1].to(device)).float().cpu().numpy()
        logps.append(out[0])
        targets.append(target[0].numpy())
    return logps, targets
