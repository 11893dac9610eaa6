"""The render stage: points store → ``views/<dataset>-<fp8>.zarr`` (spec §5.2).

Per split: ``image (O, V, 224, 224) float16`` (depth after the sigmoid, before mean/std),
``proj (O, V, 5) float32`` (min_row, min_col, grid, off_row, off_col per view) and
``subset (O, R) int32`` (the stored points that were projected, drawn from (seed, object id)).
The projection itself is :func:`i2pmae.geometry.project`, shared with training.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np

from pipeline.console import progress_bar
from pipeline.parallel import run_tasks
from pipeline.params import RenderParams
from pipeline.sources.base import object_rng
from pipeline.store import ArraySpec, StoreLock, StoreWriter, per_object, read_state

log = logging.getLogger("i2p")

N_VIEWS = 3
IMAGE_SIZE = 224


def render(params: RenderParams, points_path: Path, fp: str, path: Path) -> Path:
    """Fill the views store ``path`` (fingerprint ``fp``, planned by the runner) from a points store."""
    import zarr

    points = zarr.open_group(str(points_path), mode="r")
    dataset, points_fp = points.attrs["dataset"], points.attrs["fingerprint"]
    state = read_state(path)
    if state is not None and state.complete:
        log.info("render %s: up to date (%s)", dataset, path)
        return path
    with StoreLock(path):
        attrs = {
            "fingerprint": fp,
            "stage": "render",
            "params": params.fingerprint_params(),
            "stage_params": params.fingerprint_params(),
            "upstream": {"prepare": points_fp},
            "upstream_paths": {"prepare": str(points_path)},
            "dataset": dataset,
            "views": N_VIEWS,
            "image_size": IMAGE_SIZE,
            "proj_fields": ["min_row", "min_col", "grid", "off_row", "off_col"],
        }
        writer = StoreWriter(path, attrs)
        layout, tasks = {}, []
        for split in points.attrs["splits"]:
            n, n_points = points[f"{split}/points"].shape[:2]
            r, c = min(params.subset, n_points), params.chunk
            layout[split] = (
                max(1, -(-n // c)),
                [
                    per_object(
                        "image",
                        (n, N_VIEWS, IMAGE_SIZE, IMAGE_SIZE),
                        c,
                        "float16",
                        ("object", "view", "row", "col"),
                    ),
                    ArraySpec(
                        "proj", (n, N_VIEWS, 5), (c, N_VIEWS, 5), "float32", ("object", "view", "param")
                    ),
                    ArraySpec("subset", (n, r), (c, r), "int32", ("object", "point")),
                ],
            )
        writer.create(layout)
        for split in sorted(layout):
            n = points[f"{split}/points"].shape[0]
            for i in np.flatnonzero(~writer.done(split)).tolist():
                stop = min(n, (i + 1) * params.chunk)
                tasks.append((str(points_path), split, i * params.chunk, stop, params.subset, params.seed))
        total = sum(points[f"{s}/points"].shape[0] for s in layout)
        todo = sum(t[3] - t[2] for t in tasks)
        with progress_bar(f"render {dataset}", total, "objects", done=total - todo) as advance:

            def on_result(task: tuple, _: None) -> None:
                _, split, start, stop, *_ = task
                writer.mark_done(split, start // params.chunk)  # after write_chunk returned
                advance(stop - start)

            run_tasks(
                render_chunk,
                tasks,
                on_result,
                workers=params.workers,
                scheduler=params.scheduler,
                write=partial(write_chunk, str(path)),
            )
        writer.finish()
    log.info("render %s: wrote %s", dataset, path)
    return path


def write_chunk(path: str, task: tuple, result: tuple) -> None:
    """Write one rendered chunk (its own shard and chunk files of image, proj and subset)."""
    import zarr

    group, (_, split, start, stop, *_) = zarr.open_group(path, mode="r+"), task
    for name, values in zip(("image", "proj", "subset"), result, strict=True):
        group[f"{split}/{name}"][start:stop] = values


def render_chunk(
    points_path: str, split: str, start: int, stop: int, subset: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project objects [start, stop) of a split: images (n,V,224,224) f16, proj (n,V,5), subset (n,R)."""
    import torch
    import zarr

    from i2pmae.geometry import project

    group = zarr.open_group(points_path, mode="r")
    points = group[f"{split}/points"][start:stop]  # (n, P, 3)
    ids = group[f"{split}/id"][start:stop]
    n_points = points.shape[1]
    r = min(subset, n_points)
    chosen = np.stack([np.sort(object_rng(seed, str(i)).choice(n_points, r, replace=False)) for i in ids])
    picked = np.take_along_axis(points, chosen[..., None], axis=1)  # (n, R, 3)
    with torch.no_grad():
        images, proj = project(torch.from_numpy(picked))
    return images.numpy().astype(np.float16), proj.numpy().astype(np.float32), chosen.astype(np.int32)
