"""Fine-tuning classifier (method §3.5, §9.2): unmasked encoder with local-radius attention, LN, pooling, MLP head.

State-dict names are the official ones (``h_encoder``, ``norm``, ``cls_head_finetune``), so a
pre-trained I2P-MAE state dict loads into ``h_encoder`` after dropping the pre-training-only keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from i2pmae.encoder import FinetuneEncoder, load_pretrained
from i2pmae.errors import InputError
from i2pmae.ops import fps_eps
from i2pmae.tokenizer import group_multiscale

# Local attention radii per dataset (method §3.5).
RADII = {
    "modelnet40": (0.24, 0.48, 0.96),
    "obj-bg": (0.32, 0.64, 1.28),
    "obj-only": (0.32, 0.64, 1.28),
    "pb-t50-rs": (0.48, 0.96, 1.92),
}


@dataclass(frozen=True)
class ClassifierConfig:
    num_classes: int = 40  # 40 ModelNet40, 15 ScanObjectNN, `way` for few-shot
    pooling: Literal["mean+max", "concat"] = "mean+max"  # summed 384-d (ModelNet40) or [mean, max] 768-d
    num_groups: tuple[int, ...] = (512, 256, 64)  # FPS centres per scale, as in pre-training
    group_sizes: tuple[int, ...] = (48, 24, 24)  # ModelNet40; ScanObjectNN uses (32, 16, 16) (method §2)
    local_radius: tuple[float, ...] = RADII["modelnet40"]  # attention only within r_s (method §3.5)
    encoder_dims: tuple[int, ...] = (96, 192, 384)  # must equal the pre-trained encoder's
    encoder_depths: tuple[int, ...] = (5, 5, 5)
    num_heads: int = 6
    mlp_ratio: float = 4.0
    drop_path: float = 0.1  # linspace(0, 0.1, 15) over the encoder blocks (method §9.2)
    head_hidden: int = 256  # width of the two hidden head layers
    head_dropout: float = 0.5  # dropout after each hidden head layer
    fps_origin_rule: bool = False  # the pre-trained encoder's FPS rule (I2PMAEConfig, method §12.3)

    @classmethod
    def modelnet40(cls, num_classes: int = 40) -> ClassifierConfig:
        """ModelNet40 (and few-shot with num_classes = way): groups 48/24/24, mean+max summed."""
        return cls(num_classes=num_classes)

    @classmethod
    def scanobjectnn(cls, variant: Literal["obj-bg", "obj-only", "pb-t50-rs"] = "obj-bg") -> ClassifierConfig:
        """ScanObjectNN: 15 classes, groups 32/16/16, concat(mean, max), the variant's radii."""
        if variant not in ("obj-bg", "obj-only", "pb-t50-rs"):
            raise InputError(f"unknown ScanObjectNN variant {variant!r}; use obj-bg, obj-only or pb-t50-rs")
        return cls(num_classes=15, pooling="concat", group_sizes=(32, 16, 16), local_radius=RADII[variant])


class PointClassifier(nn.Module):
    """xyz (B, N, 3) -> logits (B, num_classes)."""

    def __init__(self, cfg: ClassifierConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ClassifierConfig()
        self.h_encoder = FinetuneEncoder(cfg)
        d = cfg.encoder_dims[-1]
        self.norm = nn.LayerNorm(d)  # fresh: the pre-trained encoder_norms are not used (method §3.5)
        in_dim = 2 * d if cfg.pooling == "concat" else d
        h = cfg.head_hidden
        self.cls_head_finetune = nn.Sequential(
            nn.Linear(in_dim, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(cfg.head_dropout),
            nn.Linear(h, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(cfg.head_dropout),
            nn.Linear(h, cfg.num_classes),
        )  # fmt: skip

    def forward_features(self, xyz: Tensor) -> Tensor:
        """xyz (B, N, 3) -> pooled feature (B, 384) for mean+max or (B, 768) for concat."""
        if xyz.dim() != 3 or xyz.shape[-1] != 3:
            raise InputError(f"xyz must be (B, N, 3), got shape {tuple(xyz.shape)}")
        g = group_multiscale(
            xyz, self.cfg.num_groups, self.cfg.group_sizes, fps_eps(self.cfg.fps_origin_rule)
        )
        x = self.norm(self.h_encoder(g.neighborhoods, g.centers, g.knn_idx))  # (B, G_top, C)
        mean, mx = x.mean(dim=1), x.max(dim=1).values
        return torch.cat([mean, mx], dim=-1) if self.cfg.pooling == "concat" else mean + mx

    def forward(self, xyz: Tensor) -> Tensor:
        return self.cls_head_finetune(self.forward_features(xyz))

    def load_pretrained_encoder(self, state_dict: Mapping[str, Tensor]) -> list[str]:
        """The ``h_encoder.*`` weights of a pre-training state dict (:func:`i2pmae.encoder.load_pretrained`:
        every encoder key, ``encoder_norms`` included where this model has them, or an error)."""
        return load_pretrained(self.h_encoder, state_dict)
