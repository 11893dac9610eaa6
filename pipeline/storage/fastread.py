"""Fast reads of one object from our sharded zarr v3 arrays, for the training loader's hot path.

zarr-python's array API costs ≈ 1–2 ms per call here (a round trip through its event-loop thread
and the indexing set-up), which bounds a per-object loader at ≈ 120 objects/s. The arrays the
loader reads are written by :func:`pipeline.storage.store.per_object`: shards of ``chunk`` objects holding
one-object inner chunks, or one (object, draw) chunk each for the features of augmented views (zarr
v3 "sharding_indexed": inner chunks back to back in C order, then an index of
(offset, nbytes) uint64 pairs and its crc32c at the end of the shard file; inner codecs ``bytes``
little-endian and optionally ``zstd``). For that one layout on a local disk, :class:`ArrayReader`
reads the object's 16-byte index entry and its bytes with ``os.pread`` straight into a numpy array
(decompressing with numcodecs' zstd, zarr's own dependency): ≈ 0.1–0.3 ms per object.

Any other array or location (another codec, a URL) is read through zarr-python, so the reader is
never wrong, only slower. tensorstore was tried first (≈ 0.3 ms per read) but aborts a forked
DataLoader worker once its parent has used it; this reader has no threads and no state across fork.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

MISSING = 2**64 - 1  # an index entry (offset, nbytes) of a chunk that was never written


class _Sharded:
    """One per-object sharded array on a local disk: its metadata, parsed once."""

    def __init__(self, folder: Path, meta: dict[str, Any]):
        self.folder = folder
        self.dtype = np.dtype(meta["data_type"]).newbyteorder("<")
        self.lead = _lead(meta)  # 1: one chunk per object; 2: one per (object, draw)
        self.shape = tuple(meta["shape"])
        self.row_shape = self.shape[self.lead :]
        self.draws = meta["shape"][1] if self.lead == 2 else 1
        self.per_shard = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
        self.fill = meta["fill_value"]
        self.separator = meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
        inner = meta["codecs"][0]["configuration"]["codecs"]
        self.zstd = len(inner) == 2
        self.index_bytes = 16 * self.per_shard * self.draws + 4  # (offset, nbytes) per chunk, then crc32c

    @staticmethod
    def supported(meta: dict[str, Any]) -> bool:
        """True for exactly the layout ``per_object`` writes (anything else goes through zarr)."""
        try:
            (codec,) = meta["codecs"]
            cfg = codec["configuration"]
            shape, shard = meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
            names = [c["name"] for c in cfg["codecs"]]
            return (
                codec["name"] == "sharding_indexed"
                and meta["chunk_key_encoding"]["name"] == "default"
                and _lead(meta) in (1, 2)
                and shard[1:] == shape[1:]
                and names in (["bytes"], ["bytes", "zstd"])
                and cfg["codecs"][0].get("configuration", {}).get("endian", "little") == "little"
                and [c["name"] for c in cfg["index_codecs"]] == ["bytes", "crc32c"]
                and cfg["index_codecs"][0].get("configuration", {}).get("endian", "little") == "little"
                and cfg.get("index_location", "end") == "end"
                and not meta.get("storage_transformers")
                and np.dtype(meta["data_type"]).kind in "fiub"
            )
        except (KeyError, TypeError, ValueError):
            return False

    def get(self, index: int, out: np.ndarray | None = None, draw: int = 0) -> np.ndarray:
        """Object ``index`` (its ``draw`` for per-draw arrays) as a writable array of shape
        ``row_shape`` (into ``out`` when given: a C-contiguous array of that shape and dtype, e.g. a
        row of a batch buffer)."""
        import google_crc32c
        from numcodecs import Zstd

        shard, local = divmod(index, self.per_shard)
        k = local * self.draws + draw  # the shard's chunks are in C order over (object, draw)
        out = np.empty(self.row_shape, self.dtype) if out is None else out
        key = self.separator.join(["c", str(shard), *["0"] * (len(self.row_shape) + self.lead - 1)])
        try:
            fd = os.open(self.folder / key, os.O_RDONLY)
        except FileNotFoundError:
            out.fill(self.fill)
            return out
        try:
            table = os.pread(fd, self.index_bytes, os.fstat(fd).st_size - self.index_bytes)
            if google_crc32c.value(table[:-4]) != int.from_bytes(table[-4:], "little"):
                raise OSError(f"shard index checksum mismatch in {self.folder / key}")
            offset, nbytes = (int(v) for v in np.frombuffer(table, "<u8", 2, 16 * k))
            if offset == MISSING and nbytes == MISSING:
                out.fill(self.fill)
            elif self.zstd:
                Zstd().decode(os.pread(fd, nbytes, offset), out=out)
            elif nbytes != out.nbytes or os.preadv(fd, [out.reshape(-1).view(np.uint8)], offset) != nbytes:
                raise OSError(f"short chunk {k} in {self.folder / key}")
        finally:
            os.close(fd)
        return out


def _lead(meta: dict[str, Any]) -> int:
    """Leading dimensions of one inner chunk that are 1: 1 (per object) or 2 (per object and draw)."""
    shape, inner = meta["shape"], meta["codecs"][0]["configuration"]["chunk_shape"]
    for lead in (1, 2):
        if inner == [1] * lead + shape[lead:]:
            return lead
    return 0


class ArrayReader:
    """Reads ``<store>/<split>/<name>`` arrays one object (leading index) at a time.

    ``get(name, index)`` → the object's row, a writable numpy array (shape = array shape[1:], the
    stored dtype); ``get(name, index, draw=k)`` → draw k of it (shape[2:]) for arrays whose second
    dimension is ``draw``. ``whole(name)`` → the whole array (small ones, e.g. ``proj`` (S, V, 5)).
    Errors: ``OSError`` for a corrupt shard; zarr's errors for a missing array.
    """

    def __init__(self, store: str | Path, split: str):
        self.store, self.split = str(store), split
        self._arrays: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # spawned workers parse the metadata again
        return {**self.__dict__, "_arrays": {}}

    def _array(self, name: str) -> Any:
        if name not in self._arrays:
            folder = Path(self.store) / self.split / name
            meta_file = folder / "zarr.json"
            meta = (
                json.loads(meta_file.read_text()) if "://" not in self.store and meta_file.is_file() else {}
            )
            if _Sharded.supported(meta):
                self._arrays[name] = _Sharded(folder, meta)
            else:
                import zarr

                self._arrays[name] = zarr.open_array(f"{self.store}/{self.split}/{name}", mode="r")
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
            return row if out is None or row is out else _into(out, row)
        return _into(out, np.asarray(array[int(index)] if draw is None else array[int(index), int(draw)]))

    def row(self, name: str, per_draw: bool = False) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) of one object's row of array ``name`` (``per_draw``: of one draw of it)."""
        array = self._array(name)
        return tuple(array.shape[2 if per_draw else 1 :]), np.dtype(array.dtype)

    def whole(self, name: str) -> np.ndarray:
        import zarr

        return zarr.open_array(f"{self.store}/{self.split}/{name}", mode="r")[...]


def _into(out: np.ndarray | None, row: np.ndarray) -> np.ndarray:
    if out is None:
        return row
    out[...] = row
    return out
