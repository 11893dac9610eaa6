"""``i2p verify``: read every chunk of every array of a store; check its files, checksums and done masks.

Per store (:func:`verify_store`): the root and every array's ``zarr.json`` parse; every chunk file that a
written chunk should have exists (:func:`pipeline.storage.damage.expected_chunks`); every shard's index
checksum holds and every inner chunk lies inside its file and matches its crc32c (stores written since
checksums came) or at least decompresses (older ones); the arrays of ``FINITE`` hold finite values; a
``complete`` store has every ``done`` bit set. The verdict: ``ok``, ``damaged`` (what, where, and how to
rebuild), or ``cannot be checked: no checksums (old store)`` when its chunks carry none (its files, sizes
and done masks are still checked). Sharded arrays of our layout are parsed directly
(:mod:`pipeline.storage.shards`), every other array is read chunk by chunk through zarr.
:func:`array_problems` is also how :mod:`pipeline.storage.checked` names the object behind a zarr error.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.storage.damage import (
    FINITE,
    ChunkDamage,
    damaged,
    expected_chunks,
    object_text,
    read_json,
    rebuild_hint,
)
from pipeline.storage.shards import ShardLayout, has_checksums

Problem = tuple[str, tuple[int, int] | None, int | None]  # (what, objects [start, stop), draw)
STORE_FOLDERS = ("points", "views", "features")
NOT_FINITE = "non-finite values (NaN/inf), where only finite ones are written"


@dataclass
class Verdict:
    """What :func:`verify_store` found in one store: ``problems`` (worded, one per damaged chunk, file or
    flag), ``unchecked`` (``<split>/<array>`` whose chunks carry no checksum), ``arrays`` checked."""

    store: Path
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    arrays: int = 0

    @property
    def state(self) -> str:
        """``damaged``, ``cannot be checked`` (no array has checksums), ``partly checked`` or ``ok``."""
        if self.problems:
            return "damaged"
        if self.unchecked:
            return "cannot be checked" if len(self.unchecked) >= self.arrays else "partly checked"
        return "ok"

    def text(self, shown: int = 3) -> str:
        """The verdict in one line (without the store): the first ``shown`` problems, then how many more."""
        if self.problems:
            more = f"; and {len(self.problems) - shown} more" if len(self.problems) > shown else ""
            return f"damaged: {'; '.join(self.problems[:shown])}{more}; {rebuild_hint(self.store)}"
        if self.state == "cannot be checked":
            return "cannot be checked: no checksums (old store); its files and done masks are whole"
        if self.unchecked:
            return f"partly checked: no checksums in {', '.join(self.unchecked)}; the rest is ok"
        return f"ok ({self.arrays} arrays, every chunk checked)"


def find_stores(*roots: Any) -> list[Path]:
    """Every ``<root>/{points,views,features}/*.zarr`` folder under the given local roots, sorted, once."""
    found = {
        p.resolve()
        for root in roots
        if root is not None and "://" not in str(root)
        for kind in STORE_FOLDERS
        for p in Path(root).glob(f"{kind}/*.zarr")
        if p.is_dir()
    }
    return sorted(found)


def verify_store(path: Any) -> Verdict:
    """Read every chunk of every array of the store at ``path`` (a local folder) and judge it."""
    store = Path(path)
    verdict = Verdict(store)
    if not store.is_dir():
        verdict.problems.append("no such folder")
        return verdict
    try:
        meta = json.loads((store / "zarr.json").read_text())
    except FileNotFoundError:
        verdict.problems.append("zarr.json is missing (not a store, or its metadata was lost)")
        meta = {}
    except ValueError as err:
        verdict.problems.append(f"zarr.json cannot be read ({err})")
        meta = {}
    attrs = meta.get("attributes") or {}
    splits = attrs.get("splits") or sorted(d.name for d in store.iterdir() if (d / "zarr.json").is_file())
    for split in splits:
        if not (store / split).is_dir():
            verdict.problems.append(f"{split}: the split's folder is missing")
            continue
        for name in _arrays(store, split, meta):
            verdict.arrays += 1
            _check_array(verdict, str(store), split, name)
        if attrs.get("complete"):
            verdict.problems += _done_problems(str(store), split)
    return verdict


def quick_check(path: Any) -> None:
    """Before a long read (training): the metadata parses, every chunk file of a written chunk exists, every
    shard's index checksum holds and its chunks lie inside the file; one stat or one small read per file,
    no chunk decoded (``verify_store`` reads them all). DamagedStore for the first problem; a URL is
    not checked here."""
    if "://" in str(path):
        return
    store = Path(path)
    meta = read_json(store / "zarr.json", str(store))
    for split in (meta.get("attributes") or {}).get("splits") or []:
        for name in _arrays(store, split, meta):
            for what, rows, draw in array_problems(store, split, name, first_only=True, deep=False):
                raise damaged(str(store), what, split, name, rows, draw)


def _arrays(store: Path, split: str, meta: dict[str, Any]) -> list[str]:
    """The arrays of a split: its folders that hold files (zarr leaves the emptied folders of a deleted
    array behind), and those the root's consolidated metadata lists."""
    folder, listed = store / split, (meta.get("consolidated_metadata") or {}).get("metadata") or {}
    on_disk = (
        {d.name for d in folder.iterdir() if d.is_dir() and _holds_files(d)} if folder.is_dir() else set()
    )
    return sorted(
        on_disk | {k.partition("/")[2] for k in listed if k.count("/") == 1 and k.startswith(f"{split}/")}
    )


def _holds_files(folder: Path) -> bool:
    """Whether any file lies under ``folder`` (zarr leaves the empty folders of a deleted array behind)."""
    return any(p.is_file() for p in folder.rglob("*"))


def _check_array(verdict: Verdict, store: str, split: str, name: str) -> None:
    try:
        meta = json.loads((Path(store) / split / name / "zarr.json").read_text())
    except (OSError, ValueError):
        meta = {}
    if meta and not has_checksums(meta):
        verdict.unchecked.append(f"{split}/{name}")
    for what, rows, draw in array_problems(store, split, name):
        where = f" {object_text(store, split, rows, draw)}" if rows is not None else ""
        verdict.problems.append(f"{split}/{name}{where}: {what}")


def _done_problems(store: str, split: str) -> list[str]:
    """A complete store whose ``done`` mask has unset bits (its chunk files are damage: read as False)."""
    try:
        import zarr

        done = np.asarray(zarr.open_array(f"{store}/{split}/done", mode="r")[:])
    except Exception:  # the done array's own damage is reported with its chunks
        return []
    missing = np.flatnonzero(~done)
    if not len(missing):
        return []
    return [f"{split}/done: the store is marked complete but work chunks {missing[:5].tolist()} are not done"]


def array_problems(
    store: Any,
    split: str,
    name: str,
    rows: tuple[int, int] | None = None,
    first_only: bool = False,
    deep: bool = True,
) -> list[Problem]:
    """Damage found in objects [rows) (default: all) of ``<store>/<split>/<name>``: (what, objects
    [start, stop) or None for the whole array, draw or None) per damaged file or chunk; stops at the
    first with ``first_only``. Not ``deep``: files, sizes and shard indexes only, no chunk read.
    [] for a URL (not diagnosed here) or an intact array."""
    if "://" in str(store):
        return []
    folder = Path(str(store)) / split / name
    try:
        meta = json.loads((folder / "zarr.json").read_text())
    except FileNotFoundError:
        return [("zarr.json is missing", None, None)]
    except ValueError as err:
        return [(f"zarr.json cannot be read ({err})", None, None)]
    if meta.get("node_type") != "array":
        return []
    if ShardLayout.supported(meta):
        return _shard_problems(str(store), split, name, ShardLayout(folder, meta), rows, first_only, deep)
    return _chunk_problems(str(store), split, name, rows, first_only, deep)


def _shard_problems(
    store: str, split: str, name: str, layout: ShardLayout, rows: Any, first_only: bool, deep: bool
) -> list[Problem]:
    """Our sharded layout, parsed directly: files, index checksums, chunk bounds and checksums."""
    n, per = layout.shape[0], layout.per_shard
    lo, hi = rows or (0, n)
    scratch, found = np.empty(layout.row_shape, layout.dtype), []
    expected = expected_chunks(store, split, layout.n_shards)
    for shard in range(lo // per, -(-hi // per)):
        path, span = layout.path(shard), (shard * per, min(n, (shard + 1) * per))
        where = f"shard file {path.relative_to(layout.folder)}"
        if not path.is_file():
            if expected[shard]:
                found.append((f"{where} of written objects is missing", span, None))
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            try:
                table = layout.index(fd, size)
            except ChunkDamage as err:
                found.append((f"{where}: {err}", span, None))
                continue
            for k in range(layout.chunks):
                obj, draw = shard * per + k // layout.draws, (k % layout.draws if layout.lead == 2 else None)
                if not (lo <= obj < min(hi, n)):
                    continue
                try:
                    if not deep:
                        layout.bounds(size, int(table[k, 0]), int(table[k, 1]))
                        continue
                    layout.read(fd, size, int(table[k, 0]), int(table[k, 1]), scratch)
                except ChunkDamage as err:
                    found.append((f"{where}: {err}", (obj, obj + 1), draw))
                    continue
                if name in FINITE and scratch.dtype.kind == "f" and not np.isfinite(scratch).all():
                    found.append((NOT_FINITE, (obj, obj + 1), draw))
        finally:
            os.close(fd)
        if first_only and found:
            break
    return found


def _chunk_problems(
    store: str, split: str, name: str, rows: Any, first_only: bool, deep: bool
) -> list[Problem]:
    """Any other array, read one chunk file (of the object dimension) at a time through zarr."""
    import zarr

    try:
        arr = zarr.open_array(f"{store}/{split}/{name}", mode="r")
    except Exception as err:  # whatever zarr says of unreadable metadata
        return [(f"cannot be opened ({_short(err)})", None, None)]
    if arr.ndim == 0 or arr.shape[0] == 0:
        return []
    grid = [range(-(-s // c)) for s, c in zip(arr.shape, arr.shards or arr.chunks, strict=True)]
    per, n, folder, found = (arr.shards or arr.chunks)[0], arr.shape[0], Path(store) / split / name, []
    lo, hi = rows or (0, n)
    expected = expected_chunks(store, split, len(grid[0]))
    for j in range(lo // per, -(-hi // per)):
        span = (j * per, min(n, (j + 1) * per))
        keys = [arr.metadata.encode_chunk_key((j, *rest)) for rest in itertools.product(*grid[1:])]
        gone = [k for k in keys if not (folder / k).exists()]
        if gone and expected[j]:
            found.append((f"chunk file {gone[0]} of written objects is missing", span, None))
            continue
        if not deep:
            continue
        try:
            values = arr[span[0] : span[1]]
        except (ValueError, OSError, RuntimeError) as err:
            found.append((f"chunk file {keys[0]} fails its check ({_short(err)})", span, None))
            continue
        if name in FINITE and values.dtype.kind == "f" and not np.isfinite(values).all():
            found.append((NOT_FINITE, span, None))
        if first_only and found:
            break
    return found


def _short(err: Exception) -> str:
    """An error's first sentence (zarr's checksum error goes on with the raw bytes)."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text.split(". ")[0][:160]
