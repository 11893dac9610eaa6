"""Data sources of ``i2p prepare``: find what lies under a root, then read one object at a time.

``scan(params, data_root)`` detects the layout (or takes ``params.layout``) and returns a
:class:`~pipeline.sources.base.Catalog`; ``load_points(item, params)`` reads one item in a worker and
returns ``(P, 3) float32`` or raises :class:`~pipeline.core.errors.BadInput`. Layouts per source:

===============  ==================================================================================
synthetic        procedural meshes generated under ``<data_root>/sources`` (synthetic.py)
shapenet         ``shapenet55_npy`` (Point-BERT release) or ``shapenetcore_v2`` meshes (shapenet.py)
modelnet40       ``modelnet40_ply_hdf5_2048``, ``modelnet40_normal_resampled``, ``modelnet40_off``
scanobjectnn     ``scanobjectnn_h5``: main_split / main_split_nobg, variant from ``params.variant``
folder           ``folder``: ``<root>/<class>/*.{obj,ply,off,stl,glb,npy,txt,xyz,pts,csv}`` (folder.py)
shapenetpart     ``shapenetpart_normal``: part-labelled points, train = train + val lists (shapenetpart.py)
synthetic-parts  ``synthetic-parts``: part-labelled objects generated in the ShapeNetPart layout under
                 ``<data_root>/sources``, read by the shapenetpart reader (synthetic_parts.py)
===============  ==================================================================================

Part-labelled sources give items of kind ``partseg`` and a catalog with ``parts``; the prepare stage reads
them with :func:`pipeline.sources.part_files.read_part_item` (points, part ids and a row count per object).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np

from pipeline.core.errors import BadInput, ConfigError, LayoutError
from pipeline.core.names import as_name
from pipeline.core.params import PrepareParams
from pipeline.sources import (
    folder,
    links,
    meshes,
    modelnet40,
    scanobjectnn,
    shapenet,
    shapenetpart,
    synthetic,
    synthetic_parts,
)
from pipeline.sources.base import Catalog, Item

__all__ = ["scan", "load_points", "default_dataset_name", "readable_name", "resolve_layout", "LAYOUTS"]

LAYOUTS: dict[str, dict[str, str]] = {  # source → layout name → the paths it expects
    "synthetic": {"synthetic": "generated under <data_root>/sources/synthetic[-v<k>]-<seed>-<per_class>"},
    "shapenet": shapenet.LAYOUTS,
    "modelnet40": modelnet40.LAYOUTS,
    "scanobjectnn": scanobjectnn.LAYOUTS,
    "folder": {"folder": folder.PATTERN},
    "shapenetpart": shapenetpart.LAYOUTS,
    "synthetic-parts": {
        "synthetic-parts": "generated under <data_root>/sources/synthetic-parts-<seed>-<per_class>"
    },
}
GENERATED = ("synthetic", "synthetic-parts")  # sources without a root: generated under the data root
DATASET_NAMES = {  # layout → default dataset name (the store is points/<name>-<fp8>.zarr)
    "synthetic": "synthetic",
    "shapenet55_npy": "shapenet",
    "shapenetcore_v2": "shapenet",
    "modelnet40_ply_hdf5_2048": "modelnet40",
    "modelnet40_normal_resampled": "modelnet40-resampled",
    "modelnet40_off": "modelnet40-off",
    "shapenetpart_normal": "shapenetpart",
    "synthetic-parts": "synthetic-parts",
}


def _detect(source: str, root: Path, params: PrepareParams) -> list[str]:
    if source == "shapenet":
        return shapenet.detect(root)
    if source == "modelnet40":
        return modelnet40.detect(root)
    if source == "scanobjectnn":
        return scanobjectnn.detect(root, params.variant)
    if source == "shapenetpart":
        return shapenetpart.detect(root)
    return ["folder"] if folder.looks_like_folder(root) else []


def resolve_layout(params: PrepareParams) -> tuple[str, Path | None]:
    """(layout, root) for params: the requested layout, or the one layout detected under the root."""
    known = LAYOUTS[params.source]
    if params.layout != "auto" and params.layout not in known:
        raise ConfigError(
            f"unknown layout {params.layout!r} for source {params.source}",
            f"valid layouts: auto, {', '.join(known)}",
        )
    if params.source in GENERATED:
        return params.source, None
    if params.root is None:
        raise LayoutError(f"source {params.source} needs a dataset root", "pass --root PATH")
    root = Path(params.root).expanduser().resolve()
    if not root.is_dir():
        raise LayoutError(f"dataset root {root} does not exist or is not a directory", "check --root")
    if params.layout != "auto":
        return params.layout, root
    found = _detect(params.source, root, params)
    if not found:
        looked = "; ".join(f"{name}: {pattern}" for name, pattern in known.items())
        if params.source == "scanobjectnn":
            looked = scanobjectnn.expected_files(root, params.variant)
        raise LayoutError(f"no {params.source} layout found under {root}; looked for {looked}")
    if len(found) > 1:
        raise LayoutError(
            f"several {params.source} layouts found under {root}: {', '.join(found)}",
            f"choose one with --set prepare.layout={found[0]}",
        )
    return found[0], root


def scan(params: PrepareParams, data_root: Path) -> Catalog:
    """Find every object of ``params.source``: classes, per split the items, and how points are handled.
    Files that lie outside the root behind symlinks are left out and listed, unless ``params.follow_links``
    (:mod:`pipeline.sources.links`)."""
    layout, root = resolve_layout(params)
    if params.source == "synthetic":
        return synthetic.scan(params, Path(data_root), generator=params.synthetic_version)
    if params.source == "synthetic-parts":
        return synthetic_parts.scan(params, Path(data_root))
    assert root is not None
    return links.keep_inside(_scan_root(params, root, layout), root, params.follow_links)


def _scan_root(params: PrepareParams, root: Path, layout: str) -> Catalog:
    if params.source == "shapenet":
        return shapenet.scan(params, root, layout)
    if params.source == "modelnet40":
        return modelnet40.scan(params, root, layout)
    if params.source == "scanobjectnn":
        return scanobjectnn.scan(params, root, layout)
    if params.source == "shapenetpart":
        return shapenetpart.scan(params, root, layout=layout)
    return folder.scan(params, root)


def load_points(item: Item, params: PrepareParams, notes: list[str] | None = None) -> np.ndarray:
    """Read one item → (P, 3) float32; BadInput(reason) when the object cannot be used.

    Meshes and point files are sampled (seed from (params.seed, item.id)), FPS'd and normalised; h5
    rows are returned as stored; ``("stored", n)`` point files keep their order and are normalised.
    ``notes`` (when given) receives warnings about the input, e.g. coarse single-precision coordinates.
    """
    path = Path(item.path)
    if item.kind == "mesh":
        return meshes.sample_mesh_file(
            path, params.points, params.oversample, params.fps, params.seed, item.id, notes
        )
    if item.kind == "h5":
        row = modelnet40.read_h5_row(item)
        meshes.note_precision(row, notes)
        return row
    if item.kind == "pickle":
        return modelnet40.read_cache_row(item)
    if item.kind in ("npy", "txt"):
        cloud = meshes.read_point_file(path)
        meshes.note_precision(cloud, notes)
        if isinstance(item.data, tuple) and item.data[0] == "stored":
            n = item.data[1]
            if cloud.shape[0] != n:
                raise BadInput(f"point file holds {cloud.shape[0]} points, the release stores {n}")
            return meshes.unit_sphere(cloud[:, :3])
        return meshes.cloud_to_points(cloud, params.points, params.fps)
    raise ValueError(f"unknown item kind {item.kind!r} for {item.id}")


def default_dataset_name(params: PrepareParams, catalog: Catalog | None = None) -> str:
    """The store name for params: "synthetic", "shapenet", "modelnet40" (h5), "modelnet40-resampled",
    "modelnet40-off", "scanobjectnn-<variant>", "shapenetpart", "synthetic-parts", or the root folder's
    name for ``folder`` (:func:`readable_name`: letters of any script are kept)."""
    if params.source == "scanobjectnn":
        return f"scanobjectnn-{params.variant}"
    if params.source == "folder":
        return readable_name(Path(params.root or "folder").expanduser().resolve().name)
    layout = catalog.layout if catalog is not None else resolve_layout(params)[0]
    return DATASET_NAMES[layout]


def readable_name(folder: str) -> str:
    """A dataset name from a folder name: NFC-normalised letters and digits of any script, '.', '_'
    and '-' kept, every other run of characters one '-'; "folder" if nothing is left.

    "数据集" stays "数据集", "Café (v2)" becomes "Café-v2": non-Latin roots keep distinct, readable names.
    """
    name = unicodedata.normalize("NFC", folder)
    return as_name(re.sub(r"[^\w.-]+", "-", name).strip("-."), "folder")  # one path component (core.names)
