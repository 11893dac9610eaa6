"""Compaction of a filled points store: the rows of bad inputs are removed from every split that has
some, once every chunk is written (:mod:`pipeline.prepare.points` keeps a bad input's row while the store
fills, so that chunk i always covers the same rows).
"""

from __future__ import annotations

import numpy as np

from pipeline.storage.shards import checksummed_codecs
from pipeline.storage.store import StoreWriter


def compact(
    writer: StoreWriter, chunk_failures: dict[str, list], chunk: int, arrays: tuple[str, ...]
) -> dict[str, int]:
    """Remove the rows of bad inputs from the ``arrays`` of every split that has some; returns rows per split.

    Through zarr's API only (no folder renames), so it works on object storage too. Idempotent under
    interruption: (1) compacted copies are written as ``_compact-<name>``, (2) attr
    ``compact-ready/<split>`` is set, (3) per array: ``<name>`` is recreated at the compacted shape and
    filled from its copy, then the copy is deleted, (4) attr ``compacted/<split>`` is set. A rerun redoes
    (1) if (2) is missing, else redoes (3) for every copy still there (a copy outlives its array's refill).
    """
    counts = {}
    for split in writer.group.attrs["splits"]:
        bad = sorted(
            {f["row"] for key, fs in chunk_failures.items() if key.startswith(f"{split}/") for f in fs}
        )
        attrs = writer.group.attrs
        if bad and not attrs.get(f"compacted/{split}"):
            if not attrs.get(f"compact-ready/{split}"):
                _write_compacted(writer, split, bad, chunk, arrays)
                writer.update_attrs({f"compact-ready/{split}": True})
            for name in arrays:
                if f"_compact-{name}" in writer.group[split]:
                    _copy_back(writer.group[split], name, chunk)
            writer.update_attrs({f"compacted/{split}": True})
        counts[split] = int(writer.group[f"{split}/id"].shape[0])
    return counts


def _write_compacted(
    writer: StoreWriter, split: str, bad: list[int], chunk: int, arrays: tuple[str, ...]
) -> None:
    sub = writer.group[split]
    keep = np.setdiff1d(np.arange(sub["id"].shape[0]), np.asarray(bad))
    for name in arrays:
        new = _like(sub, f"_compact-{name}", sub[name], len(keep), chunk)  # replaces a half-written copy
        for start in range(0, len(keep), chunk):
            new[start : start + chunk] = sub[name].get_orthogonal_selection(keep[start : start + chunk])


def _like(sub, name: str, old, rows: int, chunk: int):
    """A new (overwritten) array ``name`` in ``sub`` with ``old``'s row shape, dtype, codecs and
    dimension names, ``rows`` rows, and the store's chunking (``per_object`` shards or ``chunk`` rows);
    compressed as ``old`` is, and (inner) chunks checksummed as a new store's."""
    from zarr.codecs import ZstdCodec

    sharded = old.shards is not None
    return sub.create_array(
        name,
        shape=(rows, *old.shape[1:]),
        chunks=old.chunks if sharded else (chunk, *old.shape[1:]),
        shards=(chunk, *old.shape[1:]) if sharded else None,
        dtype=old.dtype,
        fill_value=old.fill_value,
        compressors=checksummed_codecs(any(isinstance(c, ZstdCodec) for c in old.compressors)),
        dimension_names=old.metadata.dimension_names,
        overwrite=True,
    )


def _copy_back(sub, name: str, chunk: int) -> None:
    """Recreate array ``name`` from its compacted copy ``_compact-<name>``, then delete the copy."""
    copy = sub[f"_compact-{name}"]
    target = _like(sub, name, copy, copy.shape[0], chunk)
    for start in range(0, copy.shape[0], chunk):
        target[start : start + chunk] = copy[start : start + chunk]
    del sub[f"_compact-{name}"]
