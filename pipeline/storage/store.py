"""Zarr stores: fingerprints, paths, locks, and a writer that fills a store chunk by chunk.

The contract (docs/pipeline.md, "Stores" and "The stage contract"):

* a derived store's path carries the first 8 hex digits of its fingerprint, so a parameter change
  makes a new store and never overwrites an old one;
* the root group's attrs hold ``fingerprint``, ``stage``, ``params``, ``upstream``, ``complete``,
  ``created_with``; each split holds a ``done`` bool array with one element (and one zarr chunk) per
  work chunk, because zarr does not write all-fill chunks and chunk existence never means "done";
* array metadata is created first, data is filled chunk by chunk, ``done[i]`` is set after chunk i is
  written (zarr ≥ 3.1 writes every file atomically), ``complete`` is set last;
* one writer per store (or per shard of a store) holds an exclusive ``flock`` on a lock file beside
  it; the kernel releases it when the process dies, even by ``kill -9``;
* a store may live on an fsspec URL (``s3://…``, :mod:`pipeline.storage.remote`): paths here are locations
  (``Path`` or ``UPath``), zarr opens ``str(path)``, and the lock file of a remote store is local.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import __version__
from pipeline.core.errors import LockError, StoreError
from pipeline.core.names import check_name
from pipeline.core.tempfiles import temporary_path
from pipeline.storage.remote import is_url, location, lock_file
from pipeline.storage.shards import checksummed_codecs

# Bump a stage's version when what it writes changes for the same params (forces new stores).
# prepare 2: folder sources without split sub-folders split per class; cache-features 2: feature stored
# uncompressed.
SCHEMA_VERSION = {
    "prepare": 2, "render": 1, "cache-features": 2, "train": 1, "eval": 1, "finetune": 1, "fewshot": 1,
    "partseg": 1,
}  # fmt: skip

STORE_KINDS = {"prepare": "points", "render": "views", "cache-features": "features"}


def fingerprint(stage: str, params: dict[str, Any], upstream: dict[str, str]) -> str:
    """sha256 of the canonical JSON of (stage, params, upstream fingerprints, schema version)."""
    payload = {"stage": stage, "params": params, "upstream": upstream, "schema": SCHEMA_VERSION[stage]}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def store_path(data_root: Path, stage: str, dataset: str, fp: str, teacher_slug: str | None = None) -> Path:
    """``<root>/points/<dataset>-<fp8>.zarr`` (and views/, features/<dataset>-<teacher>-<fp8>.zarr)."""
    check_name("dataset", dataset)
    stem = f"{dataset}-{teacher_slug}" if teacher_slug else dataset
    return location(data_root) / STORE_KINDS[stage] / f"{stem}-{fp[:8]}.zarr"


@dataclass(frozen=True)
class ArraySpec:
    """One array of a split: name, shape, zarr chunk shape, dtype and dimension names."""

    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: Any
    dims: tuple[str, ...]
    fill_value: Any = 0
    shards: tuple[int, ...] | None = None  # when set: one file per shard, ``chunks`` inside (random reads)
    compress: bool = True  # zstd (zarr's default); off for data that does not compress (CLIP features: 1.09×)


def per_object(
    name: str,
    shape: tuple[int, ...],
    chunk: int,
    dtype: Any,
    dims: tuple[str, ...],
    compress: bool = True,
    per_draw: bool = False,
) -> ArraySpec:
    """An array read one object at a time: shards of ``chunk`` objects holding one-object chunks
    (``per_draw``: one chunk per (object, draw), the second dimension being ``draw``).

    A work chunk writes exactly one shard (one file); a training loader reads one object (or one
    draw of it) without decoding its neighbours.
    """
    inner = (1, 1, *shape[2:]) if per_draw else (1, *shape[1:])
    return ArraySpec(name, shape, inner, dtype, dims, 0, (chunk, *shape[1:]), compress)


@dataclass(frozen=True)
class StoreState:
    """What a store on disk says about itself (read without locking)."""

    path: Path
    attrs: dict[str, Any]
    complete: bool
    done: dict[str, tuple[int, int]]  # split -> (chunks done, chunks in all)

    @property
    def progress(self) -> tuple[int, int]:
        return sum(d for d, _ in self.done.values()), sum(n for _, n in self.done.values())


def read_state(path: Path, progress: bool = True) -> StoreState | None:
    """The state of the store at ``path``, or None when there is no store there.

    progress: also read every split's ``done`` mask (for "partial k/n"); attrs alone need one file."""
    from pipeline.storage.checked import open_group  # DamagedStore for a cut zarr.json or done mask

    path = location(path)
    if not (path / "zarr.json").exists():
        return None
    group = open_group(path)
    attrs = dict(group.attrs)
    done: dict[str, tuple[int, int]] = {}
    for split in attrs.get("splits", []) if progress else []:
        if f"{split}/done" in group:
            mask = group[f"{split}/done"][:]
            done[split] = (int(mask.sum()), int(mask.size))
    return StoreState(path=path, attrs=attrs, complete=bool(attrs.get("complete")), done=done)


def list_states(
    data_root: Path, stage: str, progress: bool = True, read: Any = read_state
) -> list[StoreState]:
    """Every store of one stage under the data root, newest first (``read``: how a state is read)."""
    folder = location(data_root) / STORE_KINDS[stage]
    states = [read(p, progress) for p in sorted(folder.glob("*.zarr"))] if folder.is_dir() else []
    found = [s for s in states if s is not None and s.attrs.get("stage") == stage]
    return sorted(found, key=lambda s: s.attrs.get("created_at", 0.0), reverse=True)


class FileLock:
    """An exclusive ``flock`` on ``lock_path``, non-blocking unless ``wait``; the holder's pid is written in
    the file. A held lock raises LockError with ``busy`` (``{pid}`` replaced by the holder's) and ``hint``."""

    def __init__(self, lock_path: Path, busy: str, hint: str, wait: bool = False):
        self.lock_path, self.busy, self.hint, self.wait = Path(lock_path), busy, hint, wait
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockError(self.busy.replace("{pid}", holder), self.hint) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class StoreLock(FileLock):
    """The lock of a store: ``<store>.lock`` (or ``<store>.<tag>.lock`` for shards), local also for a URL."""

    def __init__(self, path: Path, tag: str | None = None, wait: bool = False):
        self.store = location(path)
        super().__init__(
            lock_file(path, f".{tag}.lock" if tag else ".lock"),
            f"another process (pid {{pid}}) is writing {self.store}",
            "wait for it to finish, or stop it; its work is kept and resumed by the next run",
            wait,
        )


class StoreWriter:
    """Creates a store's metadata, then records chunk by chunk what is durably written.

    Usage: ``w = StoreWriter(path, attrs)``; ``w.create({split: (n_chunks, [ArraySpec, ...])})``;
    for each chunk not in ``w.done(split)``: write with ``w.write(split, name, start, values)``, then
    ``w.mark_done(split, i)``; finally ``w.finish()`` sets ``complete``. The caller holds the lock.
    """

    def __init__(self, path: Path, attrs: dict[str, Any]):
        import zarr

        self.path = location(path)
        if (self.path / "zarr.json").exists():  # the real metadata, never a consolidated copy of it
            group = zarr.open_group(str(self.path), mode="r+", use_consolidated=False)
            found = group.attrs.get("fingerprint")
            if found != attrs["fingerprint"]:
                raise StoreError(
                    f"{self.path} holds fingerprint {found}, expected {attrs['fingerprint']}",
                    "two parameter sets share 8 hex digits (unlikely) or the store was edited; move it away",
                )
        else:
            if not is_url(self.path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            group = zarr.open_group(str(self.path), mode="w")
            group.attrs.update(
                {**attrs, "complete": False, "created_with": __version__, "created_at": time.time()}
            )
        self.group = group

    def create(self, layout: dict[str, tuple[int, list[ArraySpec]]]) -> None:
        """Create every split's arrays and ``done`` mask, or check the existing ones match."""
        for split, (n_chunks, specs) in layout.items():
            sub = self.group.require_group(split)
            for spec in [*specs, ArraySpec("done", (n_chunks,), (1,), bool, ("chunk",), False)]:
                self._require_array(sub, spec)
        self.group.attrs["splits"] = sorted(layout)

    def _require_array(self, sub: Any, spec: ArraySpec) -> None:
        if spec.name in sub:
            arr = sub[spec.name]
            if tuple(arr.shape) == spec.shape and tuple(arr.chunks) == spec.chunks:
                return  # (with sharding, .chunks is the inner chunk shape)
            raise StoreError(
                f"{self.path}/{sub.path}/{spec.name} has shape {arr.shape}, chunks {arr.chunks}; "
                f"this run expects {spec.shape}, {spec.chunks}",
                "the store was written by another version; delete it to rebuild",
            )
        sub.create_array(
            spec.name,
            shape=spec.shape,
            chunks=spec.chunks,
            shards=spec.shards,
            compressors=checksummed_codecs(spec.compress),  # each inner chunk checksummed
            dtype=spec.dtype,
            fill_value=spec.fill_value,
            dimension_names=spec.dims,
        )

    def done(self, split: str) -> np.ndarray:
        return self.group[f"{split}/done"][:]

    def write(self, split: str, name: str, start: int, values: np.ndarray) -> None:
        self.group[f"{split}/{name}"][start : start + len(values)] = values

    def mark_done(self, split: str, index: int) -> None:
        self.group[f"{split}/done"][index] = True

    def all_done(self) -> bool:
        return all(bool(self.done(split).all()) for split in self.group.attrs["splits"])

    def update_attrs(self, values: dict[str, Any]) -> None:
        self.group.attrs.update(values)

    def finish(self, extra: dict[str, Any] | None = None, sole_writer: bool = True) -> None:
        """Mark the store complete (last): everything else must already be written.

        Before that, every split gets the object ids (and labels) as coordinates (copied from the
        upstream points store when the split has none; rows are the same objects in the same order),
        and after it the metadata is consolidated into the root ``zarr.json``, so that
        ``xarray.open_zarr(path, group=split)`` opens a split by name, without warnings.
        sole_writer: no other process writes this store (not sharded), so temp files that a writer
        killed mid-write left behind can be removed safely."""
        if not self.all_done():
            raise StoreError(f"{self.path} cannot be marked complete: chunks are missing")
        if sole_writer and not is_url(self.path):  # object stores write whole objects, never temp files
            for leftover in self.path.rglob("*.partial"):  # zarr's temp files from a killed writer
                leftover.unlink(missing_ok=True)
        from pipeline.storage.store_coords import add_object_coords, consolidate

        for split in self.group.attrs["splits"]:
            add_object_coords(self.group, split)
        self.group.attrs.update({**(extra or {}), "complete": True, "completed_at": time.time()})
        consolidate(self.path)


def store_bytes(path: Path) -> int:
    """Bytes on disk of every file under a store (or any folder; for a URL, of every object under it)."""
    loc = location(path)
    if is_url(loc):
        return int(loc.fs.du(loc.path)) if loc.exists() else 0
    return sum(f.stat().st_size for f in loc.rglob("*") if f.is_file())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a single file under a temporary name and rename it into place; on any error the temporary
    file is removed and the error raised (the file at ``path`` is the old one or absent, never partial)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a read-only root, Ctrl-C: no temporary file is left behind
        tmp.unlink(missing_ok=True)
        raise
