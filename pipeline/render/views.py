"""The render stage: points store → ``views/<dataset>-<fp8>.zarr`` (method §5.2).

Per split, ``views: fixed`` (one unaugmented subset per object): ``image (O, V, 224, 224) float16``
(depth after the sigmoid, before mean/std), ``proj (O, V, 5) float32`` (min_row, min_col, grid,
off_row, off_col per view) and ``subset (O, R) int32`` (the stored points that were projected, drawn
from (seed, object id)).

``views: augmented`` (the default) adds a ``draw`` dimension of K seeded draws (``pipeline.render.draws``):
``image (O, K, V, 224, 224)``, ``proj (O, K, V, 5)``, ``subset (O, K, R)``, and the draw's
``scale``/``shift``/``centre (O, K, 3) float32`` and ``radius (O, K) float32``; each draw's views are
the projection of its augmented cloud, as the official step projects its input (§1.6, §5).
The projection itself is :func:`i2pmae.geometry.project`, shared with training.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.console import progress_bar
from pipeline.core.errors import ConfigError
from pipeline.core.parallel import run_tasks
from pipeline.core.params import RenderParams
from pipeline.sources.base import object_rng
from pipeline.storage.contract import Context, Plan
from pipeline.storage.space import check_space, layout_bytes, least_image_ratio, left_to_write
from pipeline.storage.store import ArraySpec, StoreLock, StoreWriter, per_object, read_state

log = logging.getLogger("i2p")

N_VIEWS = 3
IMAGE_SIZE = 224
AUGMENTATION = ("scale", "shift", "centre")  # (O, K, 3) each, with radius (O, K): a draw's frame
ARRAYS = {
    "fixed": ("image", "proj", "subset"),
    "augmented": ("image", "proj", "subset", *AUGMENTATION, "radius"),
}


def run(plan: Plan, ctx: Context) -> Path:
    """The render stage's body: fill the planned views store from the points store it needs; returns it."""
    origin = ctx.config.origins.get("render", {}).get("subset", "the render params") if ctx.config else None
    return render(plan.params, plan.needs["prepare"].out, plan.fingerprint, plan.out, origin)


def render(params: RenderParams, points_path: Path, fp: str, path: Path, origin: str | None = None) -> Path:
    """Fill the views store ``path`` (fingerprint ``fp``, planned by the runner) from a points store.

    Before anything is written: ConfigError when ``params.subset`` exceeds the points the store holds per
    object (``origin``: where the value came from, for the message); ResourceError when the store cannot fit
    on its disk (:mod:`pipeline.storage.space`)."""
    import zarr

    points = zarr.open_group(str(points_path), mode="r")
    dataset, points_fp = points.attrs["dataset"], points.attrs["fingerprint"]
    state = read_state(path)
    if state is not None and state.complete:
        log.info("render %s: up to date (%s)", dataset, path)
        return path
    layout = _layout(points, points_path, params, origin or "the render params")
    least = layout_bytes(layout, left_to_write(state), {"image": least_image_ratio(params.subset)})
    check_space(path, least, f"views store {path.name}")
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
        if params.views == "augmented":
            from i2pmae.augment import SCALE_HIGH, SCALE_LOW, SHIFT

            attrs["draws"] = params.draws
            attrs["augmentation"] = {
                "scale": [SCALE_LOW, SCALE_HIGH],
                "shift": SHIFT,
                "seeded_by": "seed, id, draw",
            }
        writer = StoreWriter(path, attrs)
        tasks: list[tuple] = []
        draws = params.draws if params.views == "augmented" else None
        writer.create(layout)
        for split in sorted(layout):
            n = points[f"{split}/points"].shape[0]
            for i in np.flatnonzero(~writer.done(split)).tolist():
                stop = min(n, (i + 1) * params.chunk)
                tasks.append(
                    (str(points_path), split, i * params.chunk, stop, params.subset, params.seed, draws)
                )
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


def _layout(points: Any, points_path: Path, params: RenderParams, origin: str) -> dict[str, tuple]:
    """{split: (work chunks, [ArraySpec])} of the views store of the points store ``points``; ConfigError
    when ``params.subset`` asks for more points than an object of the store holds."""
    shapes = {split: points[f"{split}/points"].shape for split in points.attrs["splits"]}
    stored = min(shape[1] for shape in shapes.values())
    if params.subset > stored:
        raise ConfigError(
            f"render.subset={params.subset} (from {origin}) asks for more points per object than the points "
            f"store holds: {stored} ({Path(str(points_path)).name})",
            f"use --set render.subset={stored} or fewer, or a points store with more points per object "
            "(`i2p prepare --points N` for mesh sources)",
        )
    c = params.chunk
    return {
        split: (max(1, -(-n // c)), _arrays(n, params.subset, c, params)) for split, (n, *_) in shapes.items()
    }


def _arrays(n: int, r: int, c: int, params: RenderParams) -> list[ArraySpec]:
    """The arrays of one split of ``n`` objects (``r`` projected points each, chunks of ``c``)."""
    V, S = N_VIEWS, IMAGE_SIZE
    if params.views == "fixed":
        return [
            per_object("image", (n, V, S, S), c, "float16", ("object", "view", "row", "col")),
            ArraySpec("proj", (n, V, 5), (c, V, 5), "float32", ("object", "view", "param")),
            ArraySpec("subset", (n, r), (c, r), "int32", ("object", "point")),
        ]
    K = params.draws
    return [
        per_object("image", (n, K, V, S, S), c, "float16", ("object", "draw", "view", "row", "col")),
        ArraySpec("proj", (n, K, V, 5), (c, K, V, 5), "float32", ("object", "draw", "view", "param")),
        per_object("subset", (n, K, r), c, "int32", ("object", "draw", "point")),
        *[ArraySpec(a, (n, K, 3), (c, K, 3), "float32", ("object", "draw", "axis")) for a in AUGMENTATION],
        ArraySpec("radius", (n, K), (c, K), "float32", ("object", "draw")),
    ]


def write_chunk(path: str, task: tuple, result: tuple) -> None:
    """Write one rendered chunk (its own shard and chunk files of every array)."""
    import zarr

    group, (_, split, start, stop, *_, draws) = zarr.open_group(path, mode="r+"), task
    names = ARRAYS["fixed" if draws is None else "augmented"]
    for name, values in zip(names, result, strict=True):
        group[f"{split}/{name}"][start:stop] = values


def render_chunk(
    points_path: str, split: str, start: int, stop: int, subset: int, seed: int, draws: int | None = None
) -> tuple[np.ndarray, ...]:
    """Project objects [start, stop) of a split. Fixed views (``draws`` None): images (n, V, 224, 224)
    float16, proj (n, V, 5), subset (n, R). Augmented: images (n, K, V, 224, 224), proj (n, K, V, 5),
    subset (n, K, R), scale, shift, centre (n, K, 3) and radius (n, K) (``pipeline.render.draws``)."""
    import torch

    from i2pmae.geometry import project
    from pipeline.render.draws import draw, frame, norm_stats
    from pipeline.storage.checked import open_group

    group = open_group(points_path)  # a damaged points store: one DamagedStore naming the object
    points = group[f"{split}/points"][start:stop]  # (n, P, 3)
    ids = group[f"{split}/id"][start:stop]
    n_points = points.shape[1]
    r = min(subset, n_points)
    if draws is None:
        chosen = np.stack([np.sort(object_rng(seed, str(i)).choice(n_points, r, replace=False)) for i in ids])
        picked = np.take_along_axis(points, chosen[..., None], axis=1)  # (n, R, 3)
        with torch.no_grad():
            images, proj = project(torch.from_numpy(picked))
        return images.numpy().astype(np.float16), proj.numpy().astype(np.float32), chosen.astype(np.int32)
    n = len(ids)
    chosen = np.empty((n, draws, r), np.int32)
    aug = {a: np.empty((n, draws, 3), np.float32) for a in AUGMENTATION}
    radius = np.empty((n, draws), np.float32)
    clouds = np.empty((n, draws, r, 3), np.float32)
    for o, ident in enumerate(ids):
        for k in range(draws):
            chosen[o, k], aug["scale"][o, k], aug["shift"][o, k] = draw(seed, str(ident), k, n_points, subset)
            cloud = points[o][chosen[o, k]]
            aug["centre"][o, k], radius[o, k] = norm_stats(cloud)
            clouds[o, k] = frame(
                cloud, aug["centre"][o, k], radius[o, k], aug["scale"][o, k], aug["shift"][o, k]
            )
    with torch.no_grad():
        images, proj = project(torch.from_numpy(clouds.reshape(n * draws, r, 3)))
    images = images.numpy().astype(np.float16).reshape(n, draws, *images.shape[1:])
    proj = proj.numpy().astype(np.float32).reshape(n, draws, *proj.shape[1:])
    return images, proj, chosen, aug["scale"], aug["shift"], aug["centre"], radius
