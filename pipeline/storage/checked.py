"""zarr reads that report a damaged store as one DamagedStore error instead of a traceback or zeros.

``open_group(path)`` / ``open_array(store, split, name)`` return zarr's group and arrays wrapped so that
a read (``array[...]``, ``array.get_orthogonal_selection(...)``):

* whose chunk fails zarr's checks (a crc32c mismatch, a truncated shard, undecodable bytes) is
  diagnosed by :func:`pipeline.storage.verify.array_problems` over the rows read, and raised as the
  DamagedStore of the first damaged object it finds (any other error is raised as it was);
* that touched a chunk file a written chunk should have and that is missing (zarr would return fill
  values) raises DamagedStore; one ``stat`` per chunk file read, local stores only;
* of an array of :data:`~pipeline.storage.damage.FINITE` that holds NaN/inf raises DamagedStore.

Everything else (``shape``, ``dtype``, ``attrs``, ``in``) is zarr's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.storage.damage import FINITE, METADATA_ERRORS, check_finite, damaged, expected_chunks

READ_ERRORS = (ValueError, OSError, RuntimeError)  # what zarr raises for damaged bytes (JSON errors included)


def open_group(path: Any, **kwargs: Any) -> CheckedGroup:
    """``zarr.open_group(str(path), mode="r", **kwargs)``, checked; DamagedStore for an unreadable zarr.json."""
    import zarr

    try:
        return CheckedGroup(zarr.open_group(str(path), mode="r", **kwargs), str(path))
    except METADATA_ERRORS as err:  # a cut or overwritten zarr.json
        raise damaged(str(path), f"zarr.json cannot be read ({err})") from None


def open_array(store: Any, split: str, name: str) -> CheckedArray:
    """The array ``<store>/<split>/<name>``, checked (read through its own zarr.json)."""
    import zarr

    try:
        return CheckedArray(zarr.open_array(f"{store}/{split}/{name}", mode="r"), str(store), split, name)
    except METADATA_ERRORS as err:
        raise damaged(str(store), f"zarr.json cannot be read ({err})", split, name) from None


class CheckedGroup:
    """A read-only zarr group whose arrays are :class:`CheckedArray` (``prefix``: the group's own path)."""

    def __init__(self, group: Any, store: str, prefix: str = ""):
        self._group, self._store, self._prefix = group, store, prefix

    def __getattr__(self, name: str) -> Any:
        return getattr(self._group, name)

    def __contains__(self, key: str) -> bool:
        return key in self._group

    def __getitem__(self, key: str) -> Any:
        import zarr

        path = f"{self._prefix}/{key}".strip("/")
        try:
            item = self._group[key]
        except METADATA_ERRORS as err:  # the node's own zarr.json, read when there is no consolidated copy
            split, _, name = path.rpartition("/")
            raise damaged(self._store, f"zarr.json cannot be read ({err})", split or None, name) from None
        if isinstance(item, zarr.Group):
            return CheckedGroup(item, self._store, path)
        split, _, name = path.rpartition("/")
        return CheckedArray(item, self._store, split, name)


class CheckedArray:
    """A read-only zarr array of ``<store>/<split>/<name>`` whose reads report damage (module docstring)."""

    def __init__(self, array: Any, store: str, split: str, name: str):
        self._array, self._where = array, (store, split, name)
        self._expected: dict[str, np.ndarray] = {}  # which chunk files must exist, read at the first missing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._array, name)

    def __len__(self) -> int:
        return len(self._array)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self[...]
        return values if dtype is None else values.astype(dtype)

    def __getitem__(self, key: Any) -> Any:
        return read(self._array, *self._where, key, self._expected)

    def get_orthogonal_selection(self, selection: Any) -> Any:
        return read(self._array, *self._where, selection, self._expected, orthogonal=True)


def read(
    array: Any, store: str, split: str, name: str, key: Any, expected: dict, orthogonal: bool = False
) -> Any:
    """``array[key]`` (``array.get_orthogonal_selection(key)`` when ``orthogonal``) of the zarr array
    ``<store>/<split>/<name>``, checked as the module docstring says; ``expected``: a dict the caller
    keeps, where which chunk files must exist is remembered once read."""
    first = key[0] if isinstance(key, tuple) and key else key
    rows = _rows(first, array.shape[0]) if array.ndim else (0, 0)
    try:
        values = array.get_orthogonal_selection(key) if orthogonal else array[key]
    except READ_ERRORS as err:
        from pipeline.storage.verify import array_problems

        problems = array_problems(store, split, name, rows, first_only=True)
        if not problems:
            raise
        what, at, draw = problems[0]
        raise damaged(store, what, split, name, at, draw) from err
    _check_files(array, store, split, name, rows, expected)
    if name in FINITE and _floats(values) and not np.isfinite(values).all():
        objects = np.arange(array.shape[0])[first]  # the rows read, named in the error
        check_finite(store, split, name, objects, values if values.ndim == array.ndim else values[None])
    return values


def _check_files(
    array: Any, store: str, split: str, name: str, rows: tuple[int, int], expected: dict
) -> None:
    """DamagedStore when a chunk file of rows [rows) that a written chunk should have is missing."""
    if "://" in store or rows[1] <= rows[0] or not array.ndim:
        return
    per = (array.shards or array.chunks)[0]
    n_chunks, folder = -(-array.shape[0] // per), Path(store) / split / name
    for j in range(rows[0] // per, -(-rows[1] // per)):
        key = array.metadata.encode_chunk_key((j, *[0] * (array.ndim - 1)))
        if (folder / key).exists():
            continue
        if name not in expected:
            expected[name] = expected_chunks(store, split, n_chunks)
        if expected[name][j]:
            span = (j * per, min(array.shape[0], (j + 1) * per))
            raise damaged(store, f"chunk file {key} of written objects is missing", split, name, span)


def _rows(first: Any, length: int) -> tuple[int, int]:
    """[start, stop) of the rows a selection along the first dimension touches (all for anything else)."""
    if isinstance(first, (int, np.integer)):
        i = int(first) + (length if int(first) < 0 else 0)
        return (i, i + 1)
    if isinstance(first, slice):
        start, stop, step = first.indices(length)
        return (start, stop) if step == 1 and stop > start else (min(start, stop), max(start, stop) + 1)
    if isinstance(first, (list, np.ndarray)) and len(first) and np.asarray(first).dtype.kind in "iu":
        values = np.asarray(first)
        return (int(values.min()), int(values.max()) + 1)
    return (0, length)


def _floats(values: Any) -> bool:
    return isinstance(values, np.ndarray) and values.dtype.kind == "f"
