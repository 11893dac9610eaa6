"""Augmented draws: the clouds the teacher sees in the paper's step, drawn once per object and cached.

The official step (method §1.1, §1.6, §5) takes a fresh random 2048 of an object's points, normalises
them (``pc_norm``), scales each axis by U(2/3, 3/2) and shifts it by U(−0.2, 0.2), and projects *that*
cloud into the teacher's views. A views store with ``views: augmented`` holds K such draws per object,
draw k from (seed, object id, k): its subset, the ``pc_norm`` statistics of that subset (``centre``,
``radius``) and its ``scale`` and ``shift``. The draw's frame maps a stored point p to

    frame(p) = (p − centre) / radius · scale + shift

which is exactly the official augmented input when p runs over the draw's own subset.

Training with such a store feeds the 3D model one draw per object and step, picked from (seed,
epoch, object), so the 2D targets and saliency come from views of the same augmented cloud as its
input. By default (``train.input_subset: draw``) the input is the draw's own cloud, in a fresh random
order each step: the step is then the official step for that draw, exactly (same views, masks and
losses). With ``input_subset: fresh`` the input is a fresh subset every step, normalised by its own
``pc_norm`` and given the draw's scale and shift; its 2D lookups use the same points in the draw's
frame, so each point reads the draw's pixel at its own place on the surface — but the views of
another subset differ (pixels sum the depths of the points that fall in them), and
``benchmarks/draws.py`` measures how much (docs/training.md, "Which views the teacher sees").
"""

from __future__ import annotations

import numpy as np

from i2pmae.augment import SCALE_HIGH, SCALE_LOW, SHIFT
from pipeline.sources.base import object_rng


def draw(
    seed: int, object_id: str, k: int, n_points: int, subset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw k of one object: (subset (R,) int32 sorted indices into its P stored points, scale (3,)
    float32 in [2/3, 3/2), shift (3,) float32 in [−0.2, 0.2)), from (seed, object id, k) only."""
    rng = object_rng(seed, f"{object_id}\x00draw{k}")
    chosen = np.sort(rng.choice(n_points, min(subset, n_points), replace=False)).astype(np.int32)
    scale = rng.uniform(SCALE_LOW, SCALE_HIGH, 3).astype(np.float32)
    shift = rng.uniform(-SHIFT, SHIFT, 3).astype(np.float32)
    return chosen, scale, shift


def norm_stats(points: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """``pc_norm``'s statistics of a cloud (N, 3) float32 (method §1.1): its centroid (3,) and the
    largest norm of the centred points (a scalar), both float32."""
    centre = points.mean(axis=0, dtype=np.float32)
    centred = points - centre
    return centre.astype(np.float32), np.float32(np.sqrt((centred**2).sum(axis=1)).max())


def frame(
    points: np.ndarray, centre: np.ndarray, radius: float, scale: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """Points (N, 3) of the stored cloud in a draw's augmented frame: (p − centre) / radius · scale +
    shift, float32. With the draw's own subset and statistics this is the official augmented input."""
    return ((points - centre) / radius * scale + shift).astype(np.float32, copy=False)
