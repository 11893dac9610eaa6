"""Pieces of the hierarchical decoder (method §7); the stages themselves run in ``I2PMAE.forward_decoder``.

The decoder's modules sit at the top level of the official state dict (``mask_token``, ``h_decoder``,
``decoder_pos_embeds``, ``token_prop``, ``decoder_norm``), so the model owns them directly.
Names below (``fuse.net``, ``extraction.operation.0.net1``) are the official ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2pmae.encoder import unpad_visible
from i2pmae.layers import apply_pointwise
from i2pmae.ops import gather_points, three_nn_interpolate


class ConvBNGELU(nn.Module):
    """1×1 Conv1d, BatchNorm1d, GELU."""

    def __init__(self, in_c: int, out_c: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(in_c, out_c, 1), nn.BatchNorm1d(out_c), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in_c) channels-last -> (..., out_c)."""
        return apply_pointwise(self.net, x)


class ResConvBlock(nn.Module):
    """Residual 1×1 conv block: GELU(BN(Conv(GELU(BN(Conv(x))))) + x).

    Note (method §7, erratum): our first written specification put a GELU inside the second branch as
    well; the official module has only Conv and BN in ``net2`` (its state dict has ``net2.0``/``net2.1``
    and no activation) and applies the GELU after the residual sum, which is what is done here.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.net1 = nn.Sequential(nn.Conv1d(channels, channels, 1), nn.BatchNorm1d(channels), nn.GELU())
        self.net2 = nn.Sequential(nn.Conv1d(channels, channels, 1), nn.BatchNorm1d(channels))

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., C) channels-last -> (..., C)."""
        return F.gelu(apply_pointwise(self.net2, apply_pointwise(self.net1, x)) + x)


class ResStack(nn.Module):
    """``blocks`` residual blocks in sequence (official name ``operation``)."""

    def __init__(self, channels: int, blocks: int = 1):
        super().__init__()
        self.operation = nn.Sequential(*(ResConvBlock(channels) for _ in range(blocks)))

    def forward(self, x: Tensor) -> Tensor:
        return self.operation(x)


class FeaturePropagation(nn.Module):
    """PointNet++ feature propagation with skip features (method §7, stage 1).

    Interpolates the coarse features onto the fine points from their 3 nearest coarse points,
    concatenates [skip, interpolated], then ``fuse`` (Conv, BN, GELU) and one residual block.
    BatchNorm statistics run over all B·M fine points.
    """

    def __init__(self, in_c: int, out_c: int, blocks: int = 1):
        super().__init__()
        self.fuse = ConvBNGELU(in_c, out_c)
        self.extraction = ResStack(out_c, blocks)

    def forward(self, xyz_fine: Tensor, xyz_coarse: Tensor, skip: Tensor, coarse: Tensor) -> Tensor:
        """xyz_fine (B, M, 3), xyz_coarse (B, Q, 3), skip (B, M, C1), coarse (B, Q, C2) -> (B, M, out_c)."""
        interp = three_nn_interpolate(xyz_fine, xyz_coarse, coarse)  # (B, M, C2)
        x = torch.cat([skip, interp], dim=-1)  # (B, M, C1 + C2)
        return self.extraction(self.fuse(x))


def top_sequence(
    tokens: Tensor, mask: Tensor, order: Tensor, centers: Tensor, mask_token: Tensor
) -> tuple[Tensor, Tensor]:
    """Stage-0 input: visible tokens first, then one mask token per masked position (method §7).

    tokens: (B, L, C) padded visible tokens, mask: (B, G) bool, order: (B, G) visible-first permutation,
    centers: (B, G, 3), mask_token: (1, C) -> sequence (B, G, C), centers in the same order (B, G, 3).
    With the same #visible in every sample (2D-guided or random masking) this is exactly the official
    [x_vis ; mask_token × #masked]; otherwise each sample's own visible count is respected.
    """
    B, G = mask.shape
    L, C = tokens.shape[1], tokens.shape[2]
    n_vis = (~mask).sum(dim=1)  # (B,)
    seq = torch.cat([tokens, tokens.new_zeros(B, G - L, C)], dim=1)  # (B, G, C)
    is_vis = torch.arange(G, device=mask.device)[None, :] < n_vis[:, None]  # (B, G) slot holds a visible
    seq = torch.where(is_vis[..., None], seq, mask_token.to(seq.dtype).expand(B, G, C))
    return seq, gather_points(centers, order)


def skip_features(tokens: Tensor, valid: Tensor, order: Tensor, mask: Tensor) -> Tensor:
    """Encoder skip features of a lower scale: (B, G, C), visible positions hold the LN-ed encoder
    output, masked positions 0 (method §7, stage 1). tokens (B, L, C), valid (B, L), order/mask (B, G)."""
    tokens = torch.where(valid[..., None], tokens, 0.0)
    return unpad_visible(tokens, order, mask, tokens.new_zeros(()))
