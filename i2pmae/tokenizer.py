"""Multi-scale tokenizer: FPS centres + kNN groups, applied recursively to centres (method §2).

Scale 0 groups the N input points, scale 1 groups the scale-0 centres, scale 2 the scale-1 centres.
Every index is kept local and per sample, (B, ...) into the previous scale's points, instead of the
official flattened ``local + b·N``; the ``*_point_idx`` fields map everything back to the N input points
so that 2D lookups (saliency, teacher features) can use the stored, canonical points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from i2pmae.errors import InputError
from i2pmae.ops import farthest_point_sample, gather_points, knn


@dataclass
class Groups:
    """The three scales of one batch. Lists are indexed by scale s = 0, 1, 2."""

    centers: list[Tensor]  # (B, G_s, 3) absolute centre coordinates; C_s ⊂ C_{s-1}
    neighborhoods: list[Tensor]  # (B, G_s, K_s, 3) members relative to their centre
    neighborhoods_ori: list[Tensor]  # (B, G_s, K_s, 3) absolute member coordinates
    fps_idx: list[Tensor]  # (B, G_s) long, the centres as indices into the scale s-1 points
    knn_idx: list[Tensor]  # (B, G_s, K_s) long, members as indices into the scale s-1 points, nearest first
    center_point_idx: list[Tensor]  # (B, G_s) long, the centres as indices into the N input points
    member_point_idx: list[Tensor]  # (B, G_s, K_s) long, the members as indices into the N input points

    @property
    def top_center_point_idx(self) -> Tensor:
        """(B, G_top) indices into the input points of the top-scale centres (saliency lookup, method §4)."""
        return self.center_point_idx[-1]


def group(
    xyz: Tensor, num_group: int, group_size: int, fps_origin_eps: float = 0.0
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """FPS ``num_group`` centres out of xyz, then the ``group_size`` nearest points of each (method §2).

    xyz: (B, N, 3) -> centers (B, G, 3), neighborhoods (B, G, K, 3) relative, neighborhoods_ori
    (B, G, K, 3) absolute, fps_idx (B, G), knn_idx (B, G, K). Slot 0 of every group is its centre.
    ``fps_origin_eps``: the pointnet2 near-origin rule of :func:`i2pmae.ops.farthest_point_sample` (§12.3).
    """
    fps_idx = farthest_point_sample(xyz, num_group, fps_origin_eps)  # (B, G)
    centers = gather_points(xyz, fps_idx)  # (B, G, 3)
    knn_idx = knn(centers, xyz, group_size)  # (B, G, K)
    neighborhoods_ori = gather_points(xyz, knn_idx)  # (B, G, K, 3)
    neighborhoods = neighborhoods_ori - centers[:, :, None, :]
    return centers, neighborhoods, neighborhoods_ori, fps_idx, knn_idx


@torch.no_grad()
def group_multiscale(
    xyz: Tensor, num_groups: tuple[int, ...], group_sizes: tuple[int, ...], fps_origin_eps: float = 0.0
) -> Groups:
    """Recursive grouping: scale 0 on the input points, scale s on the scale s-1 centres.

    xyz: (B, N, 3). Defaults of pre-training: num_groups (512, 256, 64), group_sizes (16, 8, 8).
    No gradient flows into the coordinates (the official FPS/kNN ops are not differentiable either).
    ``fps_origin_eps`` applies at every scale, as the official ``misc.fps`` calls one kernel (§12.3).
    """
    if len(num_groups) != len(group_sizes):
        raise InputError(f"num_groups {num_groups} and group_sizes {group_sizes} differ in length")
    out = Groups([], [], [], [], [], [], [])
    points = xyz
    for s, (g, k) in enumerate(zip(num_groups, group_sizes, strict=True)):
        if points.shape[1] < g:
            raise InputError(
                f"scale {s} needs {g} centres out of {points.shape[1]} points; give at least "
                f"{num_groups[0]} input points or lower num_groups"
            )
        centers, neigh, neigh_ori, fps_idx, knn_idx = group(points, g, k, fps_origin_eps)
        if s == 0:
            center_pidx, member_pidx = fps_idx, knn_idx
        else:
            prev = out.center_point_idx[-1]  # (B, G_{s-1}) into the input points
            center_pidx = gather_points(prev, fps_idx)  # (B, G_s)
            member_pidx = gather_points(prev, knn_idx)  # (B, G_s, K_s)
        out.centers.append(centers)
        out.neighborhoods.append(neigh)
        out.neighborhoods_ori.append(neigh_ori)
        out.fps_idx.append(fps_idx)
        out.knn_idx.append(knn_idx)
        out.center_point_idx.append(center_pidx)
        out.member_point_idx.append(member_pidx)
        points = centers
    return out
