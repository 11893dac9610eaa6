"""Mesh primitives the synthetic classes are built from (trimesh): boxes, cylinders, lathed profiles,
tori and sets of legs, placed in a y-up frame about unit size."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import trimesh


@functools.cache
def turn(axis: str) -> np.ndarray:
    """4×4 rotation taking the z axis to ``axis`` ("x", "y" or "z")."""
    import trimesh

    if axis == "y":
        return trimesh.transformations.rotation_matrix(-np.pi / 2, (1, 0, 0))
    if axis == "x":
        return trimesh.transformations.rotation_matrix(np.pi / 2, (0, 1, 0))
    return np.eye(4)


def box(sx, sy, sz, x=0.0, y=0.0, z=0.0) -> trimesh.Trimesh:
    """Box of extents (sx, sy, sz) centred at (x, y, z)."""
    import trimesh

    return trimesh.creation.box(extents=(sx, sy, sz)).apply_translation((x, y, z))


def cyl(r, h, x=0.0, y=0.0, z=0.0, axis="y") -> trimesh.Trimesh:
    """Closed cylinder of radius r and length h along ``axis``, centred at (x, y, z)."""
    import trimesh

    m = trimesh.creation.cylinder(radius=r, height=h, sections=20)
    m.apply_transform(turn(axis))
    return m.apply_translation((x, y, z))


def lathe(radii, heights, y=0.0) -> trimesh.Trimesh:
    """Surface of revolution about the y axis through the (radius, height) profile points."""
    import trimesh

    m = trimesh.creation.revolve(np.column_stack([radii, heights]), sections=28)
    return m.apply_transform(turn("y")).apply_translation((0, y, 0))


def ring(big, small, x=0.0, y=0.0, z=0.0, upright=False) -> trimesh.Trimesh:
    """Torus: horizontal (a foot ring) or upright in the x-y plane (a handle)."""
    import trimesh

    m = trimesh.creation.torus(big, small, major_sections=24, minor_sections=10)
    return m.apply_transform(np.eye(4) if upright else turn("y")).apply_translation((x, y, z))


def legs(rng, n, w, d, h, thick, y=0.0) -> list[trimesh.Trimesh]:
    """n legs (3, 4 or 6) of height h under a w×d footprint, square or round, top at y + h."""
    if n == 3:
        ang = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        spots = np.column_stack([np.cos(ang) * w / 2, np.sin(ang) * d / 2])
    else:
        xs = np.linspace(-w / 2, w / 2, n // 2)
        spots = np.array([(x, s * d / 2) for x in xs for s in (-1, 1)])
    if rng.random() < 0.5:
        return [box(thick, h, thick, x, y + h / 2, z) for x, z in spots]
    return [cyl(thick / 2, h, x, y + h / 2, z) for x, z in spots]
