"""The shard files of our per-object arrays, parsed without zarr: their layout, index and inner chunks.

The arrays written by :func:`pipeline.storage.store.per_object` are zarr v3 ``sharding_indexed``: one file
per work chunk, holding one inner chunk per object (or per object and draw) back to back in C order,
then an index of (offset, nbytes) uint64 pairs and its crc32c at the end. Inner codecs: ``bytes``
little-endian, optionally ``zstd``, and (stores written since checksums came) ``crc32c``: 4 bytes after
each inner chunk, the crc32c of the chunk's encoded bytes. :class:`ShardLayout` reads one inner chunk
with ``os.pread`` and checks what the store lets it check (the index always, the chunk's checksum when
the array has one); the training loader (``pipeline.storage.fastread``) and ``i2p verify`` share it.
Anything wrong with the bytes raises :class:`~pipeline.storage.damage.ChunkDamage`; the caller names it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.storage.damage import ChunkDamage

MISSING = 2**64 - 1  # an index entry (offset, nbytes) of a chunk that was never written


def chunk_codecs(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The codec chain each (inner) chunk of an array goes through, from its zarr.json ``meta``."""
    codecs = meta.get("codecs") or []
    if len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed":
        return list(codecs[0]["configuration"]["codecs"])
    return list(codecs)


def checksummed_codecs(compress: bool) -> list[Any]:
    """The bytes-to-bytes codecs of every (inner) chunk of a new array: zstd (zarr's default, level 0)
    when ``compress``, then ``crc32c`` (4 bytes: the crc32c of the encoded chunk), which zarr and
    :class:`ShardLayout` check on every read (docs/pipeline.md, "Checksums")."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return [ZstdCodec(level=0, checksum=False), Crc32cCodec()] if compress else [Crc32cCodec()]


def has_checksums(meta: dict[str, Any]) -> bool:
    """Whether every (inner) chunk of the array carries a checksum: a ``crc32c`` codec, or ``zstd`` with
    ``checksum: true`` (stores written before checksums came have neither)."""
    return any(
        c.get("name") == "crc32c"
        or (c.get("name") == "zstd" and (c.get("configuration") or {}).get("checksum"))
        for c in chunk_codecs(meta)
    )


def _lead(meta: dict[str, Any]) -> int:
    """Leading dimensions of one inner chunk that are 1: 1 (per object) or 2 (per object and draw)."""
    shape, inner = meta["shape"], meta["codecs"][0]["configuration"]["chunk_shape"]
    for lead in (1, 2):
        if inner == [1] * lead + shape[lead:]:
            return lead
    return 0


class ShardLayout:
    """One per-object sharded array on a local disk (folder and zarr.json ``meta``), parsed once."""

    def __init__(self, folder: Path, meta: dict[str, Any]):
        self.folder = Path(folder)
        self.dtype = np.dtype(meta["data_type"]).newbyteorder("<")
        self.lead = _lead(meta)  # 1: one chunk per object; 2: one per (object, draw)
        self.shape = tuple(meta["shape"])
        self.row_shape = self.shape[self.lead :]
        self.draws = meta["shape"][1] if self.lead == 2 else 1
        self.per_shard = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
        self.fill = meta["fill_value"]
        self.separator = meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
        names = [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]]
        self.zstd, self.crc = "zstd" in names, names[-1] == "crc32c"
        self.chunks = self.per_shard * self.draws  # inner chunks per shard
        self.index_bytes = 16 * self.chunks + 4  # (offset, nbytes) per chunk, then crc32c
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize

    @staticmethod
    def supported(meta: dict[str, Any]) -> bool:
        """True for exactly the layout ``per_object`` writes, with or without checksums."""
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
                and names in (["bytes"], ["bytes", "zstd"], ["bytes", "crc32c"], ["bytes", "zstd", "crc32c"])
                and cfg["codecs"][0].get("configuration", {}).get("endian", "little") == "little"
                and [c["name"] for c in cfg["index_codecs"]] == ["bytes", "crc32c"]
                and cfg["index_codecs"][0].get("configuration", {}).get("endian", "little") == "little"
                and cfg.get("index_location", "end") == "end"
                and not meta.get("storage_transformers")
                and np.dtype(meta["data_type"]).kind in "fiub"
            )
        except (KeyError, TypeError, ValueError):
            return False

    @property
    def n_shards(self) -> int:
        return -(-self.shape[0] // self.per_shard)

    def path(self, shard: int) -> Path:
        """The file of shard ``shard`` (objects [shard·per_shard, (shard+1)·per_shard))."""
        lead = len(self.row_shape) + self.lead - 1
        return self.folder / self.separator.join(["c", str(shard), *["0"] * lead])

    def index(self, fd: int, size: int) -> np.ndarray:
        """The shard's index, (chunks, 2) uint64 (offset, nbytes) in C order over (object, draw)."""
        import google_crc32c

        if size < self.index_bytes:
            raise ChunkDamage(f"shard file is {size} bytes, shorter than its {self.index_bytes}-byte index")
        table = os.pread(fd, self.index_bytes, size - self.index_bytes)
        if google_crc32c.value(table[:-4]) != int.from_bytes(table[-4:], "little"):
            raise ChunkDamage("shard index checksum mismatch (a truncated or overwritten shard file)")
        return np.frombuffer(table, "<u8", 2 * self.chunks).reshape(-1, 2)

    def entry(self, fd: int, size: int, k: int) -> tuple[int, int]:
        """(offset, nbytes) of inner chunk ``k`` alone: one 16-byte read after the index's checksum."""
        offset, nbytes = (int(v) for v in self.index(fd, size)[k])
        return offset, nbytes

    def bounds(self, size: int, offset: int, nbytes: int) -> None:
        """ChunkDamage unless a written chunk's bytes [offset, offset + nbytes) lie before the index of a
        shard file of ``size`` bytes (an index entry of a chunk never written is (MISSING, MISSING))."""
        if (offset, nbytes) != (MISSING, MISSING) and offset + nbytes > size - self.index_bytes:
            raise ChunkDamage(f"chunk bytes [{offset}, {offset + nbytes}) lie past the end of the data")

    def read(self, fd: int, size: int, offset: int, nbytes: int, out: np.ndarray) -> np.ndarray:
        """Decode the inner chunk at (offset, nbytes) into ``out`` (C-contiguous, ``row_shape``), after
        checking that it lies before the index and (when the array has them) its checksum."""
        import google_crc32c

        if offset == MISSING and nbytes == MISSING:
            out.fill(self.fill)
            return out
        self.bounds(size, offset, nbytes)
        tail = 4 if self.crc else 0
        if self.zstd:
            from numcodecs import Zstd

            data = np.frombuffer(os.pread(fd, nbytes, offset), np.uint8)
            if len(data) != nbytes or (tail and google_crc32c.value(data[:-4]) != _crc(data[-4:])):
                raise ChunkDamage("inner chunk checksum mismatch (its bytes changed after they were written)")
            try:
                Zstd().decode(data[: nbytes - tail], out=out)
            except (RuntimeError, ValueError) as err:  # a store without checksums: only zstd notices
                raise ChunkDamage(f"inner chunk cannot be decompressed ({err})") from None
            return out
        flat, crc = out.reshape(-1).view(np.uint8), bytearray(tail)
        if nbytes != self.row_bytes + tail:
            raise ChunkDamage(f"inner chunk is {nbytes} bytes, {self.row_bytes + tail} were written")
        if os.preadv(fd, [flat, crc] if tail else [flat], offset) != nbytes:
            raise ChunkDamage("inner chunk is cut short")
        if tail and google_crc32c.value(flat) != int.from_bytes(crc, "little"):
            raise ChunkDamage("inner chunk checksum mismatch (its bytes changed after they were written)")
        return out


def _crc(last4: np.ndarray) -> int:
    return int.from_bytes(last4.tobytes(), "little")
