"""I2P-MAE pre-training model (method §2–§4, §7, §8): tokenizer, masked hierarchical encoder, decoder, losses.

Mask polarity: ``mask`` True = masked (removed), False = visible, at every scale.
The 2D teacher is not part of the model. The caller looks up, with indices into its own input points,
(a) the saliency at the top-scale centres (``groups.top_center_point_idx``, method §4) and
(b) the teacher features at the members of the visible scale-1 tokens (``visible_members``, method §8),
either directly or through the ``saliency_fn`` / ``target_fn`` callables of ``forward``.
``model.state_dict()`` has exactly the official names and shapes (teacher excluded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2pmae.decoder import FeaturePropagation, skip_features, top_sequence
from i2pmae.encoder import EncoderOutput, HierarchicalEncoder
from i2pmae.errors import InputError
from i2pmae.layers import BlockStack, drop_path_rates, pos_mlp
from i2pmae.masking import guided_mask, random_mask
from i2pmae.ops import chamfer_l2, fps_eps
from i2pmae.tokenizer import Groups, group_multiscale


@dataclass(frozen=True)
class I2PMAEConfig:
    num_groups: tuple[int, ...] = (512, 256, 64)  # FPS centres per scale (method §2)
    group_sizes: tuple[int, ...] = (16, 8, 8)  # kNN members per scale in pre-training and SVM (method §2)
    encoder_dims: tuple[int, ...] = (96, 192, 384)  # token width per scale (method §3)
    encoder_depths: tuple[int, ...] = (5, 5, 5)  # blocks per scale (method §3)
    num_heads: int = 6  # at every scale and in the decoder (head dims 16/32/64)
    mlp_ratio: float = 4.0  # MLP hidden = 4·d
    drop_path: float = 0.1  # linspace(0, 0.1, 15) over encoder blocks, linspace(0, 0.1, 2) decoder
    local_radius: tuple[float, ...] = (0.0, 0.0, 0.0)  # disabled in pre-training (method §3.3, §12.3)
    decoder_dims: tuple[int, ...] = (384, 192)  # decoding stages from the top scale down (method §7)
    decoder_depths: tuple[int, ...] = (1, 1)  # one block per decoder stage
    decoder_up_blocks: int = 1  # residual blocks in the feature propagation
    mask_ratio: float = 0.8  # int(0.8·64) = 51 top-scale tokens masked, 13 visible (method §4)
    masking: Literal["2d-guided", "random"] = "2d-guided"  # saliency-guided (I2P-MAE) or Point-M2AE random
    targets: Literal["3d+2d", "3d"] = "3d+2d"  # "3d" builds no 2D head (15,251,224 parameters)
    feat_dim_2d: int = 512  # teacher channels C (CLIP ViT-B/16 joint space)
    num_views: int = 3  # V projected views; the 2D target is V·C channels per member
    index0_quirk: bool = True  # official mask propagation always keeps token 0 of sample 0 (method §3.3)
    fps_origin_rule: bool = False  # option: FPS skips |p|² ≤ 1e-3 after index 0, as pointnet2 (§12.3)

    def __post_init__(self):
        S = len(self.num_groups)
        if not (len(self.group_sizes) == len(self.encoder_dims) == len(self.encoder_depths) == S):
            raise InputError(f"per-scale tuples must all have {S} entries: {self}")
        if len(self.local_radius) != S:
            raise InputError(f"local_radius needs {S} entries, got {self.local_radius}")
        D = len(self.decoder_dims)
        if not 1 <= D <= S or len(self.decoder_depths) != D:
            raise InputError(
                f"decoder_dims {self.decoder_dims} / depths {self.decoder_depths} invalid for {S} scales"
            )
        for i, d in enumerate(self.decoder_dims):  # stage i decodes scale S-1-i with its encoder skip
            if d != self.encoder_dims[S - 1 - i]:
                raise InputError(f"decoder_dims[{i}]={d} must equal encoder_dims[{S - 1 - i}]")
        if not 0.0 < self.mask_ratio < 1.0:
            raise InputError(f"mask_ratio must lie in (0, 1), got {self.mask_ratio}")

    @property
    def rec_scale(self) -> int:
        """The scale where decoding stops and both reconstructions happen (1 by default)."""
        return len(self.num_groups) - len(self.decoder_dims)


@dataclass
class DecoderOutput:
    tokens: Tensor  # (B, G_r, C_r) decoder_norm output at the reconstruction scale r (256 × 192)
    pred_3d: Tensor  # (L_m, K_r, 3) on the masked scale-r tokens, row-major (sample, token) order
    pred_2d: Tensor | None  # (L_v, K_r, V·C) on the visible scale-r tokens; None without the 2D head


@dataclass
class PretrainOutput:
    loss: Tensor  # loss_3d + loss_2d, weights 1:1 (method §8)
    loss_3d: Tensor
    loss_2d: Tensor | None
    groups: Groups
    encoded: EncoderOutput  # .masks = [m0, m1, m2]
    decoded: DecoderOutput


class I2PMAE(nn.Module):
    """The pre-training model. Attribute names follow the official checkpoint (``h_encoder``, ``h_decoder``,
    ``decoder_pos_embeds``, ``token_prop``, ``decoder_norm``, ``rec_head_3d``, ``rec_head_2d``)."""

    def __init__(self, cfg: I2PMAEConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or I2PMAEConfig()
        self.h_encoder = HierarchicalEncoder(cfg)
        dd = cfg.decoder_dims
        self.mask_token = nn.Parameter(torch.zeros(1, dd[0]))
        rates = drop_path_rates(cfg.drop_path, cfg.decoder_depths)
        self.h_decoder = nn.ModuleList(
            BlockStack(d, n, cfg.num_heads, cfg.mlp_ratio, r)
            for d, n, r in zip(dd, cfg.decoder_depths, rates, strict=True)
        )
        self.decoder_pos_embeds = nn.ModuleList(pos_mlp(d) for d in dd)
        self.token_prop = nn.ModuleList(
            FeaturePropagation(dd[i] + dd[i - 1], dd[i], cfg.decoder_up_blocks) for i in range(1, len(dd))
        )
        self.decoder_norm = nn.LayerNorm(dd[-1])
        k = cfg.group_sizes[cfg.rec_scale]
        self.rec_head_3d = nn.Conv1d(dd[-1], 3 * k, 1)
        self.rec_head_2d = None
        if cfg.targets == "3d+2d":
            self.rec_head_2d = nn.Conv1d(dd[-1], cfg.feat_dim_2d * cfg.num_views * k, 1)
        # Method §7: decoder blocks xavier_uniform + zero bias, LN (1, 0); pos MLPs, token_prop, heads
        # keep the PyTorch defaults; mask_token trunc_normal(0.02).
        self.h_decoder.apply(_init_decoder_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    # ---------------------------------------------------------------- tokens and masks
    def group(self, xyz: Tensor) -> Groups:
        """xyz: (B, N, 3) -> the three scales (FPS + kNN, method §2)."""
        if xyz.dim() != 3 or xyz.shape[-1] != 3:
            raise InputError(f"xyz must be (B, N, 3), got shape {tuple(xyz.shape)}")
        return group_multiscale(
            xyz, self.cfg.num_groups, self.cfg.group_sizes, fps_eps(self.cfg.fps_origin_rule)
        )

    def guided_mask(self, saliency: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """saliency (B, V, G_top) at the top-scale centres -> mask (B, G_top) bool (method §4)."""
        return guided_mask(saliency, self.cfg.mask_ratio, generator)

    def random_mask(self, batch: int, device=None, generator: torch.Generator | None = None) -> Tensor:
        return random_mask(batch, self.cfg.num_groups[-1], self.cfg.mask_ratio, device, generator)

    def visible_members(self, groups: Groups, masks: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Rows of the 2D target: batch index (L_v,) and member point indices (L_v, K_r) into the input
        points of the visible reconstruction-scale tokens, in the row-major order of ``pred_2d``."""
        vis = ~masks[self.cfg.rec_scale]  # (B, G_r)
        return vis.nonzero()[:, 0], groups.member_point_idx[self.cfg.rec_scale][vis]

    def target_3d(self, groups: Groups, masks: list[Tensor]) -> Tensor:
        """(L_m, K_r, 3): members of the masked scale-r tokens relative to their centre (method §8)."""
        r = self.cfg.rec_scale
        return groups.neighborhoods[r][masks[r]]

    # ---------------------------------------------------------------- forward passes
    def forward_encoder(self, groups: Groups, mask: Tensor) -> EncoderOutput:
        """mask: (B, G_top) bool, True = masked -> per-scale padded visible tokens and masks."""
        B, G = groups.centers[-1].shape[:2]
        if mask.shape != (B, G) or mask.dtype != torch.bool:
            raise InputError(f"mask must be bool of shape {(B, G)}, got {mask.dtype} {tuple(mask.shape)}")
        return self.h_encoder(groups.neighborhoods, groups.centers, groups.knn_idx, mask)

    def forward_decoder(self, enc: EncoderOutput, groups: Groups) -> DecoderOutput:
        """Top scale -> reconstruction scale (method §7), then both heads (method §8)."""
        S = len(groups.centers)
        top = S - 1
        x, center = top_sequence(
            enc.tokens[top], enc.masks[top], enc.order[top], groups.centers[top], self.mask_token
        )
        x = self.h_decoder[0](x, self.decoder_pos_embeds[0](center))  # (B, G_top, C)
        for i in range(1, len(self.h_decoder)):
            s = top - i
            skip = skip_features(enc.tokens[s], enc.valid[s], enc.order[s], enc.masks[s])  # (B, G_s, C_s)
            x = self.token_prop[i - 1](groups.centers[s], center, skip, x)  # (B, G_s, C_s)
            center = groups.centers[s]
            x = self.h_decoder[i](x, self.decoder_pos_embeds[i](center))
        y = self.decoder_norm(x)  # (B, G_r, C_r)
        m = enc.masks[self.cfg.rec_scale]
        k = self.cfg.group_sizes[self.cfg.rec_scale]
        pred_3d = _pointwise_head(self.rec_head_3d, y[m]).reshape(-1, k, 3)  # (L_m, K, 3)
        pred_2d = None
        if self.rec_head_2d is not None:
            pred_2d = _pointwise_head(self.rec_head_2d, y[~m]).reshape(
                -1, k, self.cfg.num_views * self.cfg.feat_dim_2d
            )
        return DecoderOutput(y, pred_3d, pred_2d)

    def forward_loss(
        self,
        pred_3d: Tensor,
        target_3d: Tensor,
        pred_2d: Tensor | None = None,
        target_2d: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """-> (loss, loss_3d, loss_2d). Chamfer-L2 on (L_m, K, 3) plus MSE on (L_v, K, V·C) (method §8).

        ``target_2d`` holds, per visible token and member slot (kNN order), the V views' teacher
        features concatenated along channels in view order. It is required with the 2D head and
        ignored (loss_2d None) without it.
        """
        loss_3d = chamfer_l2(pred_3d, target_3d)
        if pred_2d is None:
            return loss_3d, loss_3d, None
        if target_2d is None or target_2d.shape != pred_2d.shape:
            got = None if target_2d is None else tuple(target_2d.shape)
            raise InputError(f"target_2d must have the shape of pred_2d {tuple(pred_2d.shape)}, got {got}")
        loss_2d = F.mse_loss(pred_2d, target_2d.to(pred_2d.dtype))
        return loss_3d + loss_2d, loss_3d, loss_2d

    def forward(
        self,
        xyz: Tensor,
        mask: Tensor | None = None,
        saliency_fn: Callable[[Tensor], Tensor] | None = None,
        target_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> PretrainOutput:
        """One pre-training step's forward. xyz: (B, N, 3) augmented points.

        mask: (B, G_top) bool to force a mask; otherwise 2D-guided masking calls
        ``saliency_fn(top_center_point_idx (B, G_top)) -> (B, V, G_top)`` and random masking draws one.
        ``target_fn(batch_idx (L_v,), member_point_idx (L_v, K)) -> (L_v, K, V·C)`` gives the 2D target.
        """
        groups = self.group(xyz)
        if mask is None:
            if self.cfg.masking == "random":
                mask = self.random_mask(xyz.shape[0], xyz.device, generator)
            elif saliency_fn is None:
                raise InputError("2d-guided masking needs saliency_fn (or an explicit mask)")
            else:
                mask = self.guided_mask(saliency_fn(groups.top_center_point_idx), generator)
        enc = self.forward_encoder(groups, mask)
        dec = self.forward_decoder(enc, groups)
        target_2d = None
        if dec.pred_2d is not None:
            if target_fn is None:
                raise InputError(
                    "the 2D head needs target_fn; build the model with targets='3d' to train 3D only"
                )
            target_2d = target_fn(*self.visible_members(groups, enc.masks))
        loss, loss_3d, loss_2d = self.forward_loss(
            dec.pred_3d, self.target_3d(groups, enc.masks), dec.pred_2d, target_2d
        )
        return PretrainOutput(loss, loss_3d, loss_2d, groups, enc, dec)

    @torch.no_grad()
    def global_feature(self, xyz: Tensor, pooling: Literal["max", "mean+max"] = "max") -> Tensor:
        """SVM feature (method §3.4): no masking, LN-ed top-scale tokens pooled -> (B, C_top).

        Runs in eval mode (BatchNorm running statistics, no drop path) and restores the previous mode.
        "max" is I2P-MAE's feature; "mean+max" (summed) is Point-M2AE's.
        """
        was_training = self.training
        self.eval()
        try:
            groups = self.group(xyz)
            B, G = groups.centers[-1].shape[:2]
            enc = self.forward_encoder(groups, torch.zeros(B, G, dtype=torch.bool, device=xyz.device))
            x = enc.tokens[-1]  # (B, G_top, C): all valid since nothing is masked at the top
            feat = x.max(dim=1).values
            return feat + x.mean(dim=1) if pooling == "mean+max" else feat
        finally:
            self.train(was_training)


def _pointwise_head(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """A 1×1 Conv1d head applied to rows: x (L, C_in) -> (L, C_out) (a matmul, same maths)."""
    return F.linear(x, conv.weight.squeeze(-1), conv.bias)  # a view whose backward is a view too


def _init_decoder_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
