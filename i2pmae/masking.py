"""Which top-scale tokens a pre-training step masks (method §4): 2D-guided (I2P-MAE) or uniformly random
(Point-M2AE). Mask polarity everywhere: True = masked (removed), False = visible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from i2pmae.errors import InputError


def guided_mask(saliency: Tensor, ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """2D-guided masking (method §4). saliency: (B, V, G) per-view values at the top-scale centres, or
    (B, G) already combined -> mask (B, G) bool, True = masked.

    Mean over views, softmax over tokens (temperature 1, no sharpening), a full permutation drawn by
    ``torch.multinomial`` without replacement; the first G - int(ratio·G) drawn stay visible.
    ``generator`` must live on saliency's device; None uses the global RNG.
    """
    s = saliency.mean(dim=1) if saliency.dim() == 3 else saliency  # (B, G)
    if s.dim() != 2:
        raise InputError(f"saliency must be (B, V, G) or (B, G), got shape {tuple(saliency.shape)}")
    B, G = s.shape
    num_keep = G - int(ratio * G)
    p = F.softmax(s.float(), dim=1)  # (B, G)
    drawn = torch.multinomial(p, G, replacement=False, generator=generator)  # (B, G) permutation
    mask = torch.ones(B, G, dtype=torch.bool, device=s.device)
    return mask.scatter_(1, drawn[:, :num_keep], False)


def random_mask(
    batch: int, num_tokens: int, ratio: float, device=None, generator: torch.Generator | None = None
) -> Tensor:
    """Uniform random masking of exactly int(ratio·G) tokens per sample (Point-M2AE) -> (B, G) bool."""
    noise = torch.rand(batch, num_tokens, device=device, generator=generator)
    chosen = noise.argsort(dim=1)[:, : int(ratio * num_tokens)]  # (B, num_mask)
    return torch.zeros(batch, num_tokens, dtype=torch.bool, device=device).scatter_(1, chosen, True)
