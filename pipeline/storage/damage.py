"""Damaged stores: what a reader found, worded as one :class:`~pipeline.core.errors.DamagedStore`.

A store's files can stop holding what was written (a flipped bit on a disk, an interrupted copy of a
data root, a truncated file). Stores written since checksums came carry a crc32c of every inner chunk
(``pipeline.storage.shards.checksummed_codecs``), which both zarr and our shard reader check; every reader then
names the damage it finds in one message: the store, the split, the array and the object (row index
and id), with the fix in the hint ("rebuild: remove <store> and rerun i2p <stage> …").

Rules shared by the readers (``pipeline.storage.fastread``, ``pipeline.storage.checked``) and
``i2p verify`` (``pipeline.storage.verify``):

* a chunk file that a ``done`` work chunk (or a ``complete`` store) should hold and that is missing is
  damage, never fill values: zarr writes no file for an all-fill chunk, and no array here holds one
  (points, images, features, indices, labels ≠ −1, ids ≠ ""), but for the rows of bad inputs that a
  partial points store keeps until compaction;
* the arrays of :data:`FINITE` hold finite values only (prepare refuses NaN/inf inputs), so a NaN there is
  the store's damage, never the encoder's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import DamagedStore

FINITE = frozenset({"points"})  # arrays whose every value is finite by construction
METADATA_ERRORS = (json.JSONDecodeError, UnicodeDecodeError)  # what a cut or overwritten zarr.json raises
STAGE_OF_FOLDER = {"points": "prepare", "views": "render", "features": "cache-features"}


class ChunkDamage(Exception):
    """What one chunk's bytes were found to be ("checksum mismatch", …): raised inside a reader, which
    turns it into a DamagedStore that names the chunk's store, split, array and objects."""


def store_attrs(store: Any) -> dict[str, Any]:
    """The root group's attrs, or {} when its zarr.json cannot be read (itself damaged, or a URL)."""
    try:
        return dict(json.loads((Path(store) / "zarr.json").read_text()).get("attributes") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def rebuild_hint(store: Any, attrs: dict[str, Any] | None = None) -> str:
    """ "rebuild: remove <store> and rerun i2p <stage> -d <dataset> …" (the stage from the attrs, else from
    the folder the store lies in: points/, views/, features/)."""
    attrs = store_attrs(store) if attrs is None else attrs
    stage = attrs.get("stage") or STAGE_OF_FOLDER.get(Path(str(store)).parent.name, "<its stage>")
    command = f"i2p {stage}" + (f" -d {attrs['dataset']}" if attrs.get("dataset") else "")
    teacher = (attrs.get("stage_params") or {}).get("teacher") or (attrs.get("teacher") or {}).get("name")
    if stage == "cache-features" and teacher:
        command += f" --teacher {teacher}"
    return f"rebuild: remove {store} and rerun {command} (`i2p verify` checks every store)"


def object_text(store: Any, split: str, rows: tuple[int, int], draw: int | None = None) -> str:
    """ "object 3 (chair/chair_0003)", "objects 4–7 (box/b4 … box/b7)", with ", draw k" when given; the
    ids are read from the split's ``id`` array when it can be read."""
    first, stop = rows
    ids = _ids(store, split, first, stop)
    if stop - first == 1:
        text = f"object {first}" + (f" ({ids[0]})" if ids else "")
    else:
        text = f"objects {first}–{stop - 1}" + (f" ({ids[0]} … {ids[-1]})" if ids else "")
    return text + (f", draw {draw}" if draw is not None else "")


def _ids(store: Any, split: str, first: int, stop: int) -> list[str]:
    try:
        import zarr

        return [str(i) for i in zarr.open_array(f"{store}/{split}/id", mode="r")[first:stop]]
    except Exception:  # the ids are a courtesy: a damaged id array must not hide the damage found
        return []


def damaged(
    store: Any,
    what: str,
    split: str | None = None,
    array: str | None = None,
    rows: tuple[int, int] | None = None,
    draw: int | None = None,
) -> DamagedStore:
    """The error for damage ``what`` found in ``<split>/<array>``, objects [rows[0], rows[1]) (draw
    ``draw``); without split or array, of the store's own metadata."""
    where = "/".join(p for p in (split, array) if p)
    if rows is not None and split is not None:
        where += f" {object_text(store, split, rows, draw)}"
    return DamagedStore(f"damaged store {store}: {where + ': ' if where else ''}{what}", rebuild_hint(store))


def read_json(path: Path, store: Any, split: str | None = None, array: str | None = None) -> dict[str, Any]:
    """A metadata file as a dict; DamagedStore when it cannot be parsed (cut, overwritten)."""
    try:
        return json.loads(Path(path).read_text())
    except METADATA_ERRORS as err:
        raise damaged(store, f"{Path(path).name} cannot be read ({err})", split, array) from None


def expected_chunks(store: Any, split: str, n_chunks: int) -> np.ndarray:
    """(n_chunks,) bool: which chunk files (along the object dimension) of an array of ``split`` must exist:
    all of a complete store; of a partial one, those of ``done`` work chunks when the array is chunked as
    the work (one file per work chunk), else none, and none of a chunk with bad inputs (prepare writes
    their rows as fill values until compaction removes them). Read when a file is found missing."""
    attrs = store_attrs(store)
    if attrs.get("complete"):
        return np.ones(n_chunks, bool)
    try:
        import zarr

        done = np.array(zarr.open_array(f"{store}/{split}/done", mode="r")[:], bool)
    except Exception:  # no done mask (not one of our stores, or itself damaged): all expected
        return np.ones(n_chunks, bool)
    if len(done) != n_chunks:
        return np.zeros(n_chunks, bool)
    for key in attrs.get("chunk_failures") or {}:
        where, _, chunk = key.rpartition("/")
        if where == split and chunk.isdigit() and int(chunk) < n_chunks:
            done[int(chunk)] = False
    return done


def check_finite(store: Any, split: str, array: str, objects: Any, values: np.ndarray) -> None:
    """Raise DamagedStore when ``values`` of an array of :data:`FINITE` hold NaN or inf, naming the first
    such object: ``values`` (n, ...) are the rows ``objects`` ((n,) row indices) of the array."""
    if array in FINITE and values.dtype.kind == "f" and not np.isfinite(values).all():
        objects = np.atleast_1d(np.asarray(objects))
        try:
            bad = int(objects[np.argmin(np.isfinite(values.reshape(len(objects), -1)).all(axis=1))])
        except ValueError:  # values of another shape than (n, ...): name the first object read
            bad = int(objects[0])
        what = "non-finite values (NaN/inf), where only finite ones are written"
        raise damaged(store, what, split, array, (bad, bad + 1))
