"""ModelNet40 in its three common layouts, and the h5 reading shared with ScanObjectNN.

``modelnet40_ply_hdf5_2048`` (method §1.3): ``ply_data_{train,test}*.h5`` with ``data (n, 2048, 3)`` and
``label (n, 1)``; points used as stored (already normalised), in stored order, files in natural order.
``modelnet40_normal_resampled`` (method §1.2): ``<class>/<id>.txt`` (10000 lines x,y,z,nx,ny,nz) listed
by ``modelnet40_{train,test}.txt``; the Point-BERT caches ``modelnet40_{split}_8192pts_fps.dat`` are
used when both exist (8192 points, stored order), else each txt is reduced to P by FPS; xyz only,
normalised either way. ``modelnet40_off``: Princeton OFF meshes ``<class>/{train,test}/*.off``.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
from pathlib import Path

import h5py
import numpy as np

from pipeline.core.errors import BadInput, LayoutError
from pipeline.core.params import PrepareParams
from pipeline.sources import folder
from pipeline.sources.base import Catalog, Item, scan_failure
from pipeline.sources.meshes import unit_sphere
from pipeline.storage.safe_load import load_pickle

LAYOUTS = {
    "modelnet40_ply_hdf5_2048": "<root>[/modelnet40_ply_hdf5_2048]/ply_data_{train,test}*.h5",
    "modelnet40_normal_resampled": "<root>[/modelnet40_normal_resampled]/modelnet40_{shape_names,train,test}.txt",
    "modelnet40_off": "<root>[/ModelNet40]/<class>/{train,test}/*.off",
}
H5_KEYS = ("data", "label")
SPLITS = ("train", "test")


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _file_key(path: str) -> tuple[str, int, int, int]:
    """(path, mtime, size, pid): notices a file replaced in place; a forked worker opens its own handle."""
    st = os.stat(path)
    return path, st.st_mtime_ns, st.st_size, os.getpid()


# ---- h5 (also used by scanobjectnn) ---------------------------------------------------------------


def scan_h5(path: Path, keys: tuple[str, str] = H5_KEYS) -> tuple[np.ndarray, tuple[int, ...]]:
    """Check an h5 file's keys and shapes; returns its labels (n,) and the shape of one row."""
    try:
        with h5py.File(path, "r") as f:
            found = sorted(f.keys())
            if not all(k in f for k in keys):
                raise LayoutError(
                    f"{path}: h5 keys found {found}, expected {list(keys)}",
                    "is this the right file? the release stores points under 'data' and classes under 'label'",
                )
            data, labels = f[keys[0]], np.asarray(f[keys[1]][()]).reshape(-1)
            if data.ndim != 3 or data.shape[2] < 3 or data.shape[0] != len(labels):
                raise LayoutError(
                    f"{path}: '{keys[0]}' has shape {data.shape} and '{keys[1]}' {len(labels)} entries; "
                    "expected data (n, points, 3) with one label per row"
                )
            return labels.astype(np.int64), tuple(data.shape[1:])
    except OSError as err:
        raise LayoutError(f"{path}: cannot open as HDF5 ({err})") from None


@functools.lru_cache(maxsize=16)
def _h5_handle(key: tuple[str, int, int, int]) -> h5py.File:
    return h5py.File(key[0], "r")


def read_h5_row(item: Item) -> np.ndarray:
    """Row ``item.index`` of dataset ``item.data`` in ``item.path`` → (n, 3) float32 as stored."""
    try:
        row = np.asarray(_h5_handle(_file_key(item.path))[item.data][item.index], dtype=np.float32)[:, :3]
    except (OSError, KeyError, IndexError) as err:
        raise BadInput(f"cannot read row {item.index} of {item.path}: {err}") from None
    if not np.isfinite(row).all():
        raise BadInput(
            f"non-finite (NaN/inf) coordinates in {int((~np.isfinite(row)).any(axis=1).sum())} stored points"
        )
    return np.ascontiguousarray(row)


def h5_items(path: Path, labels: np.ndarray) -> list[Item]:
    """One Item per row: id ``<file stem>/<row>``."""
    return [
        Item(f"{path.stem}/{i}", str(path), int(lab), "h5", index=i, data=H5_KEYS[0])
        for i, lab in enumerate(labels)
    ]


# ---- the three layouts -----------------------------------------------------------------------------


def _base(root: Path, name: str, marker: str) -> Path | None:
    for base in (root / name, root):
        if base.is_dir() and next(base.glob(marker), None) is not None:
            return base
    return None


def detect(root: Path) -> list[str]:
    found = []
    if _base(root, "modelnet40_ply_hdf5_2048", "ply_data_train*.h5"):
        found.append("modelnet40_ply_hdf5_2048")
    if _base(root, "modelnet40_normal_resampled", "modelnet40_shape_names.txt") or _base(
        root, "modelnet40_normal_resampled", "modelnet40_*_8192pts_fps.dat"
    ):
        found.append("modelnet40_normal_resampled")
    if _base(root, "ModelNet40", "*/train/*.off") or _base(root, "ModelNet40", "*/test/*.off"):
        found.append("modelnet40_off")
    return found


def scan_h5_release(root: Path) -> Catalog:
    """``ply_data_{train,test}*.h5`` → items per row, used as stored."""
    base = _base(root, "modelnet40_ply_hdf5_2048", "ply_data_train*.h5")
    assert base is not None
    splits, shapes = {}, set()
    for split in SPLITS:
        files = sorted(base.glob(f"ply_data_{split}*.h5"), key=_natural)
        if not files:
            raise LayoutError(f"no {split} files: expected {base}/ply_data_{split}*.h5")
        splits[split] = []
        for path in files:
            labels, shape = scan_h5(path)
            shapes.add(shape)
            splits[split] += h5_items(path, labels)
    if len(shapes) != 1:
        raise LayoutError(f"{base}: the h5 files hold rows of different shapes {sorted(shapes)}")
    top = max(it.label for items in splits.values() for it in items)
    names_file = base / "shape_names.txt"
    classes = (
        names_file.read_text().split() if names_file.is_file() else [str(i) for i in range(max(40, top + 1))]
    )
    if top >= len(classes):
        raise LayoutError(f"label {top} found but {names_file} lists {len(classes)} classes")
    n_points = shapes.pop()[0]
    handling = {
        "layout": "modelnet40_ply_hdf5_2048",
        "points": "as stored",
        "point_order": "stored",
        "n_points": n_points,
    }
    return Catalog("modelnet40", "modelnet40_ply_hdf5_2048", str(root), classes, splits, handling)


def scan_resampled(root: Path, n_points: int) -> Catalog:
    """``modelnet40_normal_resampled``: lists + txt files, or the 8192-point FPS caches when present."""
    base = _base(root, "modelnet40_normal_resampled", "modelnet40_shape_names.txt") or _base(
        root, "modelnet40_normal_resampled", "modelnet40_*_8192pts_fps.dat"
    )
    assert base is not None
    _check_resampled_lists(base)
    classes = (base / "modelnet40_shape_names.txt").read_text().split()
    label = {c: k for k, c in enumerate(classes)}
    caches = {s: base / f"modelnet40_{s}_8192pts_fps.dat" for s in SPLITS}
    use_cache = all(p.is_file() for p in caches.values())
    splits = {}
    for split in SPLITS:
        list_file = base / f"modelnet40_{split}.txt"
        if not list_file.is_file():
            raise LayoutError(
                f"ModelNet40 split list missing: expected {list_file} (one '<class>_<nnnn>' per line)"
            )
        ids = [ln.strip() for ln in list_file.read_text().splitlines() if ln.strip()]
        unknown = [i for i in ids if i.rsplit("_", 1)[0] not in label]
        if unknown:
            raise LayoutError(
                f"{list_file}: id {unknown[0]!r} names a class not in modelnet40_shape_names.txt"
            )
        cls = [i.rsplit("_", 1)[0] for i in ids]
        if use_cache:
            splits[split] = [
                Item(i, str(caches[split]), label[c], "pickle", index=k)
                for k, (i, c) in enumerate(zip(ids, cls, strict=True))
            ]
        else:
            splits[split] = [
                Item(i, str(base / c / f"{i}.txt"), label[c], "txt") for i, c in zip(ids, cls, strict=True)
            ]
    handling = {
        "layout": "modelnet40_normal_resampled",
        "points": "normalised",
        "point_order": "stored",
        "n_points": 8192,
    }
    if not use_cache:
        handling.update(points="sampled", point_order="fps", n_points=n_points)
    handling["fps_cache"] = use_cache
    listed = {it.id for items in splits.values() for it in items}
    failures = [  # every object file of the release is a candidate: one left out of both lists is named
        scan_failure(p.stem, p, "not read: listed in neither modelnet40_train.txt nor modelnet40_test.txt")
        for c in classes
        for p in sorted((base / c).glob(f"{c}_*.txt"))
        if p.stem not in listed
    ]
    return Catalog(
        "modelnet40", "modelnet40_normal_resampled", str(root), classes, splits, handling, failures
    )


def _check_resampled_lists(base: Path) -> None:
    """LayoutError saying what was found and what is missing when the release's lists are absent."""
    lists = ("modelnet40_shape_names.txt", "modelnet40_train.txt", "modelnet40_test.txt")
    missing = [name for name in lists if not (base / name).is_file()]
    if not missing:
        return
    found = (
        sorted(p.name for p in base.glob("modelnet40_*"))
        + sorted(p.name + "/" for p in base.iterdir() if p.is_dir())[:3]
    )
    raise LayoutError(
        f"modelnet40_normal_resampled at {base}: found {', '.join(found) or 'nothing'}; missing "
        f"{', '.join(missing)} (the class names and split lists say which object and class each row is; "
        "the .dat caches alone do not)",
        "copy the missing .txt lists from the modelnet40_normal_resampled archive into "
        f"{base}/ (beside the .dat caches)",
    )


@functools.lru_cache(maxsize=2)
def _cache(key: tuple[str, int, int, int]) -> tuple[list, list]:
    points, labels = load_pickle(Path(key[0]), "ModelNet40 FPS cache")  # arrays only: nothing runs
    return points, labels


def read_cache_row(item: Item, n_points: int = 8192) -> np.ndarray:
    """Row ``item.index`` of a ``*_8192pts_fps.dat`` cache → (8192, 3) float32, stored order, normalised."""
    try:
        points, labels = _cache(_file_key(item.path))
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise LayoutError(  # the whole split's file: every row of it would fail
            f"unreadable FPS cache {item.path}: {type(err).__name__}: {err}",
            "download the modelnet40_normal_resampled cache again, or remove the .dat files to read the .txt clouds",
        ) from None
    if item.index >= len(points):
        raise BadInput(f"{item.path} holds {len(points)} rows; the split list has more (row {item.index})")
    row, stored_label = np.asarray(points[item.index]), int(np.asarray(labels[item.index]).reshape(-1)[0])
    if stored_label != item.label:
        raise BadInput(f"cache row {item.index} has label {stored_label}, the split list says {item.label}")
    if row.ndim != 2 or row.shape[0] != n_points or row.shape[1] < 3:
        raise BadInput(f"cache row {item.index} has shape {row.shape}, expected ({n_points}, 6)")
    return unit_sphere(row[:, :3].astype(np.float64))


def scan(params: PrepareParams, root: Path, layout: str) -> Catalog:
    """Dispatch on the detected (or requested) layout."""
    if layout == "modelnet40_ply_hdf5_2048":
        return scan_h5_release(root)
    if layout == "modelnet40_normal_resampled":
        return scan_resampled(root, params.points)
    base = root / "ModelNet40" if (root / "ModelNet40").is_dir() else root
    return folder.scan(params, base, source="modelnet40", layout="modelnet40_off")
