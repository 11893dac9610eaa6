"""One part-labelled point file of the ShapeNetPart layout → the object's normalised points and part ids.

A file holds one row per point, ``x y z nx ny nz part`` (the release) or ``x y z part``; ``part`` is a
global part id, written as an integer or as a float with a zero fraction (``12.000000``). Every point is
kept, in file order, up to a cap: an object with more points keeps a random subset of ``max_rows`` of
them, drawn from (seed, object id) so that it never depends on run order. The cloud is normalised
(centroid, largest norm: method §1.1) over *all* its points before any subset is taken, as the
reference does before it draws its 2048 points per read.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from pipeline.core.errors import BadInput
from pipeline.sources.base import Item, object_rng
from pipeline.sources.meshes import unit_sphere
from pipeline.sources.textformats import read_point_text

COLUMNS = (7, 4)  # x y z nx ny nz part | x y z part


def count_rows(path: Path) -> int:
    """Lines of a text file, an upper bound on its points (0 when it cannot be read); reads bytes only,
    so counting a whole release costs a fraction of parsing it."""
    n, last = 0, b"\n"
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                n += block.count(b"\n")
                last = block[-1:]
    except OSError:
        return 0
    return n + (last != b"\n")


def read_table(path: Path) -> np.ndarray:
    """A part file → (N, 4 or 7) float64; BadInput for a missing, empty or malformed file."""
    if not path.is_file():
        raise BadInput(f"file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy's "input contained no data"
            table = np.loadtxt(path, ndmin=2, dtype=np.float64)  # the release: whitespace, LF or CRLF
    except (ValueError, UnicodeDecodeError):
        table = read_point_text(path)  # headers, commas, other encodings (raises BadInput)
    if table.shape[0] == 0:
        raise BadInput("empty point file")
    if table.shape[1] not in COLUMNS:
        raise BadInput(
            f"rows hold {table.shape[1]} values; expected 7 (x y z nx ny nz part) or 4 (x y z part)"
        )
    return table


def part_ids(column: np.ndarray, category: str, allowed: tuple[int, ...]) -> np.ndarray:
    """The part column (N,) float64 → (N,) int16 global ids; BadInput when one is not an integer or lies
    outside ``category``'s parts ``allowed``."""
    whole = np.isfinite(column) & (column == np.round(column))
    if not whole.all():
        raise BadInput(f"part id {column[~whole][0]!r} is not an integer ({int((~whole).sum())} points)")
    ids = column.astype(np.int64)
    bad = ~np.isin(ids, np.asarray(allowed, np.int64))
    if bad.any():
        found = sorted(set(ids[bad].tolist()))
        raise BadInput(
            f"{int(bad.sum())} points carry part ids {found[:5]} outside {category}'s part ids "
            f"{list(allowed)}"
        )
    return ids.astype(np.int16)


def read_part_item(
    item: Item, max_rows: int, seed: int, notes: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one part-labelled object: points (k, 3) float32 in the unit sphere and part ids (k,) int16,
    k = min(N, max_rows) for a file of N points. ``item.data`` is (category name, its part ids).

    Raises BadInput (missing, empty or malformed file, non-finite or coincident points, a part id
    outside the category's); ``notes`` receives a warning when a subset was kept.
    """
    category, allowed = item.data
    table = read_table(Path(item.path))
    ids = part_ids(table[:, -1], category, tuple(allowed))
    xyz = unit_sphere(table[:, :3])  # (N, 3) float32, normalised over every point of the file
    n = len(xyz)
    if n > max_rows:
        keep = np.sort(object_rng(seed, item.id).choice(n, max_rows, replace=False))
        xyz, ids = xyz[keep], ids[keep]
        if notes is not None:
            notes.append(
                f"kept a random {max_rows} of its {n} points (prepare.points caps the rows stored per object)"
            )
    return np.ascontiguousarray(xyz), ids
