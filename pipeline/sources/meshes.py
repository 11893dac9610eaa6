"""Reading geometry files and turning them into ``(P, 3) float32`` clouds in the unit sphere.

Meshes (obj, ply, stl, glb through trimesh; OFF through our own parser, which accepts ModelNet40's
"OFF490 518 0" header defect) are sampled by area-weighted surface sampling of ``oversample·P`` points
seeded from (seed, object id), then farthest point sampling down to P, then centred and scaled into the
unit sphere. Point files (npy, txt, points-only PLY) skip the surface sampling. Every defect a user's
file can have becomes :class:`~pipeline.core.errors.BadInput` with a reason.

trimesh takes about a second to import, so it is imported only when a mesh that neither our OFF parser
nor the binary-PLY reader (ply.py) handles is read: scanning a folder, the "up to date" path of
``i2p prepare`` and workers reading PLY meshes never pay for it.
"""

from __future__ import annotations

import io
from pathlib import Path

import fpsample
import numpy as np

from pipeline.core.errors import BadInput
from pipeline.sources.base import MissingPackage, normalise_unit_sphere, object_rng
from pipeline.sources.ply import read_simple_ply
from pipeline.sources.textformats import ascii_bytes, read_off, read_point_text

MESH_EXTS = ("obj", "ply", "off", "stl", "glb")
POINT_EXTS = ("npy", "txt", "xyz", "pts", "csv", "asc", "xyzn", "xyzrgb")


def read_geometry(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and triangles (F, 3) int64; F = 0 for a points-only file.

    Text is decoded leniently (textformats.py) before trimesh sees it, so a Latin-1 comment or a UTF-16
    OBJ reads; a package trimesh needs and lacks raises MissingPackage (the run stops: not the file's fault).
    """
    suffix = path.suffix.lower()
    if suffix == ".off":
        return read_off(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BadInput(f"unreadable {suffix} file: {type(err).__name__}: {err}") from None
    if suffix == ".ply":
        found = read_simple_ply(path)
        if found is not None:
            return found
        data = _ascii_ply_header(data)
    elif suffix == ".obj" or (suffix == ".stl" and not _binary_stl(data)):
        data = ascii_bytes(data)
    return _trimesh_geometry(data, suffix)


def _trimesh_geometry(data: bytes, suffix: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        import trimesh

        loaded = trimesh.load(io.BytesIO(data), file_type=suffix[1:], process=False, skip_materials=True)
    except ImportError as err:
        raise MissingPackage(
            f"reading this {suffix} file needs the Python package {err.name or err}, which is not installed",
            f"pip install {err.name}" if err.name else "install the package named above",
        ) from None
    except Exception as err:  # trimesh raises many types for a broken file
        raise BadInput(f"unreadable {suffix} file: {type(err).__name__}: {err}") from None
    if isinstance(loaded, trimesh.Scene):
        if not loaded.geometry:
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        loaded = loaded.to_mesh() if hasattr(loaded, "to_mesh") else loaded.dump(concatenate=True)
    if isinstance(loaded, trimesh.PointCloud):
        return np.asarray(loaded.vertices, dtype=np.float64).reshape(-1, 3), np.zeros((0, 3), np.int64)
    if not isinstance(loaded, trimesh.Trimesh):
        raise BadInput(f"{suffix} file holds a {type(loaded).__name__}, not a mesh")
    vertices = np.asarray(loaded.vertices, dtype=np.float64).reshape(-1, 3)
    return vertices, np.asarray(loaded.faces, dtype=np.int64).reshape(-1, 3)


def _binary_stl(data: bytes) -> bool:
    """A binary STL: 80-byte header, uint32 count n, then exactly 50·n bytes."""
    return len(data) >= 84 and len(data) == 84 + 50 * int.from_bytes(data[80:84], "little")


def _ascii_ply_header(data: bytes) -> bytes:
    """The PLY header (comments may hold any bytes) as ASCII; the body (binary or ASCII) unchanged.
    A file that does not start with "ply" in ASCII (a BOM, UTF-16) can only be an ASCII PLY: all decoded."""
    if not data.startswith(b"ply"):
        return ascii_bytes(data)
    stop = data.find(b"end_header")
    if stop < 0:
        return data
    return bytes(b if b < 128 else 63 for b in data[:stop]) + data[stop:]


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
    path: Path,
    n_points: int,
    oversample: int,
    fps: str,
    seed: int,
    object_id: str,
    notes: list[str] | None = None,
) -> np.ndarray:
    """A mesh file → (n_points, 3) float32: surface samples seeded by (seed, id), FPS, unit sphere.

    A file of a mesh format holding vertices and no faces (a points-only PLY, an OFF with 0 faces, an
    OBJ of ``v`` lines) is a point file. ``notes`` receives a warning on coarse single precision.
    """
    if not path.is_file():
        raise BadInput(f"file not found: {path}")
    vertices, faces = read_geometry(path)
    note_precision(vertices, notes)
    if len(faces) == 0 and len(vertices) > 0:
        return cloud_to_points(vertices, n_points, fps)
    surface = sample_surface(vertices, faces, oversample * n_points, object_rng(seed, object_id))
    return unit_sphere(surface[farthest_points(surface, n_points, fps)])


def read_point_file(path: Path) -> np.ndarray:
    """An npy array (N, ≥3) or an ASCII point file (textformats.read_point_text) → (N, C), C ≥ 3.

    npy arrays keep their dtype (float32 stays float32, so precision can be judged); text is float64.
    """
    if not path.is_file():
        raise BadInput(f"file not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as err:
            if not path.read_bytes()[:6] == b"\x93NUMPY":
                raise BadInput("not an .npy file (bad magic: it does not start with \\x93NUMPY)") from None
            raise BadInput(f"unreadable .npy file: {err}") from None
        except (OSError, EOFError) as err:
            raise BadInput(f"unreadable .npy file: {type(err).__name__}: {err}") from None
        if array.dtype.kind not in "fiu":
            raise BadInput(f".npy file holds {array.dtype} values, not numbers")
    else:
        array = read_point_text(path)
    if array.ndim != 2 or array.shape[1] < 3:
        raise BadInput(f"point file has shape {tuple(array.shape)}: expected (N, 3) or (N, 3+C)")
    return array if array.dtype.kind == "f" else array.astype(np.float64)


COARSE_STEPS = 1000  # fewer representable steps across the object than this is warned about


def note_precision(xyz: np.ndarray, notes: list[str] | None) -> None:
    """Append a warning to ``notes`` when single-precision coordinates resolve the object coarsely.

    Single precision: a float32/float16 array, or float64 values that are all exact in float32 (a
    binary STL/PLY/GLB read through float64). Far from the origin a float32 step (ulp) is large: at
    |x| ≈ 1e5 it is 0.0078, so a 1-unit object spans ~128 steps and its points snap to a grid.
    """
    if notes is None or len(xyz) == 0:
        return
    xyz = np.asarray(xyz)[:, :3]
    xyz = xyz[np.isfinite(xyz).all(axis=1)]
    if len(xyz) < 2 or not (xyz.dtype.itemsize <= 4 or np.array_equal(xyz, xyz.astype(np.float32))):
        return
    magnitude = float(np.abs(xyz).max())
    step = float(np.spacing(np.float32(magnitude)))
    extent = float(np.ptp(xyz, axis=0).max())
    if extent > 0 and extent / step < COARSE_STEPS:
        notes.append(
            f"coarse coordinates: single precision at magnitude {magnitude:.3g} has steps of {step:.3g}, "
            f"only {extent / step:.0f} across the object (extent {extent:.3g}); its points lie on a grid"
        )
