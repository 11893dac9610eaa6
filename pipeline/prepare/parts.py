"""The prepare stage for part-labelled sources (a catalog with ``parts``: shapenetpart, synthetic-parts).

Part segmentation draws its points from an object's *original* points on every read (the reference
samples 2048 with replacement, at test time too), so the store keeps all of them, not a fixed resample.
Objects hold different numbers of points; the store holds P rows per object (the largest object's
count, capped by ``prepare.points``: the catalog's ``handling["n_points"]``). Each split then holds,
besides ``points (S, P, 3) float32``, ``label`` and ``id``:

* ``part (S, P) int16``: the global part id of each row, −1 on padding rows;
* ``count (S,) int32``: the object's real rows; rows from ``count`` on repeat row 0 (never read).

The group's attrs add ``task: "partseg"``, ``parts`` (category → its global part ids), ``n_parts`` and
``part_names`` (``"<category>/<part>"`` per id). The consumer's reader: :mod:`pipeline.storage.partseg_store`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from pipeline.core.params import PrepareParams
from pipeline.prepare.rows import read_or_record, write_labels_and_ids
from pipeline.sources.base import Catalog, Item
from pipeline.sources.part_files import read_part_item
from pipeline.storage.partseg_store import TASK
from pipeline.storage.store import ArraySpec

ARRAYS = ("part", "count")  # besides points, label and id; compaction removes bad rows from them too


def store_attrs(catalog: Catalog) -> dict[str, Any]:
    """The group attrs of a part store ({} for a catalog without parts)."""
    if catalog.parts is None:
        return {}
    names = list(catalog.part_names or [])
    return {"task": TASK, "parts": dict(catalog.parts), "n_parts": len(names), "part_names": names}


def specs(n: int, n_points: int, chunk: int) -> list[ArraySpec]:
    """``part`` (sharded like ``points``: one file per work chunk, one inner chunk per object) and
    ``count``, for a split of ``n`` objects of ``n_points`` rows."""
    return [
        ArraySpec("part", (n, n_points), (1, n_points), "int16", ("object", "point"), -1, (chunk, n_points)),
        ArraySpec("count", (n,), (chunk,), "int32", ("object",), 0),
    ]


def load_chunk(
    split: str, index: int, items: list[Item], params: PrepareParams, n_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, str, str, str]], list[tuple[str, str, str]]]:
    """Read one chunk of part-labelled objects in a worker: points (n, P, 3) float32, part (n, P) int16,
    count (n,) int32, failures [(row, id, path, reason)] and warnings [(id, path, text)].

    A bad input (:func:`pipeline.sources.part_files.read_part_item` raises BadInput) leaves zero points,
    parts −1 and count 0 in its row; with ``params.strict`` it raises instead.
    """
    points = np.zeros((len(items), n_points, 3), np.float32)
    part = np.full((len(items), n_points), -1, np.int16)
    count = np.zeros(len(items), np.int32)
    failures: list[tuple[int, str, str, str]] = []
    warnings: list[tuple[str, str, str]] = []
    for row, item in enumerate(items):
        notes: list[str] = []
        read = partial(read_part_item, item, n_points, params.seed, notes)
        found = read_or_record(read, item, params, row, failures)
        if found is None:
            continue
        xyz, ids = found  # (k, 3) float32, (k,) int16 with k ≤ P
        k = len(xyz)
        points[row, :k], points[row, k:] = xyz, xyz[0]
        part[row, :k] = ids
        count[row] = k
        warnings += [(item.id, item.path, text) for text in notes]
    return points, part, count, failures, warnings


def write_chunk(path: str, task: tuple, result: tuple) -> tuple[list, list]:
    """Write one loaded chunk's rows (its own shard and chunk files); returns (failures, warnings)."""
    import zarr

    (split, i, items, params, _), (points, part, count, failures, notes) = task, result
    group, start = zarr.open_group(path, mode="r+"), i * params.chunk
    group[f"{split}/points"][start : start + len(items)] = points
    group[f"{split}/part"][start : start + len(items)] = part
    group[f"{split}/count"][start : start + len(items)] = count
    write_labels_and_ids(group, split, start, items, failures)
    return failures, notes
