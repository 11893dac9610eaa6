"""Inputs of fine-tuning (method §1.6, §9.2): training-time point sampling, augmentations, test-time FPS.

All randomness comes from an explicit CPU ``torch.Generator``, so a seed fixes the whole run.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from i2pmae.augment import rotate_y, scale_and_translate
from i2pmae.evaluate import select_points
from i2pmae.ops import farthest_point_sample, gather_points

Augment = Literal["scale-translate", "scale-rotate", "none"]


def point_all(points: int, available: int) -> int:
    """FPS pool before the random subset: 1200 for 1024, 2400 for 2048 (× 75/64), capped at the cloud."""
    return min(available, {8192: 8192}.get(points, round(points * 75 / 64)))


def train_sample(xyz: Tensor, points: int, generator: torch.Generator, origin_eps: float = 0.0) -> Tensor:
    """Training-time sampling (method §9.2): (B, P, 3) -> (B, points, 3).

    With the pool as large as the cloud, FPS only reorders and the shared random subset of a shuffled
    cloud is a per-object random subset, so that is drawn directly (no FPS). ``origin_eps``: the FPS
    near-origin rule (:func:`i2pmae.ops.farthest_point_sample`, §12.3).
    """
    B, P, _ = xyz.shape
    pool = point_all(points, P)
    order = torch.rand(B, P, generator=generator).argsort(dim=1).to(xyz.device)  # (B, P) shuffle
    xyz = gather_points(xyz, order)
    if pool >= P:
        return xyz[:, :points]
    xyz = gather_points(xyz, farthest_point_sample(xyz, pool, origin_eps))  # (B, pool, 3)
    cols = torch.randperm(pool, generator=generator)[:points].to(xyz.device)  # shared by the batch
    return xyz[:, cols]


def augment(xyz: Tensor, how: Augment, generator: torch.Generator) -> Tensor:
    if how == "scale-translate":
        return scale_and_translate(xyz, generator=generator)
    if how == "scale-rotate":
        return rotate_y(scale_and_translate(xyz, 0.9, 1.1, 0.0, generator), generator)
    return xyz


@torch.no_grad()
def fps_inputs(
    xyz: Tensor, n: int, batch_size: int, device: str | torch.device, origin_eps: float = 0.0
) -> Tensor:
    """Deterministic test inputs: FPS from index 0 of every cloud (near-origin rule ``origin_eps``),
    batched on ``device`` -> CPU."""
    return torch.cat(
        [
            select_points(xyz[i : i + batch_size].to(device), n, "fps", origin_eps).cpu()
            for i in range(0, len(xyz), batch_size)
        ]
    )
