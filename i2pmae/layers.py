"""Transformer layers shared by the encoder and the decoder (method §3.2, §7).

Submodule names (``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``norm1`` ...) are those of the official
state dict, so official checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

MASK_PENALTY = -1e5  # additive attention penalty of the official code, not -inf (method §3.2)


def pos_mlp(dim: int) -> nn.Sequential:
    """Positional embedding of absolute centre coordinates: Linear(3→d), GELU, Linear(d→d) (method §3.2)."""
    return nn.Sequential(nn.Linear(3, dim), nn.GELU(), nn.Linear(dim, dim))


class Mlp(nn.Module):
    """Linear(d→h), GELU, Linear(h→d); no dropout (rate 0 in every official config)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with the official additive mask.

    ``mask`` (B, L, L) bool or 0/1 float, True/1 = blocked, broadcast over heads: the logits get
    ``mask · (-1e5)`` added before the softmax (method §3.2). A fully blocked row is only shifted by a
    constant, so it attends to everything (padded queries; their outputs are discarded).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} is not divisible by num_heads {num_heads}"
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B, L, C = x.shape
        nh = self.num_heads
        qkv = self.qkv(x).reshape(B, L, 3, nh, C // nh).permute(2, 0, 3, 1, 4)  # (3, B, nh, L, hs)
        q, k, v = qkv.unbind(0)  # each (B, nh, L, hs)
        bias = None
        if mask is not None:
            # -1e5 overflows fp16; any penalty below ~-100 gives the same softmax, so clamp to the dtype.
            penalty = max(MASK_PENALTY, torch.finfo(q.dtype).min)
            bias = (mask.to(q.dtype) * penalty)[:, None]  # (B, 1, L, L)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, nh, L, hs)
        return self.proj(y.transpose(1, 2).reshape(B, L, C))


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        # Registration order as in the official module, so state-dict key order matches too.
        self.norm1 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.attn = Attention(dim, num_heads)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), mask))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class BlockStack(nn.Module):
    """``depth`` blocks with the position re-added before every block (Point-MAE style, method §3.2)."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path: list[float]):
        super().__init__()
        assert len(drop_path) == depth, f"need one drop-path rate per block, got {drop_path} for {depth}"
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, dp) for dp in drop_path)

    def forward(self, x: Tensor, pos: Tensor, mask: Tensor | None = None) -> Tensor:
        """x, pos: (B, L, C); mask: (B, L, L) True = blocked, or None -> (B, L, C)."""
        for block in self.blocks:
            x = block(x + pos, mask)
        return x


def drop_path_rates(rate: float, depths: tuple[int, ...]) -> list[list[float]]:
    """``linspace(0, rate, sum(depths))`` split into one list per stage, in block order."""
    rates = torch.linspace(0, rate, sum(depths), device="cpu").tolist()  # float32 values, as official
    out, start = [], 0
    for d in depths:
        out.append(rates[start : start + d])
        start += d
    return out


def apply_pointwise(seq: nn.Sequential, x: Tensor) -> Tensor:
    """Run a Sequential of 1×1 Conv1d / BatchNorm1d / activations channels-last.

    x: (..., C_in) -> (..., C_out). A 1×1 Conv1d over (M, C, K) is a matmul over channels, and
    BatchNorm1d over (M, C, K) takes its statistics over M·K, exactly as over the flattened (M·K, C):
    same maths, no transposes. The modules stay Conv1d so the state-dict names and shapes are official.
    """
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])  # (M, C)
    for m in seq:
        if isinstance(m, nn.Conv1d):
            assert m.kernel_size == (1,), "apply_pointwise only handles 1×1 convolutions"
            x = F.linear(x, m.weight[:, :, 0], m.bias)
        else:
            x = m(x)
    return x.reshape(*lead, x.shape[-1])
