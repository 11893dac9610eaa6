"""Fast reads of one object from our sharded zarr v3 arrays, for the training loader's hot path.

zarr-python's array API costs ≈ 1–2 ms per call here (a round trip through its event-loop thread
and the indexing set-up), which bounds a per-object loader at ≈ 120 objects/s. The arrays the
loader reads are written by :func:`pipeline.storage.store.per_object`: shards of ``chunk`` objects holding
one-object inner chunks, or one (object, draw) chunk each for the features of augmented views (the
layout: :mod:`pipeline.storage.shards`). For that one layout on a local disk, :class:`ArrayReader`
reads the object's index entry and its bytes with ``os.pread`` straight into a numpy array
(decompressing with numcodecs' zstd, zarr's own dependency), checking the chunk's crc32c when the
store has them: ≈ 0.1–0.3 ms per object.

Any other array or location (another codec, a URL) is read through zarr-python
(:mod:`pipeline.storage.checked`), so the reader is never wrong, only slower. Either way a damaged
store is one DamagedStore error naming the store, split, array and object
(:mod:`pipeline.storage.damage`). tensorstore was tried first (≈ 0.3 ms per read) but aborts a forked
DataLoader worker once its parent has used it; this reader has no threads and no state across fork.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.storage.damage import (
    METADATA_ERRORS,
    ChunkDamage,
    check_finite,
    damaged,
    expected_chunks,
    read_json,
)
from pipeline.storage.shards import ShardLayout


class _Sharded(ShardLayout):
    """One array of the shard layout (:mod:`pipeline.storage.shards`) as the reader reads it, with its
    store, split and name for the errors and which shard files must exist (read at the first missing)."""

    def __init__(self, folder: Path, meta: dict[str, Any], store: str, split: str, name: str):
        super().__init__(folder, meta)
        self.store, self.split, self.name = store, split, name
        self.expected: np.ndarray | None = None

    def get(self, index: int, out: np.ndarray | None = None, draw: int = 0) -> np.ndarray:
        """Object ``index`` (its ``draw`` for per-draw arrays) as a writable array of shape
        ``row_shape`` (into ``out`` when given: a C-contiguous array of that shape and dtype, e.g. a
        row of a batch buffer). DamagedStore for a damaged chunk or a missing file of a written one."""
        shard, local = divmod(index, self.per_shard)
        out = np.empty(self.row_shape, self.dtype) if out is None else out
        path = self.path(shard)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            if self.expected is None:
                self.expected = expected_chunks(self.store, self.split, self.n_shards)
            if self.expected[shard]:
                rows = (shard * self.per_shard, min(self.shape[0], (shard + 1) * self.per_shard))
                what = f"shard file {path.relative_to(self.folder)} of written objects is missing"
                raise damaged(self.store, what, self.split, self.name, rows) from None
            out.fill(self.fill)  # a chunk not written yet
            return out
        try:
            size = os.fstat(fd).st_size
            offset, nbytes = self.entry(fd, size, local * self.draws + draw)
            return self.read(fd, size, offset, nbytes, out)
        except ChunkDamage as err:
            what, shown = (
                f"shard file {path.relative_to(self.folder)}: {err}",
                draw if self.lead == 2 else None,
            )
            raise damaged(self.store, what, self.split, self.name, (index, index + 1), shown) from None
        finally:
            os.close(fd)


class ArrayReader:
    """Reads ``<store>/<split>/<name>`` arrays one object (leading index) at a time.

    ``get(name, index)`` → the object's row, a writable numpy array (shape = array shape[1:], the
    stored dtype); ``get(name, index, draw=k)`` → draw k of it (shape[2:]) for arrays whose second
    dimension is ``draw``. ``whole(name)`` → the whole array (small ones, e.g. ``proj`` (S, V, 5)).
    Errors: DamagedStore for damage found (a checksum mismatch, a missing or truncated file of a
    written chunk, unreadable metadata, NaN points); zarr's errors for a missing array.
    """

    def __init__(self, store: str | Path, split: str):
        self.store, self.split = str(store), split
        self._arrays: dict[str, Any] = {}
        self._expected: dict[str, np.ndarray] = {}  # zarr-read arrays: which chunk files must exist

    def __getstate__(self) -> dict[str, Any]:  # spawned workers parse the metadata again
        return {**self.__dict__, "_arrays": {}, "_expected": {}}

    def _array(self, name: str) -> Any:
        if name not in self._arrays:
            folder = Path(self.store) / self.split / name
            meta_file, local = folder / "zarr.json", "://" not in self.store
            if local and not meta_file.is_file() and (folder / "c").is_dir():  # chunks without metadata
                raise damaged(self.store, "zarr.json is missing", self.split, name)
            meta = read_json(meta_file, self.store, self.split, name) if local and meta_file.is_file() else {}
            if ShardLayout.supported(meta):
                self._arrays[name] = _Sharded(folder, meta, self.store, self.split, name)
            else:
                import zarr

                try:
                    self._arrays[name] = zarr.open_array(f"{self.store}/{self.split}/{name}", mode="r")
                except METADATA_ERRORS as err:  # a cut zarr.json of a remote store
                    raise damaged(self.store, f"zarr.json cannot be read ({err})", self.split, name) from None
        return self._arrays[name]

    def get(
        self, name: str, index: int, out: np.ndarray | None = None, draw: int | None = None
    ) -> np.ndarray:
        """Object ``index`` of array ``name`` (only its ``draw`` when given: arrays with a draw
        dimension second); written into ``out`` (and returned) when given."""
        array = self._array(name)
        if isinstance(array, _Sharded):
            target = out if out is not None and out.flags.c_contiguous else None
            if array.lead == 1:  # one chunk holds the whole object
                row = array.get(int(index), target if draw is None else None)
                row = row if draw is None else row[draw]
            elif draw is not None:  # one chunk per (object, draw)
                row = array.get(int(index), target, draw)
            else:  # every draw of the object, chunk by chunk
                row = np.stack([array.get(int(index), None, k) for k in range(array.draws)])
            check_finite(self.store, self.split, name, int(index), row[None])
            return row if out is None or row is out else _into(out, row)
        from pipeline.storage.checked import read

        key = int(index) if draw is None else (int(index), int(draw))
        return _into(out, np.asarray(read(array, self.store, self.split, name, key, self._expected)))

    def row(self, name: str, per_draw: bool = False) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) of one object's row of array ``name`` (``per_draw``: of one draw of it)."""
        array = self._array(name)
        return tuple(array.shape[2 if per_draw else 1 :]), np.dtype(array.dtype)

    def whole(self, name: str) -> np.ndarray:
        from pipeline.storage.checked import open_array

        return open_array(self.store, self.split, name)[...]


def _into(out: np.ndarray | None, row: np.ndarray) -> np.ndarray:
    if out is None:
        return row
    out[...] = row
    return out
