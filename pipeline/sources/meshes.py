"""Reading geometry files and turning them into ``(P, 3) float32`` clouds in the unit sphere.

Meshes (obj, ply, stl, glb through trimesh; OFF through our own parser, which accepts ModelNet40's
"OFF490 518 0" header defect) are sampled by area-weighted surface sampling of ``oversample·P`` points
seeded from (seed, object id), then farthest point sampling down to P, then centred and scaled into the
unit sphere. Point files (npy, txt, points-only PLY) skip the surface sampling. Every defect a user's
file can have becomes :class:`~pipeline.errors.BadInput` with a reason.

trimesh takes about a second to import, so it is imported only when a mesh that neither our OFF parser
nor the binary-PLY reader (ply.py) handles is read: scanning a folder, the "up to date" path of
``i2p prepare`` and workers reading PLY meshes never pay for it.
"""

from __future__ import annotations

from pathlib import Path

import fpsample
import numpy as np

from pipeline.errors import BadInput
from pipeline.sources.base import normalise_unit_sphere, object_rng
from pipeline.sources.ply import read_simple_ply

MESH_EXTS = ("obj", "ply", "off", "stl", "glb")
POINT_EXTS = ("npy", "txt")


def read_off(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse an OFF file: vertices (V, 3) float64, triangles (F, 3) int64 (polygons split as fans).

    Accepts "OFF" glued to the counts line ("OFF490 518 0"), comments and blank lines.
    """
    try:
        text = path.read_text(errors="strict")
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"unreadable OFF file: {err}") from None
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].upper().startswith("OFF"):
        raise BadInput("not an OFF file: the first line does not start with 'OFF'")
    head = lines[0][3:].split()
    body = lines[1:]
    if not head:  # standard layout: counts on the next line
        if not body:
            raise BadInput("truncated OFF file: no counts line")
        head, body = body[0].split(), body[1:]
    try:
        n_vertices, n_faces = int(head[0]), int(head[1])
    except (IndexError, ValueError):
        raise BadInput(f"bad OFF counts line {' '.join(head)!r}: expected 'V F E'") from None
    if len(body) < n_vertices + n_faces:
        raise BadInput(
            f"truncated OFF file: header says {n_vertices} vertices + {n_faces} faces, found {len(body)} lines"
        )
    try:
        vertices = np.array([ln.split()[:3] for ln in body[:n_vertices]], dtype=np.float64).reshape(-1, 3)
        return vertices, _off_faces([ln.split() for ln in body[n_vertices : n_vertices + n_faces]])
    except ValueError as err:
        raise BadInput(f"malformed OFF file: {err}") from None


def _off_faces(rows: list[list[str]]) -> np.ndarray:
    """OFF face rows "k i1 .. ik [colour]" → triangles (F, 3) int64, each polygon split as a fan."""
    if rows and all(len(r) == len(rows[0]) for r in rows):  # fast path: one polygon size, no colours
        table = np.array(rows, dtype=np.int64)
        k = int(table[0, 0])
        if k >= 3 and table.shape[1] == k + 1 and (table[:, 0] == k).all():
            fan = [table[:, [1, i, i + 1]] for i in range(2, k)]
            return np.stack(fan, axis=1).reshape(-1, 3)
    triangles = []
    for row in rows:
        values = [int(v) for v in row]
        k, idx = values[0], values[1 : 1 + values[0]]
        if len(idx) != k or k < 3:
            raise ValueError(f"face line {' '.join(row)!r}")
        triangles.extend((idx[0], idx[i], idx[i + 1]) for i in range(1, k - 1))
    return np.array(triangles, dtype=np.int64).reshape(-1, 3)


def read_geometry(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and triangles (F, 3) int64; F = 0 for a points-only file."""
    if path.suffix.lower() == ".off":
        return read_off(path)
    if path.suffix.lower() == ".ply":
        try:
            found = read_simple_ply(path)
        except OSError as err:
            raise BadInput(f"unreadable .ply file: {type(err).__name__}: {err}") from None
        if found is not None:
            return found
    import trimesh

    try:
        loaded = trimesh.load(path, process=False, skip_materials=True)
    except Exception as err:  # trimesh raises many types for a broken file
        raise BadInput(f"unreadable {path.suffix} file: {type(err).__name__}: {err}") from None
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_mesh() if hasattr(loaded, "to_mesh") else loaded.dump(concatenate=True)
    if isinstance(loaded, trimesh.PointCloud):
        return np.asarray(loaded.vertices, dtype=np.float64).reshape(-1, 3), np.zeros((0, 3), np.int64)
    if not isinstance(loaded, trimesh.Trimesh):
        raise BadInput(f"{path.suffix} file holds a {type(loaded).__name__}, not a mesh")
    vertices = np.asarray(loaded.vertices, dtype=np.float64).reshape(-1, 3)
    return vertices, np.asarray(loaded.faces, dtype=np.int64).reshape(-1, 3)


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Checked areas (F,) of a mesh; raises BadInput for empty, non-finite or zero-area meshes."""
    return _checked_triangles(vertices, faces)[0]


def _checked_triangles(
    vertices: np.ndarray, faces: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Areas (F,), first corners a (F, 3) and edges b − a, c − a (F, 3) of a checked mesh."""
    if len(faces) == 0:
        raise BadInput(f"empty mesh: no faces ({len(vertices)} vertices)")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise BadInput(
            f"face index out of range: indices {faces.min()}..{faces.max()} for {len(vertices)} vertices"
        )
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise BadInput(f"non-finite (NaN/inf) coordinates in {int(bad.sum())} of {len(vertices)} vertices")
    a = vertices[faces[:, 0]]
    ab, ac = vertices[faces[:, 1]] - a, vertices[faces[:, 2]] - a
    areas = 0.5 * np.linalg.norm(np.cross(ab, ac), axis=1)
    extent = float(np.ptp(vertices[faces.ravel()], axis=0).max())
    if not areas.sum() > 1e-12 * max(extent, 1e-300) ** 2:
        raise BadInput(
            f"degenerate mesh: total surface area {areas.sum():.3g} (all {len(faces)} faces have zero area)"
        )
    return areas, a, ab, ac


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Area-weighted uniform samples on the surface: (count, 3) float64.

    Gives the bytes of ``face = rng.choice(F, count, p=areas / areas.sum())``, ``u, v = rng.random((2,
    count, 1))``, ``a + u·(b − a) + v·(c − a)`` (numpy 2's ``choice`` draws faces by this cdf search;
    the floating-point operations are the same), about 2.5× faster: edges are computed per face, not
    per sample, and faces are found through a coarse table instead of a binary search per sample.
    """
    areas, a, ab, ac = _checked_triangles(vertices, faces)
    cdf = (areas / areas.sum()).cumsum()  # what Generator.choice does with p
    cdf /= cdf[-1]
    face = _search_right(cdf, rng.random(count))  # (count,) face of every sample
    u, v = rng.random((2, count, 1))
    flip = (u + v) > 1.0  # reflect into the triangle so samples stay uniform
    np.subtract(1.0, u, out=u, where=flip)
    np.subtract(1.0, v, out=v, where=flip)
    out = ab.take(face, axis=0)
    out *= u
    out += a.take(face, axis=0)  # a + u·(b − a): IEEE addition is commutative, the bytes are the same
    along = ac.take(face, axis=0)
    along *= v
    out += along
    return out


def _search_right(cdf: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``cdf.searchsorted(keys, side="right")`` for keys in [0, 1), exactly, without a search per key.

    A table gives, for every bin [j/M, (j+1)/M) (M a power of two, so keys·M and j/M are exact), how
    many cdf values are ≤ its ends; a key whose bin holds no cdf value has its answer there, and only
    the keys in the few bins that hold one are searched.
    """
    if 16 * len(cdf) > len(keys):  # many faces, few samples: the plain search is cheaper
        return cdf.searchsorted(keys, side="right")
    bins = 1 << int(np.ceil(np.log2(16 * len(cdf))))
    ends = cdf.searchsorted(np.arange(bins + 1) / bins, side="right")  # (M + 1,) sorted keys: fast
    j = (keys * bins).astype(np.intp)  # floor: bin of every key
    found = ends[j]
    unsure = np.flatnonzero(found != ends[j + 1])
    found[unsure] = cdf.searchsorted(keys[unsure], side="right")
    return found


def farthest_points(points: np.ndarray, count: int, method: str) -> np.ndarray:
    """Indices (count,) of a farthest point sample of points (N, 3), starting at index 0.

    method "bucket": fpsample's kd-line bucket FPS (fast; spread like FPS, indices differ);
    "exact": the classic O(N·count) loop.
    """
    n = len(points)
    assert n >= count, (n, count)
    pc = np.ascontiguousarray(points, dtype=np.float32)
    if method == "exact":
        idx = fpsample.fps_sampling(pc, count, start_idx=0)
    elif method == "bucket":
        height = int(np.clip(round(np.log2(max(n, 2))) - 8, 3, 9))
        while 2**height > n and height > 1:
            height -= 1
        idx = fpsample.bucket_fps_kdline_sampling(pc, count, h=height, start_idx=0)
    else:
        raise ValueError(f"unknown fps method {method!r}: expected 'bucket' or 'exact'")
    return np.asarray(idx, dtype=np.int64)


def unit_sphere(points: np.ndarray) -> np.ndarray:
    """(P, 3) → (P, 3) float32 centred at the centroid with max norm 1; BadInput if it has no extent."""
    if not np.isfinite(points).all():
        raise BadInput("non-finite (NaN/inf) point coordinates")
    if float(np.ptp(points, axis=0).max()) <= 0.0:
        raise BadInput(f"all {len(points)} points coincide: cannot scale into the unit sphere")
    return normalise_unit_sphere(np.asarray(points, dtype=np.float64))


def cloud_to_points(points: np.ndarray, n_points: int, fps: str) -> np.ndarray:
    """A stored cloud (N, ≥3) → FPS down to (n_points, 3) float32 in the unit sphere."""
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    xyz = xyz[np.isfinite(xyz).all(axis=1)]
    if len(xyz) < n_points:
        raise BadInput(f"points-only file with {len(xyz)} finite points, needs >= {n_points}")
    return unit_sphere(xyz[farthest_points(xyz, n_points, fps)])


def sample_mesh_file(
    path: Path, n_points: int, oversample: int, fps: str, seed: int, object_id: str
) -> np.ndarray:
    """A mesh file → (n_points, 3) float32: surface samples seeded by (seed, id), FPS, unit sphere."""
    if not path.is_file():
        raise BadInput(f"file not found: {path}")
    vertices, faces = read_geometry(path)
    if len(faces) == 0 and len(vertices) > 0 and path.suffix.lower() == ".ply":
        return cloud_to_points(vertices, n_points, fps)  # a points-only PLY (a scan) is a point file
    surface = sample_surface(vertices, faces, oversample * n_points, object_rng(seed, object_id))
    return unit_sphere(surface[farthest_points(surface, n_points, fps)])


def read_point_file(path: Path) -> np.ndarray:
    """An npy array (N, ≥3) or a txt file (one point per line, comma or space separated) → (N, C) float64."""
    if not path.is_file():
        raise BadInput(f"file not found: {path}")
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            array = np.loadtxt(path, delimiter="," if "," in _first_line(path) else None, ndmin=2)
    except (OSError, ValueError, EOFError) as err:
        raise BadInput(f"unreadable {path.suffix} point file: {type(err).__name__}: {err}") from None
    if array.ndim != 2 or array.shape[1] < 3:
        raise BadInput(f"point file has shape {tuple(array.shape)}: expected (N, 3) or (N, 3+C)")
    return np.asarray(array, dtype=np.float64)


def _first_line(path: Path) -> str:
    with open(path, errors="replace") as f:
        return f.readline()
