"""Part segmentation (method §14): the hierarchical encoder, every scale upsampled to the input points, a
per-point head conditioned on the object's category.

Shapes: xyz (B, N, 3), category (B,) long -> log-probabilities (B, N, n_parts). State-dict names follow the
family's segmentation model (``h_encoder``, ``propagations``, ``label_conv``, ``convs1..4``, ``bns1..3``), so
a pre-training state dict (ours, the official ``base_model``, Point-M2AE's) loads into ``h_encoder``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2pmae.encoder import SegmentationEncoder, load_pretrained
from i2pmae.errors import InputError
from i2pmae.ops import fps_eps, three_nn_interpolate
from i2pmae.tokenizer import group_multiscale


@dataclass(frozen=True)
class PartSegConfig:
    """The segmentation model of method §14.2 (defaults: ShapeNetPart's 16 categories and 50 parts)."""

    n_categories: int = 16
    n_parts: int = 50
    num_groups: tuple[int, ...] = (512, 256, 64)  # FPS centres per scale, as in pre-training
    group_sizes: tuple[int, ...] = (16, 8, 8)
    local_radius: tuple[float, ...] = (0.32, 0.64, 1.28)  # attention only within r_s (off in pre-training)
    encoder_dims: tuple[int, ...] = (96, 192, 384)  # must equal the pre-trained encoder's
    encoder_depths: tuple[int, ...] = (5, 5, 5)
    num_heads: int = 6
    mlp_ratio: float = 4.0
    drop_path: float = 0.1  # linspace(0, 0.1, 15) over the encoder blocks
    propagation: tuple[int, ...] = (1536, 1024)  # per-scale MLP after 3-NN interpolation (+ xyz)
    label_dim: int = 64  # the category one-hot through Conv1d → BN → LeakyReLU(0.2)
    head: tuple[int, ...] = (1024, 512, 256)  # per-point Conv1d widths before the part logits
    head_dropout: float = 0.5  # after the first head layer
    fps_origin_rule: bool = False  # the pre-trained encoder's FPS rule (I2PMAEConfig, method §12.3)


def _conv_bn(c_in: int, c_out: int) -> tuple[nn.Conv1d, nn.BatchNorm1d]:
    return nn.Conv1d(c_in, c_out, 1), nn.BatchNorm1d(c_out)


class FeaturePropagation(nn.Module):
    """One scale's tokens to every input point (method §14.2): 3-NN inverse-distance interpolation, the
    point's xyz prepended, then Conv1d → BN → ReLU per width of ``mlp``."""

    def __init__(self, in_channel: int, mlp: tuple[int, ...]):
        super().__init__()
        self.mlp_convs, self.mlp_bns = nn.ModuleList(), nn.ModuleList()
        for out in mlp:
            conv, bn = _conv_bn(in_channel, out)
            self.mlp_convs.append(conv)
            self.mlp_bns.append(bn)
            in_channel = out

    def forward(self, xyz: Tensor, centers: Tensor, tokens: Tensor) -> Tensor:
        """xyz (B, N, 3), centers (B, G, 3), tokens (B, G, C) -> (B, mlp[-1], N)."""
        up = three_nn_interpolate(xyz, centers, tokens)  # (B, N, C)
        x = torch.cat([xyz, up], dim=-1).transpose(1, 2)  # (B, 3 + C, N)
        for conv, bn in zip(self.mlp_convs, self.mlp_bns, strict=True):
            x = F.relu(bn(conv(x)))
        return x


class PartSegmenter(nn.Module):
    """xyz (B, N, 3), category (B,) long -> per-point log-probabilities over all parts (B, N, n_parts)."""

    def __init__(self, cfg: PartSegConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or PartSegConfig()
        self.h_encoder = SegmentationEncoder(cfg)
        self.propagations = nn.ModuleList(
            FeaturePropagation(d + 3, cfg.propagation) for d in cfg.encoder_dims
        )
        self.label_conv = nn.Sequential(
            nn.Conv1d(cfg.n_categories, cfg.label_dim, 1, bias=False),
            nn.BatchNorm1d(cfg.label_dim),
            nn.LeakyReLU(0.2),
        )
        per_point = len(cfg.encoder_dims) * cfg.propagation[-1]  # 3072: the three upsampled maps
        widths = (2 * per_point + cfg.label_dim, *cfg.head)  # 6208 → 1024 → 512 → 256
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True), start=1):
            conv, bn = _conv_bn(c_in, c_out)
            setattr(self, f"convs{i}", conv)
            setattr(self, f"bns{i}", bn)
        self.dp1 = nn.Dropout(cfg.head_dropout)
        setattr(self, f"convs{len(cfg.head) + 1}", nn.Conv1d(cfg.head[-1], cfg.n_parts, 1))

    def forward(self, xyz: Tensor, category: Tensor) -> Tensor:
        if xyz.dim() != 3 or xyz.shape[-1] != 3:
            raise InputError(f"xyz must be (B, N, 3), got shape {tuple(xyz.shape)}")
        B, N, _ = xyz.shape
        g = group_multiscale(
            xyz, self.cfg.num_groups, self.cfg.group_sizes, fps_eps(self.cfg.fps_origin_rule)
        )
        scales = self.h_encoder(g.neighborhoods, g.centers, g.knn_idx)  # [(B, G_s, C_s)]
        x = torch.cat(
            [fp(xyz, c, t) for fp, c, t in zip(self.propagations, g.centers, scales, strict=True)], 1
        )
        pooled = x.max(dim=2).values + x.mean(dim=2)  # (B, 3072): max + mean, summed
        one_hot = F.one_hot(category, self.cfg.n_categories).to(x.dtype)[:, :, None]  # (B, n_cat, 1)
        label = self.label_conv(one_hot)  # (B, 64, 1)
        x = torch.cat([torch.cat([pooled[:, :, None], label], 1).expand(-1, -1, N), x], 1)  # (B, 6208, N)
        n = len(self.cfg.head)
        for i in range(1, n + 1):
            x = F.relu(getattr(self, f"bns{i}")(getattr(self, f"convs{i}")(x)))
            if i == 1:
                x = self.dp1(x)
        x = getattr(self, f"convs{n + 1}")(x)  # (B, n_parts, N)
        return F.log_softmax(x, dim=1).transpose(1, 2)

    def load_pretrained_encoder(self, state_dict: Mapping[str, Tensor]) -> list[str]:
        """The ``h_encoder.*`` weights of a pre-training state dict (:func:`i2pmae.encoder.load_pretrained`:
        every encoder key, ``encoder_norms`` included where this model has them, or an error)."""
        return load_pretrained(self.h_encoder, state_dict)
