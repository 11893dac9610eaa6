"""Free space, checked before a stage writes anything: the bytes its output will take, known from shapes,
against the free space of the filesystem it goes to (``shutil.disk_usage``). A store that cannot fit is
refused with one line before the first file (its lock included) is written, instead of failing hours
later with ENOSPC.

Estimates are lower bounds, so that no output that fits is refused: an uncompressed array (CLIP feature
maps) counts in full; a zstd-compressed one at :data:`LEAST_RATIO` of its raw bytes, about half the ratio
measured on real stores (points 0.82–0.93, point subsets 0.41–0.51, saliency 0.88; synthetic and folder
stores), and other compressed arrays (labels, ids: a few bytes per object) at :data:`OTHER_RATIO`. Depth
images compress with the points drawn in them (0.14 at 2048 points, 0.026 at 256): :func:`least_image_ratio`.
A store being resumed needs only its chunks not yet written. Checkpoints: :mod:`pipeline.train.disk`.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import ResourceError
from pipeline.storage.remote import is_url
from pipeline.storage.store import ArraySpec, StoreState

LEAST_RATIO = {"points": 0.4, "subset": 0.2, "saliency": 0.4}  # bytes on disk per raw byte, at least
OTHER_RATIO = 0.02
STORE_HINT = (
    "free space (`i2p gc` lists stores and optimizer states nothing uses), or point --data-root "
    "(--store-root for stores) at a larger disk"
)


def array_bytes(spec: ArraySpec, ratios: dict[str, float] | None = None) -> int:
    """The least bytes the array takes on disk: raw bytes (shape × itemsize), times its least compression
    ratio when compressed (``ratios`` by name, else :data:`LEAST_RATIO`). Text arrays (ids) count 0."""
    dtype = np.dtype(spec.dtype)
    raw = math.prod(spec.shape) * (0 if dtype.kind in "OUST" else dtype.itemsize)
    ratio = {**LEAST_RATIO, **(ratios or {})}.get(spec.name, OTHER_RATIO)
    return int(raw * (ratio if spec.compress else 1.0))


def least_image_ratio(points: int) -> float:
    """The least bytes on disk per raw byte of depth images of ``points`` projected points: about half the
    ratio measured (3.4e-5 per point, at most 0.07)."""
    return min(0.07, 3.4e-5 * points)


def layout_bytes(
    layout: dict[str, tuple[int, list[ArraySpec]]], share: float = 1.0, ratios: dict[str, float] | None = None
) -> int:
    """The least bytes of a store's ``layout`` ({split: (chunks, [ArraySpec])}, as ``StoreWriter.create``
    takes), times ``share`` (the part still to write: :func:`left_to_write`); ``ratios``: least ratios of
    compressed arrays by name, over :data:`LEAST_RATIO`."""
    return int(share * sum(array_bytes(spec, ratios) for _, specs in layout.values() for spec in specs))


def left_to_write(state: StoreState | None) -> float:
    """The share of a store's chunks not written yet: 1 for a new store, 0 for a complete one."""
    if state is None:
        return 1.0
    if state.complete:
        return 0.0
    done, total = state.progress
    return 1.0 - done / total if total else 1.0


def size(n: float) -> str:
    """``"212 MB"``, ``"1.47 GB"``, ``"3.2 TB"`` (decimal units, as ``df -H``)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def mount_point(folder: Path) -> Path:
    """The mount point of the filesystem that holds the existing ``folder``."""
    folder = Path(os.path.realpath(folder))
    while not os.path.ismount(folder) and folder.parent != folder:
        folder = folder.parent
    return folder


def free_bytes(where: Any) -> tuple[int, Path]:
    """(bytes free to this user, mount point) of the filesystem ``where`` is on, or would be on once
    created (its nearest existing folder)."""
    path = Path(where)
    folder = next(p for p in (path, *path.parents) if p.exists())
    return shutil.disk_usage(folder).free, mount_point(folder)


def check_space(
    where: Any, needed: int, what: str, hint: str = STORE_HINT, kept: str = "nothing was written"
) -> None:
    """Raise ResourceError when ``what`` (e.g. "views store x.zarr"), at least ``needed`` bytes to write at
    ``where``, cannot fit in the free space of that filesystem (``kept``: what the message says was kept).
    Nothing is checked for a URL."""
    if needed <= 0 or is_url(where):
        return
    free, mount = free_bytes(where)
    if needed > free:
        raise ResourceError(
            f"{what} cannot fit: at least {size(needed)} to write in {Path(where).parent}, {size(free)} free "
            f"on its filesystem ({mount}); {kept}",
            hint,
        )
