"""Inputs of fine-tuning (method §1.6, §9.2): training-time point sampling, augmentations, test-time FPS.

All randomness comes from an explicit CPU ``torch.Generator``, so a seed fixes the whole run.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from i2pmae.evaluate import select_points
from i2pmae.ops import farthest_point_sample, gather_points

Augment = Literal["scale-translate", "scale-rotate", "none"]


def point_all(points: int, available: int) -> int:
    """FPS pool before the random subset: 1200 for 1024, 2400 for 2048 (× 75/64), capped at the cloud."""
    return min(available, {8192: 8192}.get(points, round(points * 75 / 64)))


def train_sample(xyz: Tensor, points: int, generator: torch.Generator) -> Tensor:
    """Training-time sampling (method §9.2): (B, P, 3) -> (B, points, 3).

    With the pool as large as the cloud, FPS only reorders and the shared random subset of a shuffled
    cloud is a per-object random subset, so that is drawn directly (no FPS).
    """
    B, P, _ = xyz.shape
    pool = point_all(points, P)
    order = torch.rand(B, P, generator=generator).argsort(dim=1).to(xyz.device)  # (B, P) shuffle
    xyz = gather_points(xyz, order)
    if pool >= P:
        return xyz[:, :points]
    xyz = gather_points(xyz, farthest_point_sample(xyz, pool))  # (B, pool, 3)
    cols = torch.randperm(pool, generator=generator)[:points].to(xyz.device)  # shared by the batch
    return xyz[:, cols]


def scale_and_translate(
    xyz: Tensor, generator: torch.Generator, low: float = 2 / 3, high: float = 3 / 2, shift: float = 0.2
) -> Tensor:
    """Per object, per-axis scale U(low, high)³ and shift U(−shift, shift)³ (method §1.6).

    Pre-training's :func:`i2pmae.pretrain.scale_and_translate` draws the same distribution with
    ``uniform_(low, high)`` from the global RNG on the input's device; this one computes
    ``rand·(high − low) + low`` from an explicit CPU generator. The two round differently in the last bit,
    so merging them would change the draws the tests and the audits pin."""
    B = xyz.shape[0]
    scale = torch.rand(B, 1, 3, generator=generator) * (high - low) + low
    offset = (torch.rand(B, 1, 3, generator=generator) * 2 - 1) * shift
    return xyz * scale.to(xyz) + offset.to(xyz)


def rotate_y(xyz: Tensor, generator: torch.Generator) -> Tensor:
    """One rotation about the y axis by θ ~ U(−π, π) for the whole batch, p ← p·Rᵀ (method §1.6)."""
    theta = float((torch.rand(1, generator=generator) * 2 - 1) * math.pi)
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=xyz.dtype, device=xyz.device)
    return xyz @ rot.T


def augment(xyz: Tensor, how: Augment, generator: torch.Generator) -> Tensor:
    if how == "scale-translate":
        return scale_and_translate(xyz, generator)
    if how == "scale-rotate":
        return rotate_y(scale_and_translate(xyz, generator, 0.9, 1.1, 0.0), generator)
    return xyz


@torch.no_grad()
def fps_inputs(xyz: Tensor, n: int, batch_size: int, device: str | torch.device) -> Tensor:
    """Deterministic test inputs: FPS from index 0 of every cloud, batched on ``device`` -> CPU."""
    return torch.cat(
        [
            select_points(xyz[i : i + batch_size].to(device), n, "fps").cpu()
            for i in range(0, len(xyz), batch_size)
        ]
    )
