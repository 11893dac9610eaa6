"""Point-cloud operations in plain PyTorch (CPU and CUDA, batched), replacing the CUDA extensions.

Replaces pointnet2_ops FPS, KNN_CUDA, the Chamfer-L2 extension and PointNet++ feature propagation
(method §2, §7, §8, §12.5 "may change"). Dimension letters: B batch, N reference points, M query points,
K neighbours, C channels, L instances.
"""

from __future__ import annotations

import torch
from torch import Tensor

from i2pmae.errors import InputError

POINTNET2_ORIGIN_EPS = 1e-3  # pointnet2_ops' FPS never picks a point with |p|² ≤ this after the first (§12.3)


def fps_eps(origin_rule: bool) -> float:
    """The ``origin_eps`` of :func:`farthest_point_sample` for a config's ``fps_origin_rule``."""
    return POINTNET2_ORIGIN_EPS if origin_rule else 0.0


def farthest_point_sample(xyz: Tensor, n: int, origin_eps: float = 0.0) -> Tensor:
    """Classic farthest point sampling, starting at index 0 in every sample (method §2, §12.3).

    xyz: (B, N, 3) -> idx: (B, n) long, indices into N. Vectorised over the batch, one step per sample.
    Ties go to the lowest index (``argmax`` returns the first maximum). ``origin_eps`` > 0 copies the
    pointnet2_ops kernel's rule (``POINTNET2_ORIGIN_EPS``, off by default, method §12.3): after index 0, a
    point with |p|² ≤ origin_eps is never picked; when no other point is left, index 0 is, as in the kernel.
    Raises InputError unless 0 < n ≤ N.
    """
    B, N, _ = xyz.shape
    if not 0 < n <= N:
        raise InputError(f"farthest_point_sample: need 0 < n <= N, got n={n} for N={N} points")
    pts = xyz.detach().transpose(1, 2).contiguous()  # (B, 3, N): coordinate planes, fast on CPU too
    idx = torch.empty(B, n, dtype=torch.long, device=xyz.device)
    min_d2 = torch.full((B, N), float("inf"), dtype=xyz.dtype, device=xyz.device)
    if origin_eps > 0:  # -1 stays the minimum for ever: below every real distance, never the argmax
        min_d2.masked_fill_((pts * pts).sum(dim=1) <= origin_eps, -1.0)
    farthest = torch.zeros(B, 1, dtype=torch.long, device=xyz.device)  # (B, 1)
    for i in range(n):
        idx[:, i : i + 1] = farthest
        diff = pts - torch.gather(pts, 2, farthest[:, None, :].expand(B, 3, 1))  # (B, 3, N)
        d2 = diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1] + diff[:, 2] * diff[:, 2]  # (B, N)
        torch.minimum(min_d2, d2, out=min_d2)
        farthest = min_d2.argmax(dim=1, keepdim=True)
    return idx


@torch.no_grad()
def square_distance(a: Tensor, b: Tensor) -> Tensor:
    """Exact pairwise squared distances, a: (B, M, 3), b: (B, N, 3) -> (B, M, N); no gradient.

    Summed per coordinate from differences (not the ``|a|² + |b|² - 2ab`` expansion), so a point's
    distance to itself is exactly 0 and never negative.
    """
    at, bt = a.transpose(1, 2), b.transpose(1, 2)  # (B, 3, M), (B, 3, N)
    d2 = (at[:, 0, :, None] - bt[:, 0, None, :]).square_()  # (B, M, N)
    for c in range(1, a.shape[-1]):
        t = at[:, c, :, None] - bt[:, c, None, :]
        d2.addcmul_(t, t)
    return d2


def knn(query: Tensor, ref: Tensor, k: int) -> Tensor:
    """k nearest neighbours of every query point among ``ref``, nearest first.

    query: (B, M, 3), ref: (B, N, 3) -> idx: (B, M, k) long, indices into N, sorted by ascending
    distance (``topk(largest=False, sorted=True)``, method §8). When the query belongs to ``ref``, slot 0
    is the query itself (distance exactly 0; with duplicate points, one of the duplicates).
    """
    N = ref.shape[1]
    if not 0 < k <= N:
        raise InputError(f"knn: need 0 < k <= N, got k={k} for N={N} reference points")
    d2 = square_distance(query, ref)  # (B, M, N)
    return d2.topk(k, dim=-1, largest=False, sorted=True).indices


def gather_points(x: Tensor, idx: Tensor) -> Tensor:
    """Per-sample gather, x: (B, N, C) or (B, N), idx: (B, ...) long -> (B, ..., C) or (B, ...).

    Differentiable in ``x`` (the gradient is scattered back, repeated indices accumulate).
    """
    B = x.shape[0]
    if x.dim() == 2:
        return torch.gather(x, 1, idx.reshape(B, -1)).reshape(idx.shape)
    C = x.shape[-1]
    flat = idx.reshape(B, -1, 1).expand(-1, -1, C)  # (B, prod(...), C)
    return torch.gather(x, 1, flat).reshape(*idx.shape, C)


def chamfer_l2(a: Tensor, b: Tensor) -> Tensor:
    """Chamfer-L2 as in method §8: each of the L rows is its own instance.

    a: (L, n, 3), b: (L, m, 3) -> scalar
    ``mean_{l,i} min_j |a_li - b_lj|² + mean_{l,j} min_i |a_li - b_lj|²`` (squared distances, the two
    means summed, not halved). The gradient flows through the argmin only. L = 0 gives 0 (not NaN).
    """
    if a.shape[0] == 0:
        return a.sum() * 0.0 + b.sum() * 0.0
    d2 = ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)  # (L, n, m)
    return d2.min(dim=2).values.mean() + d2.min(dim=1).values.mean()


def three_nn_interpolate(query: Tensor, ref: Tensor, feats: Tensor, eps: float = 1e-8) -> Tensor:
    """Inverse-distance interpolation from the 3 nearest reference points (method §7, PointNet++ FP).

    query: (B, M, 3), ref: (B, Q, 3), feats: (B, Q, C) -> (B, M, C)
    Weights are ``1 / (d² + eps)`` over the 3 nearest by squared distance, normalised to sum to 1.
    With Q < 3 all Q points are used (Q = 1 copies the single feature).
    """
    B, M, _ = query.shape
    k = min(3, ref.shape[1])
    d2 = square_distance(query, ref)  # (B, M, Q)
    d2_k, idx = d2.topk(k, dim=-1, largest=False, sorted=True)  # (B, M, k)
    w = 1.0 / (d2_k + eps)
    w = w / w.sum(dim=-1, keepdim=True)  # (B, M, k)
    neigh = gather_points(feats, idx)  # (B, M, k, C)
    return (neigh * w[..., None].to(feats.dtype)).sum(dim=2)
