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
from pipeline.prepare.records import FillRecords, complete_attrs, drop_duplicates, refuse_emptied_splits
from pipeline.prepare.rows import read_or_record, write_labels_and_ids
from pipeline.sources.base import Catalog, Item
from pipeline.storage.contract import Context, Plan
from pipeline.storage.space import check_space, layout_bytes, left_to_write
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
    returns the number of chunks computed (0 when it was complete). The source is scanned only here, and
    a store that cannot fit on its disk is refused before anything is written (its lock included)."""
    state = read_state(path)
    if state is not None and state.complete:
        log.info("prepare %s: up to date (%s)", dataset, path)
        return 0
    catalog, records = sources.scan(params, Path(data_root)), FillRecords()
    splits, duplicates = drop_duplicates(catalog.splits, records.skipped)
    layout = _layout(splits, int(catalog.handling["n_points"]), params.chunk, catalog.parts is not None)
    check_space(path, layout_bytes(layout, left_to_write(state)), f"points store {path.name}")
    with StoreLock(path):
        return _fill(params, catalog, (splits, duplicates, layout), records, dataset, fp, path)


def _layout(splits: dict[str, list[Item]], n_points: int, chunk: int, labelled: bool) -> dict[str, tuple]:
    """{split: (work chunks, [ArraySpec])} of a points store (and of a part store: ``labelled``)."""
    layout = {}
    for split, items in splits.items():
        n = len(items)
        specs = [
            per_object("points", (n, n_points, 3), chunk, "float32", ("object", "point", "xyz")),
            ArraySpec("label", (n,), (chunk,), "int32", ("object",), -1),
            ArraySpec("id", (n,), (chunk,), str, ("object",), ""),
        ] + (parts.specs(n, n_points, chunk) if labelled else [])
        layout[split] = (_n_chunks(n, chunk), specs)
    return layout


def _fill(
    params: PrepareParams,
    catalog: Catalog,
    found: tuple,
    records: FillRecords,
    dataset: str,
    fp: str,
    path: Path,
) -> int:
    """Fill under the store's lock; ``found``: (items per split, duplicates dropped, the store's layout)."""
    (splits, duplicates, layout), values = found, params.fingerprint_params()
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
    records.resume(writer.group.attrs)
    with progress_bar(f"prepare {dataset}", total, "objects", done=total - remaining) as advance:

        def on_result(task: tuple, written: tuple) -> None:
            split, i, items = task
            update = records.chunk(split, i, i * params.chunk, *written)
            if update:  # recorded before the chunk counts as done; clean chunks leave the attrs alone
                writer.update_attrs(update)
            writer.mark_done(split, i)
            advance(len(items))

        n_points = int(catalog.handling["n_points"])
        run_tasks(
            parts.load_chunk if labelled else load_chunk,
            [(split, i, items, params, n_points) for split, i, items in tasks],
            lambda task, written: on_result(task[:3], written),
            workers=params.workers,
            scheduler=params.scheduler,
            write=partial(parts.write_chunk if labelled else write_chunk, str(path)),
        )
    failures, warnings = records.finish(catalog.failures, duplicates)
    arrays = ARRAYS + (parts.ARRAYS if labelled else ())
    counts = compact(writer, records.chunks["failures"], params.chunk, arrays)
    refuse_emptied_splits(splits, counts, failures)
    writer.finish(complete_attrs(failures, warnings, counts, writer.group.attrs))
    log.info("prepare %s: wrote %s (%s; %d skipped)", dataset, path, _fmt_counts(counts), len(failures))
    return len(tasks)


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


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{split} {n}" for split, n in sorted(counts.items()))
