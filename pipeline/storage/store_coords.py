"""What makes a finished store open by name in xarray: object coordinates and consolidated metadata.

``xarray.open_zarr(store, group="train")`` reads a split as a Dataset: dimensions come from each
array's zarr v3 ``dimension_names``; the 1-D ``id`` and ``label`` arrays on dimension ``object`` become
coordinates because the split group's ``coordinates`` attr names them (the CF convention that xarray
decodes by default); consolidated metadata (all metadata in the root ``zarr.json``) lets xarray open
the store without its "consolidated metadata" warning. Views and features stores have no ids of
their own: theirs are copied from the upstream points store, whose rows they follow one for one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from pipeline.storage.remote import location

COORDS = ("id", "label")  # per-object coordinates, when the points store has them


def add_object_coords(group: Any, split: str) -> None:
    """Give ``group[split]`` the ``id`` / ``label`` arrays (dimension ``object``) and name them in its
    ``coordinates`` attr. Idempotent; a split whose points store is gone keeps row numbers only."""
    sub = group[split]
    if "id" not in sub:
        source = upstream_with_ids(dict(group.attrs).get("upstream_paths", {}), split)
        rows = [a.shape[0] for _, a in sub.arrays() if (a.metadata.dimension_names or ("",))[0] == "object"]
        if source is None or not rows or source[f"{split}/id"].shape[0] != rows[0]:
            return
        for name in (n for n in COORDS if n in source[split]):
            _copy_1d(source[f"{split}/{name}"], sub, name)
    sub.attrs["coordinates"] = " ".join(name for name in COORDS if name in sub)


def _copy_1d(array: Any, sub: Any, name: str) -> None:
    """Copy a small 1-D array into ``sub`` as one chunk (a concurrent finisher may have made it)."""
    from zarr.errors import ContainsArrayError

    from pipeline.storage.shards import checksummed_codecs

    values = array[:]
    try:
        sub.create_array(
            name,
            shape=values.shape,
            chunks=values.shape,
            dtype=array.dtype,
            fill_value=array.fill_value,
            compressors=checksummed_codecs(True),
            dimension_names=("object",),
        )
    except ContainsArrayError:
        pass
    sub[name][:] = values


def upstream_with_ids(upstream_paths: dict[str, str], split: str) -> Any:
    """The nearest upstream store (following ``upstream_paths``) whose ``split`` has an ``id`` array."""
    import zarr

    for path in upstream_paths.values():
        if not (location(path) / "zarr.json").exists():
            continue
        store = zarr.open_group(str(path), mode="r")
        if f"{split}/id" in store:
            return store
        found = upstream_with_ids(dict(store.attrs).get("upstream_paths", {}), split)
        if found is not None:
            return found
    return None


def consolidate(path: Path) -> None:
    """Write the metadata of every group and array into the root ``zarr.json``. A later metadata change
    by a writer (which opens stores with ``use_consolidated=False``) drops it until the next finish."""
    import zarr

    with warnings.catch_warnings():  # zarr-python reads what it warns is not yet in the v3 spec
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(str(path))
