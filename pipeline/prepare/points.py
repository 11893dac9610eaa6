"""The prepare stage: a source's objects → ``points/<dataset>-<fp8>.zarr``.

Per split the store holds ``points (S, P, 3) float32``, ``label (S,) int32`` and ``id (S,) str``
(docs/pipeline.md, "Stores"); a part-labelled source's store also ``part`` and ``count``
(:mod:`pipeline.prepare.parts`). Work is split into chunks of ``params.chunk`` objects; workers read and
sample (``load_chunk``), the main process writes each chunk, records its bad inputs and marks it done.

Bad inputs keep their row (zero points, label −1, empty id) while the store fills, so chunk i always
covers the same rows and a resumed run writes the same bytes. When every chunk is done, splits that
had failures are compacted (the bad rows removed: :mod:`pipeline.prepare.compaction`) and the failures are
listed in the attrs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from pipeline import sources
from pipeline.core.console import progress_bar
from pipeline.core.errors import BadInput
from pipeline.core.parallel import run_tasks
from pipeline.core.params import PrepareParams
from pipeline.prepare import parts
from pipeline.prepare.compaction import compact
from pipeline.prepare.rows import read_or_record, write_labels_and_ids
from pipeline.sources.base import Catalog, Item
from pipeline.storage.contract import Context, Plan
from pipeline.storage.store import (
    ArraySpec,
    StoreLock,
    StoreWriter,
    fingerprint,
    per_object,
    read_state,
    store_path,
)

log = logging.getLogger("i2p")

ARRAYS = ("points", "label", "id")


@dataclass(frozen=True)
class PrepareResult:
    path: Path
    dataset: str
    fingerprint: str
    computed: int  # chunks computed by this run (0 when up to date)


def prepare(params: PrepareParams, data_root: Path, dataset: str | None = None) -> PrepareResult:
    """Bring the points store for ``params`` up to date outside the runner (tests, benchmarks)."""
    dataset = dataset or sources.default_dataset_name(params)
    fp = fingerprint("prepare", params.fingerprint_params(), {})
    path = store_path(data_root, "prepare", dataset, fp)
    computed = fill_points_store(params, Path(data_root), dataset, fp, path)
    return PrepareResult(path, dataset, fp, computed)


def run(plan: Plan, ctx: Context) -> Path:
    """The prepare stage's body: fill the planned points store from the dataset's source; returns it."""
    fill_points_store(plan.params, ctx.data_root, plan.dataset, plan.fingerprint, plan.out)
    return plan.out


def fill_points_store(params: PrepareParams, data_root: Path, dataset: str, fp: str, path: Path) -> int:
    """Fill the points store ``path`` (fingerprint ``fp``, planned by the runner) from the source;
    returns the number of chunks computed (0 when it was complete). The source is scanned only here."""
    state = read_state(path)
    if state is not None and state.complete:
        log.info("prepare %s: up to date (%s)", dataset, path)
        return 0
    catalog = sources.scan(params, Path(data_root))
    with StoreLock(path):
        return _fill(params, catalog, dataset, params.fingerprint_params(), fp, path)


def _fill(params: PrepareParams, catalog: Catalog, dataset: str, values: dict, fp: str, path: Path) -> int:
    splits, duplicates = _drop_duplicates(catalog.splits)
    n_points = int(catalog.handling["n_points"])
    writer = StoreWriter(
        path,
        {
            "fingerprint": fp,
            "stage": "prepare",
            "params": values,
            "stage_params": values,
            "upstream": {},
            "dataset": dataset,
            "source": params.source,
            "layout": catalog.layout,
            "classes": list(catalog.classes),
            "handling": dict(catalog.handling),
            **parts.store_attrs(catalog),  # part-labelled sources only
        },
    )
    labelled = catalog.parts is not None  # a part store: also `part` and `count` (pipeline.prepare.parts)
    layout = {}
    for split, items in splits.items():
        n, c = len(items), params.chunk
        specs = [
            per_object("points", (n, n_points, 3), c, "float32", ("object", "point", "xyz")),
            ArraySpec("label", (n,), (c,), "int32", ("object",), -1),
            ArraySpec("id", (n,), (c,), str, ("object",), ""),
        ] + (parts.specs(n, n_points, c) if labelled else [])
        layout[split] = (_n_chunks(n, c), specs)
    filled = "splits" in writer.group.attrs and writer.all_done()
    if not filled:  # once every chunk is written, only compaction (which changes shapes) may remain
        writer.create(layout)
    tasks = [
        (split, i, splits[split][i * params.chunk : (i + 1) * params.chunk])
        for split in sorted(splits)
        for i in np.flatnonzero(~writer.done(split)).tolist()
    ]
    total = sum(len(v) for v in splits.values())
    remaining = sum(len(t[2]) for t in tasks)
    if remaining < total:
        log.info("prepare %s: resuming, %d of %d objects already written", dataset, total - remaining, total)
    chunk_failures: dict[str, list] = dict(writer.group.attrs.get("chunk_failures", {}))
    chunk_notes: dict[str, list] = dict(writer.group.attrs.get("chunk_notes", {}))
    with progress_bar(f"prepare {dataset}", total, "objects", done=total - remaining) as advance:

        def on_result(task: tuple, written: tuple) -> None:
            split, i, items = task
            failures, notes = written
            start = i * params.chunk
            if failures:  # recorded before the chunk counts as done; clean chunks leave the attrs alone
                chunk_failures[f"{split}/{i}"] = [
                    {"split": split, "row": start + row, "id": id_, "path": p, "reason": r}
                    for row, id_, p, r in failures
                ]
            if notes:
                chunk_notes[f"{split}/{i}"] = [
                    {"split": split, "id": n[0], "path": n[1], "warning": n[2]} for n in notes
                ]
            if failures or notes:
                writer.update_attrs({"chunk_failures": chunk_failures, "chunk_notes": chunk_notes})
            for n in notes:
                log.warning("%s (%s): %s", *n)
            writer.mark_done(split, i)
            for f in failures:
                log.warning("skipped %s (%s): %s", f[1], f[2], f[3])
            advance(len(items))

        run_tasks(
            parts.load_chunk if labelled else load_chunk,
            [(split, i, items, params, n_points) for split, i, items in tasks],
            lambda task, written: on_result(task[:3], written),
            workers=params.workers,
            scheduler=params.scheduler,
            write=partial(parts.write_chunk if labelled else write_chunk, str(path)),
        )
    for f in catalog.failures:
        log.warning("skipped %s (%s): %s", f["id"], f["path"], f["reason"])
    failures = (
        catalog.failures + duplicates + [f for key in sorted(chunk_failures) for f in chunk_failures[key]]
    )
    counts = compact(writer, chunk_failures, params.chunk, ARRAYS + (parts.ARRAYS if labelled else ()))
    _refuse_emptied_splits(splits, counts, failures)
    warnings = [n for key in sorted(chunk_notes) for n in chunk_notes[key]]
    writer.finish({"failures": failures, "counts": counts, "warnings": warnings})
    log.info("prepare %s: wrote %s (%s; %d skipped)", dataset, path, _fmt_counts(counts), len(failures))
    return len(tasks)


def _refuse_emptied_splits(splits: dict[str, list], counts: dict[str, int], failures: list[dict]) -> None:
    """A split whose every object failed is an error, never a complete store of 0 objects."""
    for split, items in sorted(splits.items()):
        if items and counts.get(split, 0) == 0:
            reasons = [f"{f['id']}: {f['reason']}" for f in failures if f.get("split", split) == split][:3]
            raise BadInput(
                f"every one of the {len(items)} objects of the {split} split failed (first: {'; '.join(reasons)})",
                "fix the inputs (the store keeps what was read; it is not marked complete), or check --root",
            )


def load_chunk(
    split: str, index: int, items: list[Item], params: PrepareParams, n_points: int
) -> tuple[np.ndarray, list[tuple[int, str, str, str]], list[tuple[str, str, str]]]:
    """Read one chunk in a worker: points (n, P, 3) float32, failures [(row, id, path, reason)] and
    warnings [(id, path, text)] about inputs that were read (e.g. coarse single precision).

    A bad input leaves zeros in its row; with ``params.strict`` it raises instead. A missing Python
    package (ImportError) is the environment's fault, never the file's: it stops the run
    (:func:`pipeline.prepare.rows.read_or_record`).
    """
    points = np.zeros((len(items), n_points, 3), np.float32)
    failures, warnings = [], []
    for row, item in enumerate(items):
        notes: list[str] = []
        cloud = read_or_record(
            partial(_read_cloud, item, params, n_points, notes), item, params, row, failures
        )
        if cloud is not None:
            points[row] = cloud
            warnings += [(item.id, item.path, text) for text in notes]
    return points, failures, warnings


def _read_cloud(item: Item, params: PrepareParams, n_points: int, notes: list[str]) -> np.ndarray:
    cloud = sources.load_points(item, params, notes)
    if cloud.shape != (n_points, 3):
        raise BadInput(f"has {cloud.shape} points, the source promised ({n_points}, 3)")
    if not np.isfinite(cloud).all():
        raise BadInput("NaN or inf coordinates")
    return cloud


def write_chunk(path: str, task: tuple, result: tuple) -> tuple[list, list]:
    """Write one loaded chunk's rows (its own shard and chunk files); returns (failures, warnings)."""
    import zarr

    (split, i, items, params, _), (points, failures, notes) = task, result
    group, start = zarr.open_group(path, mode="r+"), i * params.chunk
    group[f"{split}/points"][start : start + len(items)] = points
    write_labels_and_ids(group, split, start, items, failures)
    return failures, notes


def _n_chunks(n: int, chunk: int) -> int:
    return max(1, -(-n // chunk))


def _drop_duplicates(splits: dict[str, list[Item]]) -> tuple[dict[str, list[Item]], list[dict]]:
    """Keep the first item of every id (over all splits, in split order); record the others."""
    seen: dict[str, Item] = {}
    kept: dict[str, list[Item]] = {}
    failures = []
    for split in sorted(splits):
        kept[split] = []
        for item in splits[split]:
            if item.id in seen:
                first = seen[item.id]
                reason = f"duplicate id, already read from {first.path}"
                failures.append(
                    {"split": split, "row": -1, "id": item.id, "path": item.path, "reason": reason}
                )
                log.warning("skipped %s (%s): %s", item.id, item.path, reason)
                continue
            seen[item.id] = item
            kept[split].append(item)
    return kept, failures


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{split} {n}" for split, n in sorted(counts.items()))
