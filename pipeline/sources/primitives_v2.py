"""Mesh builders for the version-2 synthetic classes: closed surfaces made from numpy grids.

Everything here is vectorised numpy that ends in one ``trimesh.Trimesh`` (no booleans, no shapely):
a *ring grid* of R rings × C points, closed around each ring and optionally across rings (a torus) or
capped by a fan at both ends, is enough for lathes, prisms with teeth or holes, twisted lofts,
corrugated slabs and batches of struts, boxes and walls. y is up; sizes are about unit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import trimesh


def grid_faces(R: int, C: int, wrap_rows: bool = False, caps: bool = False) -> np.ndarray:
    """Triangles (F, 3) of an R × C ring grid, vertex r·C + c; with caps, vertex R·C is the first
    ring's centre and R·C + 1 the last ring's."""
    idx = np.arange(R * C).reshape(R, C)
    r = np.arange(R if wrap_rows else R - 1)[:, None]
    c = np.arange(C)[None, :]
    a, b = idx[r, c], idx[r, (c + 1) % C]
    d, e = idx[(r + 1) % R, c], idx[(r + 1) % R, (c + 1) % C]
    faces = [np.stack([a, b, e], -1).reshape(-1, 3), np.stack([a, e, d], -1).reshape(-1, 3)]
    if caps:
        c = c[0]
        faces.append(np.stack([np.full(C, R * C), idx[0, (c + 1) % C], idx[0, c]], -1))
        faces.append(np.stack([np.full(C, R * C + 1), idx[-1, c], idx[-1, (c + 1) % C]], -1))
    return np.concatenate(faces)


def ring_mesh(rings: np.ndarray, wrap_rows: bool = False, caps: bool = False) -> trimesh.Trimesh:
    """rings: (R, C, 3) -> a closed surface through them (a tube with fan caps, or a torus)."""
    import trimesh

    R, C, _ = rings.shape
    verts = rings.reshape(-1, 3)
    if caps:
        verts = np.vstack([verts, rings[0].mean(axis=0), rings[-1].mean(axis=0)])
    return trimesh.Trimesh(verts, grid_faces(R, C, wrap_rows, caps), process=False)


def _circle(C: int, phase: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    t = phase + np.arange(C) * 2 * np.pi / C
    return np.cos(t), np.sin(t)


def revolve(radii, heights, sections: int, phase: float = 0.0) -> trimesh.Trimesh:
    """Lathe about the y axis through the (radius, height) profile; ``sections`` = 4 or 6 gives square
    or hexagonal solids. Profile ends at radius 0 close the surface."""
    cos, sin = _circle(sections, phase)
    r, h = np.asarray(radii, float)[:, None], np.asarray(heights, float)[:, None]
    rings = np.stack([r * cos, np.broadcast_to(h, (len(h), sections)), r * sin], -1)  # (R, C, 3)
    return ring_mesh(rings, caps=True)


def polar_prism(outer, thickness: float, inner=None) -> trimesh.Trimesh:
    """Extrusion along y of the polar outline r = outer[c] at C equal angles (stars, gears, flutes);
    with ``inner`` radii the solid has a hole (a ring: four contours wrapped into a torus grid)."""
    outer = np.asarray(outer, float)
    cos, sin = _circle(len(outer))
    y0, y1 = -thickness / 2, thickness / 2

    def contour(r, y):
        return np.stack([r * cos, np.full_like(cos, y), r * sin], -1)

    if inner is None:
        return ring_mesh(np.stack([contour(outer, y0), contour(outer, y1)]), caps=True)
    inner = np.broadcast_to(np.asarray(inner, float), outer.shape)
    rings = np.stack([contour(outer, y0), contour(outer, y1), contour(inner, y1), contour(inner, y0)])
    return ring_mesh(rings, wrap_rows=True)


def loft(sections: np.ndarray, heights) -> trimesh.Trimesh:
    """Capped solid through closed 2-D sections (R, C, 2) in the x-z plane stacked at ``heights``
    (twisted bars, fluted columns, blades)."""
    h = np.broadcast_to(np.asarray(heights, float)[:, None], sections.shape[:2])
    return ring_mesh(np.stack([sections[..., 0], h, sections[..., 1]], -1), caps=True)


def struts(starts: np.ndarray, ends: np.ndarray, radius: float, sections: int = 6) -> trimesh.Trimesh:
    """Many capped cylinders of one radius from starts (S, 3) to ends (S, 3), built at once."""
    import trimesh

    axis = ends - starts
    axis = axis / np.linalg.norm(axis, axis=1, keepdims=True)
    helper = np.where(np.abs(axis[:, 1:2]) < 0.9, [[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]])
    n = np.cross(axis, helper)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    b = np.cross(axis, n)
    cos, sin = _circle(sections)
    ring = radius * (cos[None, :, None] * n[:, None] + sin[None, :, None] * b[:, None])  # (S, C, 3)
    rings = np.stack([starts[:, None] + ring, ends[:, None] + ring], 1)  # (S, 2, C, 3)
    S, C = len(starts), sections
    centres = np.stack([starts, ends], 1)  # (S, 2, 3): the cap centres
    verts = np.concatenate([rings.reshape(S, 2 * C, 3), centres], 1)  # (S, 2C + 2, 3)
    faces = grid_faces(2, C, caps=True)[None] + (np.arange(S) * (2 * C + 2))[:, None, None]
    return trimesh.Trimesh(verts.reshape(-1, 3), faces.reshape(-1, 3), process=False)


def boxes(centres: np.ndarray, half_axes: np.ndarray) -> trimesh.Trimesh:
    """Many oriented boxes at once: centres (S, 3), half_axes (S, 3, 3) = three edge half-vectors."""
    import trimesh

    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float)  # (8, 3)
    verts = centres[:, None] + np.einsum("vk,skd->svd", signs, half_axes)  # (S, 8, 3)
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])  # (12, 3)
    faces = tris[None] + (np.arange(len(centres)) * 8)[:, None, None]
    return trimesh.Trimesh(verts.reshape(-1, 3), faces.reshape(-1, 3), process=False)


def walls(starts: np.ndarray, ends: np.ndarray, height: float, thickness: float, y: float = 0.0):
    """Vertical thin walls along segments of the x-z plane (S, 2) -> S boxes from y to y + height."""
    d = ends - starts
    along = np.column_stack([d[:, 0], np.zeros(len(d)), d[:, 1]]) / 2
    side = np.column_stack([-d[:, 1], np.zeros(len(d)), d[:, 0]])
    side *= (thickness / 2) / np.linalg.norm(side, axis=1, keepdims=True)
    up = np.broadcast_to([0.0, height / 2, 0.0], along.shape)
    mid = (starts + ends) / 2
    centres = np.column_stack([mid[:, 0], np.full(len(d), y + height / 2), mid[:, 1]])
    return boxes(centres, np.stack([along, up, side], 1))


def slab(x: np.ndarray, z: np.ndarray, top: np.ndarray, thickness: float) -> trimesh.Trimesh:
    """Closed sheet under a height field: top (len(x), len(z)) heights y over the x-z grid, the
    bottom ``thickness`` lower (corrugated roofs, washboards)."""
    X = np.broadcast_to(x[:, None], top.shape)
    Z = np.broadcast_to(z[None, :], top.shape)
    upper = np.stack([X, top, Z], -1)  # (nx, nz, 3)
    lower = np.stack([X, top - thickness, Z], -1)[:, ::-1]
    return ring_mesh(np.concatenate([upper, lower], 1), caps=True)  # rings across z, stacked along x
