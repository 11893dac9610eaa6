"""What every data source gives the prepare stage.

A source looks at a root directory once (cheaply: file names, split lists, h5 shapes) and returns a
:class:`Catalog`: the classes and, per split, the list of :class:`Item` to read. Reading one item is
``load_points(item, params)`` in a worker process; it returns ``(P, 3) float32`` or raises
:class:`~pipeline.core.errors.BadInput` with a reason. Items must be picklable (they travel to dask
workers) and loading must depend only on the item, the params and the seed (never on run order), so
that any chunking, worker count or resume gives the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.core.errors import I2PError


@dataclass(frozen=True)
class Item:
    """One object to read.

    id:    source-relative id, unique within the dataset, e.g. "02691156-1a04e3ea..." or "chair/chair_0001".
    path:  the file it comes from (reported in failures).
    label: class index into Catalog.classes, -1 when unlabelled.
    kind:  how to read it: "mesh" (trimesh / OFF file), "npy", "txt" (x,y,z[,nx,ny,nz] per line),
           "h5" (row `index` of dataset `key` in `path`), "array" (points carried in `data`).
    index: row inside an h5 file or pickle, else -1.
    data:  small extra payload (e.g. the h5 key); must be picklable.
    """

    id: str
    path: str
    label: int
    kind: str
    index: int = -1
    data: Any = None


@dataclass
class Catalog:
    """What a source found under its root.

    handling: how points are treated, recorded in the store attrs, e.g.
      {"points": "as stored" | "normalised" | "sampled", "point_order": "stored" | "fps",
       "n_points": 2048, "layout": "modelnet40_ply_hdf5_2048"}
    """

    source: str
    layout: str
    root: str
    classes: list[str]
    splits: dict[str, list[Item]]
    handling: dict[str, Any] = field(default_factory=dict)
    # candidates found at scan time that will not be read: {"split", "row": -1, "id", "path", "reason"};
    # the prepare stage lists them in the store's ``failures`` so nothing under the root vanishes.
    failures: list[dict[str, Any]] = field(default_factory=list)
    # part-labelled sources only (shapenetpart, synthetic-parts): class name → its global part ids, and the
    # name of every part id (index = id). The prepare stage then also stores ``part`` and ``count``.
    parts: dict[str, list[int]] | None = None
    part_names: list[str] | None = None


def scan_failure(object_id: str, path: Any, reason: str, split: str = "") -> dict[str, Any]:
    """One entry of ``Catalog.failures`` (same keys as the failures of reading)."""
    return {"split": split, "row": -1, "id": object_id, "path": str(path), "reason": reason}


class MissingPackage(I2PError, ImportError):
    """A Python package a reader needs is not installed: the environment's fault, never the file's.

    It stops the run (the prepare stage does not record it as a bad input).
    """


def object_seed(seed: int, object_id: str) -> int:
    """A 64-bit seed from (seed, object id): per-object randomness independent of run order."""
    digest = hashlib.sha256(f"{seed}:{object_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def object_rng(seed: int, object_id: str) -> np.random.Generator:
    return np.random.default_rng(object_seed(seed, object_id))


def normalise_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Subtract the centroid, divide by the largest norm (method §1.1 `pc_norm`). (P, 3) → (P, 3)."""
    centred = points - points.mean(axis=0, keepdims=True)
    scale = np.sqrt((centred**2).sum(axis=1)).max()
    return (centred / scale).astype(np.float32)
