"""Geometry shared by rendering and training: views, projection, point → pixel, bicubic lookup.

The one place that knows how a point cloud becomes the three depth images of method §5 and how a
point finds its pixel again (§5.3), so that the offline render stage and the training step agree
bit for bit. Dimension letters: B batch, V views, N projected points, n looked-up points, C
channels, H/W image pixels, h/w feature-map cells.

``proj`` (B, V, 5) float32 holds, per view, ``min_row, min_col, grid, off_row, off_col``: the
minimum of the row/column coordinate, the cell size and the integer centring offsets (stored as
floats, exactly). Rows come from the first permuted coordinate, columns from the second.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

IMAGE_SIZE = 224  # pixels per side of every view (method §5.2)
CELLS = IMAGE_SIZE - 3  # the longest axis spans 221 cells: grid = range / 221
SPLAT = 2  # each point paints a (2·SPLAT+1)² = 5×5 square
# (row, column, depth) source axes of each view: view1 (x,y,z), view2 (z,x,y), view3 (y,z,x), method §5.1
VIEW_PERMUTATIONS = ((0, 1, 2), (2, 0, 1), (1, 2, 0))
NUM_VIEWS = len(VIEW_PERMUTATIONS)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the paper feeds CLIP ImageNet statistics (method §5.2 step 8)
IMAGENET_STD = (0.229, 0.224, 0.225)
BICUBIC_A = -0.75  # PyTorch's bicubic kernel constant


def view_points(points: Tensor) -> Tensor:
    """Permute the coordinates into every view: points (B, N, 3) -> (B, V, N, 3) as (row, col, depth)."""
    perm = torch.tensor(VIEW_PERMUTATIONS, device=points.device)  # (V, 3)
    return points[:, :, perm].permute(0, 2, 1, 3)  # (B, N, V, 3) -> (B, V, N, 3)


def _cells(ab: Tensor, pmin: Tensor, grid: Tensor) -> Tensor:
    """Cell indices floor((q_ab − pmin) / grid), long. ab (B, V, n, 2), pmin (B, V, 2), grid (B, V)."""
    return torch.floor((ab - pmin[:, :, None, :]) / grid[:, :, None, None]).long()


def project(points: Tensor, sigmoid: bool = True) -> tuple[Tensor, Tensor]:
    """Three summed-depth views of each cloud, exactly method §5.2 (``proj2img``).

    points: (B, N, 3), any float dtype (computed in float32).
    Returns images (B, V, 224, 224) float32 (one grey channel; after the sigmoid, before mean/std;
    raw depth sums when ``sigmoid=False``) and proj (B, V, 5) float32 (see the module docstring).
    """
    B, N, _ = points.shape
    q = view_points(points.float())  # (B, V, N, 3)
    ab, depth = q[..., :2], q[..., 2]  # (B, V, N, 2), (B, V, N)
    pmin, pmax = ab.amin(dim=2), ab.amax(dim=2)  # (B, V, 2)
    grid = (pmax - pmin).amax(dim=-1) / CELLS  # (B, V): the longer axis spans 221 cells
    grid = torch.where(grid > 0, grid, torch.ones_like(grid))  # a single-point cloud: any cell size works
    ij = _cells(ab, pmin, grid)  # (B, V, N, 2) in [0, 221]

    # 5×5 splat, row offset di the outer loop, then +1: (B, V, N·25, 2) in [−1, 224]
    steps = torch.arange(-SPLAT, SPLAT + 1, device=points.device)
    offsets = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1).reshape(-1, 2)  # (25, 2)
    dense = (ij[:, :, :, None, :] + offsets + 1).reshape(B, NUM_VIEWS, -1, 2)

    # centre in the image over all splats, before clamping: the longer axis gets off = 0
    lo, hi = dense.amin(dim=2), dense.amax(dim=2)  # (B, V, 2)
    off = IMAGE_SIZE // 2 - 1 - torch.div(lo + hi, 2, rounding_mode="floor")  # (B, V, 2)
    dense = dense + off[:, :, None, :]
    dense = torch.where(dense < 0, dense + 1, dense)  # one-step clamp (method §5.2 step 5)
    dense = torch.where(dense > IMAGE_SIZE - 1, dense - 1, dense)
    assert int(dense.min()) >= 0 and int(dense.max()) <= IMAGE_SIZE - 1, (
        f"splat outside the image after the clamp: [{int(dense.min())}, {int(dense.max())}]"
    )

    flat = dense[..., 0] * IMAGE_SIZE + dense[..., 1]  # (B, V, N·25)
    values = depth[:, :, :, None].expand(-1, -1, -1, offsets.shape[0]).reshape(B, NUM_VIEWS, -1)
    images = torch.zeros(B, NUM_VIEWS, IMAGE_SIZE * IMAGE_SIZE, dtype=torch.float32, device=points.device)
    images.scatter_add_(2, flat, values)  # depth summed per pixel; empty pixels stay 0
    images = images.view(B, NUM_VIEWS, IMAGE_SIZE, IMAGE_SIZE)
    if sigmoid:
        images = torch.sigmoid(images)  # background 0.5
    proj = torch.cat([pmin, grid[..., None], off.float()], dim=-1)  # (B, V, 5)
    return images, proj


def points_to_pixels(points: Tensor, proj: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel of the centre splat of each point in each view (method §5.3), clamped into the image.

    points: (B, n, 3) in the frame that was projected; proj: (B, V, 5) from :func:`project`.
    Returns rows, cols: (B, V, n) long in [0, 223]. Points of the projected cloud land in [1, 222];
    others (another subset, an augmented copy) clamp to the image border (docs/training.md, "Training
    from caches").
    """
    q = view_points(points.float())  # (B, V, n, 3)
    proj = proj.float()
    pmin, grid, off = proj[..., 0:2], proj[..., 2], proj[..., 3:5].long()
    ij = _cells(q[..., :2], pmin, grid) + 1 + off[:, :, None, :]  # (B, V, n, 2)
    ij = ij.clamp(0, IMAGE_SIZE - 1)
    return ij[..., 0], ij[..., 1]


def _cubic_taps(dst: Tensor, in_size: int, out_size: int) -> tuple[Tensor, Tensor]:
    """Source indices (…, 4) long and weights (…, 4) float32 of PyTorch's bicubic upsampling.

    Same source coordinate as ``upsample_bicubic2d`` with ``align_corners=False``:
    real = scale·(dst + 0.5) − 0.5 (not clamped at 0), scale = in/out; taps floor(real) − 1 … + 2,
    clamped to the border; Keys' kernel with A = −0.75.
    """
    scale = in_size / out_size
    real = (dst.float() + 0.5) * scale - 0.5
    base = torch.floor(real)
    t = real - base
    A = BICUBIC_A
    u = 1 - t
    w0 = ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A  # taps at distance t + 1, t,
    w1 = ((A + 2) * t - (A + 3)) * t * t + 1  # 1 − t and 2 − t, written as PyTorch writes them
    w2 = ((A + 2) * u - (A + 3)) * u * u + 1
    w3 = ((A * (u + 1) - 5 * A) * (u + 1) + 8 * A) * (u + 1) - 4 * A
    idx = base.long()[..., None] + torch.arange(-1, 3, device=dst.device)
    return idx.clamp(0, in_size - 1), torch.stack([w0, w1, w2, w3], dim=-1)


def bicubic_lookup(maps: Tensor, rows: Tensor, cols: Tensor, out_size: int = IMAGE_SIZE) -> Tensor:
    """Value of ``F.interpolate(maps, out_size, mode='bicubic')`` at given pixels, from 4×4 taps only.

    maps: (B, C, h, w); rows, cols: (B, n) integer pixels of the out_size × out_size image.
    Returns (B, n, C) in float32 (or the maps' dtype if wider). The upsampled maps are never built:
    each pixel's 16 tap weights go into a sparse-in-effect (B, n, h·w) matrix (border taps that clamp
    onto the same cell add up), applied to the maps with one batched matmul. Memory: that matrix and
    the output; for 14×14 maps the matrix (196 per point) is smaller than a 512-channel output.
    Runs outside autocast, and in float64 on CUDA when TF32 matmuls are allowed, so the values stay
    within float32 rounding of the dense upsampling.
    """
    B, C, h, w = maps.shape
    assert rows.shape == cols.shape and rows.dim() == 2 and rows.shape[0] == B, (
        f"rows {tuple(rows.shape)} and cols {tuple(cols.shape)} must both be (B={B}, n)"
    )
    dtype = torch.promote_types(maps.dtype, torch.float32)
    work = dtype
    if maps.is_cuda and dtype == torch.float32:
        if torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest":
            work = torch.float64
    iy, wy = _cubic_taps(rows, h, out_size)  # (B, n, 4)
    ix, wx = _cubic_taps(cols, w, out_size)
    taps = (iy[..., :, None] * w + ix[..., None, :]).flatten(2)  # (B, n, 16) flat cell indices
    weights = (wy[..., :, None] * wx[..., None, :]).flatten(2).to(work)  # (B, n, 16)
    with torch.autocast(device_type=maps.device.type, enabled=False):
        kernel = torch.zeros(B, rows.shape[1], h * w, dtype=work, device=maps.device)
        kernel.scatter_add_(2, taps, weights)  # (B, n, h·w)
        out = torch.bmm(kernel, maps.to(work).flatten(2).transpose(1, 2))  # (B, n, C)
    return out.to(dtype)


def normalise_images(
    images: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Tensor:
    """Grey images (..., H, W) in [0, 1] -> (..., 3, H, W) float32, each channel (x − mean_c) / std_c.

    The grey value is copied to the three channels the teacher expects. Views (B, V, H, W) give
    (B, V, 3, H, W): ``.flatten(0, 1)`` makes the teacher batch. A (B, 1, H, W) input gives
    (B, 1, 3, H, W).
    """
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(3, 1, 1)
    return (images.float()[..., None, :, :] - m) / s
