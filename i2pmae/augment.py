"""Point-cloud augmentations of pre-training and fine-tuning (method §1.6). Shapes: (B, N, 3) → (B, N, 3).

Pre-training draws from the global RNG on the input's device (as the official loop does); fine-tuning passes
an explicit CPU ``torch.Generator`` so that one seed fixes the whole run.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SCALE_LOW, SCALE_HIGH, SHIFT = 2 / 3, 3 / 2, 0.2  # PointcloudScaleAndTranslate's defaults (method §1.6)


def scale_and_translate(
    xyz: Tensor,
    low: float = SCALE_LOW,
    high: float = SCALE_HIGH,
    shift: float = SHIFT,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per object, per-axis scale U(low, high)³ and shift U(−shift, shift)³ (method §1.6).

    The draws come from ``generator`` on its device, or without one from the global RNG on the input's
    device; they are cast to the input's device and dtype."""
    device = xyz.device if generator is None else generator.device
    B = xyz.shape[0]
    scale = torch.empty(B, 1, 3, device=device).uniform_(low, high, generator=generator)
    offset = torch.empty(B, 1, 3, device=device).uniform_(-shift, shift, generator=generator)
    return xyz * scale.to(xyz) + offset.to(xyz)


def rotate_y(xyz: Tensor, generator: torch.Generator) -> Tensor:
    """One rotation about the y axis by θ ~ U(−π, π) for the whole batch, p ← p·Rᵀ (method §1.6)."""
    theta = float((torch.rand(1, generator=generator) * 2 - 1) * math.pi)
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=xyz.dtype, device=xyz.device)
    return xyz @ rot.T
