"""Hierarchical encoder (method §3): token embedding, multi-scale masking, padded visible sets.

Mask polarity everywhere: ``mask`` True = masked (removed), False = visible.
``HierarchicalEncoder`` is the pre-training / SVM encoder (§3.3, §3.4); ``FinetuneEncoder`` the
classifier's (§3.5: all tokens, local-radius attention, no ``encoder_norms``); ``SegmentationEncoder`` the
part segmenter's (§14.2: the same, returning every scale after its ``encoder_norms``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from i2pmae.errors import InputError
from i2pmae.layers import BlockStack, apply_pointwise, drop_path_rates, pos_mlp
from i2pmae.ops import gather_points
from i2pmae.recompute import recomputed


class TokenEmbed(nn.Module):
    """Mini-PointNet with max-pooling over the K members of a group (method §3.1).

    Scale 0 (C_in = 3): 3→128→256, concat with the max → 512→512→C_out.
    Scales ≥ 1: C_in→C_in→C_in, concat → 2·C_in→C_out→C_out. BatchNorm over all B·G·K members.
    """

    def __init__(self, in_c: int, out_c: int):
        super().__init__()
        hid, mid = (128, 256) if in_c == 3 else (in_c, in_c)
        cat, hid2 = (512, 512) if in_c == 3 else (2 * in_c, out_c)
        self.first_conv = nn.Sequential(
            nn.Conv1d(in_c, hid, 1), nn.BatchNorm1d(hid), nn.ReLU(inplace=True), nn.Conv1d(hid, mid, 1)
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(cat, hid2, 1), nn.BatchNorm1d(hid2), nn.ReLU(inplace=True), nn.Conv1d(hid2, out_c, 1)
        )

    # True: keep only ``groups`` for backward and recompute the layers before second_conv's BatchNorm there
    # (i2pmae.recompute: same numbers, BatchNorm statistics updated once). Fine-tuning sets it for scale 0.
    recompute: bool = False

    def forward(self, groups: Tensor) -> Tensor:
        """groups: (B, G, K, C_in) -> tokens (B, G, C_out)."""
        f = recomputed(self._merged, groups, keep=self) if self.recompute else self._merged(groups)
        # BN, ReLU, conv stay kept: their backward needs the BN input and the ReLU output at once anyway.
        f = apply_pointwise(self.second_conv[1:], f)  # (B, G, K, C_out)
        return f.max(dim=2).values

    def _merged(self, groups: Tensor) -> Tensor:
        """first_conv, max over K, concat, second_conv's first conv: (B, G, K, C_in) -> (B, G, K, hid2)."""
        K = groups.shape[2]
        f = apply_pointwise(self.first_conv, groups)  # (B, G, K, mid)
        g = f.max(dim=2, keepdim=True).values  # (B, G, 1, mid)
        f = torch.cat([g.expand(-1, -1, K, -1), f], dim=-1)  # (B, G, K, 2·mid)
        return apply_pointwise(self.second_conv[:1], f)


def init_encoder_weights(m: nn.Module) -> None:
    """Method §3.2: Linear and Conv1d weights trunc_normal(0.02), zero bias; LayerNorm (1, 0)."""
    if isinstance(m, nn.Linear | nn.Conv1d):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def propagate_mask(mask_up: Tensor, knn_idx: Tensor, num_lower: int, index0_quirk: bool = True) -> Tensor:
    """Top-down mask propagation (method §3.3 step 2).

    mask_up: (B, G_s) bool, knn_idx: (B, G_s, K_s) into the G_{s-1} lower tokens -> mask (B, G_{s-1}).
    A lower token is visible iff it is a member of at least one visible upper token's kNN set.
    ``index0_quirk``: the official code zeroes the flattened indices of masked tokens before scattering,
    so lower token 0 of sample 0 is marked visible whenever any upper token in the batch is masked.
    """
    B, G, K = knn_idx.shape
    vis_up = (~mask_up).to(torch.int32)[:, :, None].expand(B, G, K).reshape(B, G * K)
    hits = torch.zeros(B, num_lower, dtype=torch.int32, device=mask_up.device)
    hits.scatter_add_(1, knn_idx.reshape(B, G * K), vis_up)  # (B, G_{s-1}) visible-owner counts
    visible = hits > 0
    if index0_quirk:
        visible[0, 0] = visible[0, 0] | mask_up.any()  # tensor op: no host sync
    return ~visible


def pad_visible(x: Tensor, centers: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gather each sample's visible tokens to the front, zero-padded to L = max #visible.

    x: (B, G, C), centers: (B, G, 3), mask: (B, G) bool ->
    x_pad (B, L, C), centers_pad (B, L, 3), valid (B, L) bool, order (B, G) long.
    ``order`` is a stable argsort of the mask: visible indices ascending, then masked ones ascending
    (the order of the official boolean indexing). Slot j < #visible holds token ``order[:, j]``.
    """
    order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)  # (B, G)
    n_vis = (~mask).sum(dim=1)  # (B,)
    L = int(n_vis.max())  # host sync: the padded length is data dependent
    idx = order[:, :L]  # (B, L)
    valid = torch.arange(L, device=x.device)[None, :] < n_vis[:, None]  # (B, L)
    x_pad = torch.where(valid[..., None], gather_points(x, idx), 0.0)
    c_pad = torch.where(valid[..., None], gather_points(centers, idx), 0.0)
    return x_pad, c_pad, valid, order


def unpad_visible(x_pad: Tensor, order: Tensor, mask: Tensor, fill: Tensor) -> Tensor:
    """Inverse of ``pad_visible``: x_pad (B, L, C) back to (B, G, C); masked positions take ``fill``.

    order: (B, G) from ``pad_visible``, mask: (B, G) bool, fill: (B, G, C) or broadcastable.
    """
    B, G = order.shape
    L = x_pad.shape[1]
    if L == 0:
        return fill.expand(B, G, x_pad.shape[-1])
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(G, device=order.device).expand(B, G))
    back = gather_points(x_pad, rank.clamp(max=L - 1))  # (B, G, C); slot of token g
    return torch.where(mask[..., None], fill, back)


@dataclass
class EncoderOutput:
    """What the pre-training encoder returns; lists are indexed by scale s = 0, 1, 2."""

    tokens: list[Tensor]  # (B, L_s, C_s) visible tokens after encoder_norms[s], zero-padded
    valid: list[Tensor]  # (B, L_s) bool, True where tokens holds a real visible token
    masks: list[Tensor]  # (B, G_s) bool, True = masked: [m0, m1, m2]
    order: list[Tensor]  # (B, G_s) long, visible-first permutation of pad_visible


class EncoderArch(Protocol):
    """The fields an encoder is built from; :class:`i2pmae.model.I2PMAEConfig` and
    :class:`i2pmae.classifier.ClassifierConfig` both have them."""

    encoder_dims: tuple[int, ...]  # C_s per scale
    encoder_depths: tuple[int, ...]  # blocks per scale
    num_heads: int
    mlp_ratio: float
    drop_path: float  # the largest stochastic-depth rate, reached by the last block
    local_radius: tuple[float, ...]  # per scale; 0 = global attention


class PretrainArch(EncoderArch, Protocol):
    index0_quirk: bool  # the official index-0 rule of top-down mask propagation (method §12.3)


class _EncoderBase(nn.Module):
    """Token embeddings, positional MLPs and block stacks of the three scales (names as official)."""

    def __init__(self, arch: EncoderArch):
        super().__init__()
        dims = arch.encoder_dims
        in_dims = (3, *dims[:-1])
        self.token_embed = nn.ModuleList(TokenEmbed(i, o) for i, o in zip(in_dims, dims, strict=True))
        self.encoder_pos_embeds = nn.ModuleList(pos_mlp(d) for d in dims)
        rates = drop_path_rates(arch.drop_path, arch.encoder_depths)
        self.encoder_blocks = nn.ModuleList(
            BlockStack(d, n, arch.num_heads, arch.mlp_ratio, r)
            for d, n, r in zip(dims, arch.encoder_depths, rates, strict=True)
        )
        self.local_radius = tuple(arch.local_radius)

    def embed(
        self, s: int, neighborhoods: list[Tensor], knn_idx: list[Tensor], x_prev: Tensor | None
    ) -> Tensor:
        """Token features of all G_s groups of scale s: (B, G_s, C_s) (method §3.3 step 3)."""
        if s == 0:
            return self.token_embed[0](neighborhoods[0])
        return self.token_embed[s](gather_points(x_prev, knn_idx[s]))  # merge (B, G_s, K_s, C_{s-1})


class HierarchicalEncoder(_EncoderBase):
    """Pre-training encoder over the visible tokens of every scale (method §3.2–§3.4)."""

    def __init__(self, arch: PretrainArch):
        super().__init__(arch)
        self.encoder_norms = nn.ModuleList(nn.LayerNorm(d) for d in arch.encoder_dims)
        self.index0_quirk = arch.index0_quirk
        self.apply(init_encoder_weights)

    def multiscale_masks(
        self, mask_top: Tensor, knn_idx: list[Tensor], num_groups: list[int]
    ) -> list[Tensor]:
        """[m0, m1, m2] from the top-scale mask by top-down propagation (method §3.3 step 2)."""
        masks = [mask_top]
        for s in range(len(knn_idx) - 1, 0, -1):
            masks.insert(0, propagate_mask(masks[0], knn_idx[s], num_groups[s - 1], self.index0_quirk))
        return masks

    def forward(
        self, neighborhoods: list[Tensor], centers: list[Tensor], knn_idx: list[Tensor], mask_top: Tensor
    ) -> EncoderOutput:
        """neighborhoods[s] (B, G_s, K_s, 3), centers[s] (B, G_s, 3), knn_idx[s] (B, G_s, K_s),
        mask_top (B, G_top) bool, True = masked (all False for the SVM path, method §3.4)."""
        S = len(centers)
        masks = self.multiscale_masks(mask_top, knn_idx, [c.shape[1] for c in centers])
        out = EncoderOutput([], [], masks, [])
        x_full = None
        for s in range(S):
            feats = self.embed(s, neighborhoods, knn_idx, x_full)  # (B, G_s, C_s), all tokens
            x, c, valid, order = pad_visible(feats, centers[s], masks[s])  # (B, L_s, C_s), (B, L_s, 3)
            attn_mask = ~(valid[:, :, None] & valid[:, None, :])  # (B, L, L) True = blocked
            if self.local_radius[s] > 0:  # official AND (§12.3): only un-blocks padding near the origin
                attn_mask = attn_mask & (torch.cdist(c, c) >= self.local_radius[s])
            x = self.encoder_blocks[s](x, self.encoder_pos_embeds[s](c), attn_mask)
            out.tokens.append(self.encoder_norms[s](x))
            out.valid.append(valid)
            out.order.append(order)
            if s < S - 1:  # visible positions get the encoded tokens, masked keep their embedding
                x_full = unpad_visible(x, order, masks[s], feats)
        return out


class FinetuneEncoder(_EncoderBase):
    """Fine-tuning encoder (method §3.5): all tokens, local-radius attention, no encoder_norms."""

    def __init__(self, arch: EncoderArch):
        super().__init__(arch)
        self.apply(init_encoder_weights)

    def forward(self, neighborhoods: list[Tensor], centers: list[Tensor], knn_idx: list[Tensor]) -> Tensor:
        """Same inputs as HierarchicalEncoder without a mask -> top-scale tokens (B, G_top, C_top)."""
        x = None
        for s in range(len(centers)):
            x = self.embed(s, neighborhoods, knn_idx, x)  # (B, G_s, C_s)
            c = centers[s]
            attn_mask = None
            if self.local_radius[s] > 0:
                attn_mask = torch.cdist(c, c) >= self.local_radius[s]  # (B, G, G) True = blocked
            x = self.encoder_blocks[s](x, self.encoder_pos_embeds[s](c), attn_mask)
        return x


class SegmentationEncoder(FinetuneEncoder):
    """Part-segmentation encoder (method §14.2): the fine-tuning encoder's blocks over all tokens with
    local-radius attention, returning every scale after the pre-trained ``encoder_norms``."""

    def __init__(self, arch: EncoderArch):
        super().__init__(arch)
        self.encoder_norms = nn.ModuleList(nn.LayerNorm(d) for d in arch.encoder_dims)
        self.encoder_norms.apply(init_encoder_weights)

    def forward(
        self, neighborhoods: list[Tensor], centers: list[Tensor], knn_idx: list[Tensor]
    ) -> list[Tensor]:
        """Same inputs as :class:`FinetuneEncoder` -> per scale s tokens (B, G_s, C_s), normalised."""
        x, out = None, []
        for s in range(len(centers)):
            x = self.embed(s, neighborhoods, knn_idx, x)  # (B, G_s, C_s)
            c = centers[s]
            attn_mask = torch.cdist(c, c) >= self.local_radius[s] if self.local_radius[s] > 0 else None
            x = self.encoder_blocks[s](x, self.encoder_pos_embeds[s](c), attn_mask)
            out.append(self.encoder_norms[s](x))
        return out


def load_pretrained(encoder: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Load the ``h_encoder.*`` weights of a pre-training state dict (ours or official) into ``encoder``
    (a downstream model's ``h_encoder``): every key ``encoder`` has must be there with its shape.

    Strips a ``module.`` prefix (DataParallel checkpoints, method §12.1) and ignores every other key
    (decoder, heads, teacher). KeyError when an encoder key is missing (instead of loading nothing, as a
    ``strict=False`` load would), InputError on a shape mismatch. Returns the keys loaded."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    own = encoder.state_dict()
    picked = {k[len("h_encoder.") :]: v for k, v in sd.items() if k.startswith("h_encoder.")}
    picked = {k: v for k, v in picked.items() if k in own}
    missing = sorted(set(own) - set(picked))
    if missing:
        raise KeyError(
            f"pre-trained state dict lacks {len(missing)} of the {len(own)} encoder keys (first: "
            f"h_encoder.{missing[0]}); is it an I2P-MAE / Point-M2AE pre-training checkpoint's 'base_model'?"
        )
    bad = [k for k, v in picked.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise InputError(
            f"h_encoder.{bad[0]} has shape {tuple(picked[bad[0]].shape)}, expected {tuple(own[bad[0]].shape)}; "
            "the encoder dims must match the pre-trained model"
        )
    encoder.load_state_dict(picked, strict=True)
    return [f"h_encoder.{k}" for k in picked]
