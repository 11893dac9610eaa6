"""The cache-features stage: views store → ``features/<dataset>-<teacher>-<fp8>.zarr`` (method §6).

Per split: ``feature (S, V, C, h, w) float16`` (ln_post patch tokens × proj) and
``saliency (S, V, h, w) float32`` (last-layer CLS→patch attention, head-averaged); for augmented
views, ``(S, K, V, …)`` with one zarr chunk per (object, draw), the draw the loader reads. A torch
DataLoader reads view chunks in worker processes while the teacher runs here, on one device; the
images are normalised on that device (``pipeline.features.feed``). ``shard="i/n"`` fills only chunks with
index % n == i, so n processes (one per GPU, or machines sharing the store) fill one store together;
whoever finishes last marks it complete. ``shard="auto"`` under ``torchrun --nproc-per-node N``
makes each rank shard RANK/WORLD_SIZE, on ``cuda:LOCAL_RANK`` when the device is CUDA.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.console import progress_bar
from pipeline.core.devices import Distributed, resolve_device, resolve_precision
from pipeline.core.errors import ConfigError
from pipeline.core.params import FeaturesParams
from pipeline.storage.contract import Context, Plan
from pipeline.storage.space import check_space, layout_bytes, left_to_write
from pipeline.storage.store import StoreLock, StoreWriter, per_object, read_state

log = logging.getLogger("i2p")


def parse_shard(shard: str | None, dist: Distributed = Distributed()) -> tuple[int, int]:
    """``"i/n"`` → (i, n); none → (0, 1); ``"auto"`` → torchrun's (RANK, WORLD_SIZE), (0, 1) outside it."""
    if not shard:
        return 0, 1
    if shard == "auto":
        return dist.rank, dist.world
    try:
        i, n = (int(x) for x in shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise ConfigError(
            f"--shard {shard!r} is not i/n with 0 <= i < n, nor auto",
            "e.g. --shard 0/2 and --shard 1/2, or --shard auto under torchrun",
        ) from None
    return i, n


def run(plan: Plan, ctx: Context) -> Path:
    """The cache-features stage's body: fill the planned features store from the views store it needs, with
    the identity the plan resolved (weights sha256, precision); returns it."""
    return cache_features(
        plan.params,
        plan.identity,
        plan.needs["render"].out,
        plan.fingerprint,
        plan.out,
        ctx.offline,
        ctx.dist,
    )


def cache_features(
    params: FeaturesParams,
    values: dict[str, Any],
    views_path: Path,
    fp: str,
    path: Path,
    offline: bool,
    dist: Distributed = Distributed(),
) -> Path:
    """Fill the features store ``path`` (fingerprint ``fp`` of the identity ``values``, planned by the
    runner: teacher, weights sha256, resolved precision) from a views store; returns its path."""
    import zarr

    from pipeline.features.teachers import load_teacher

    device = resolve_device(params.device)
    if device == "cuda" and params.shard == "auto":  # under torchrun: one GPU per rank
        device = f"cuda:{dist.local_rank}"
    resolve_precision(values["precision"], device)  # fp16/bf16 planned but no CUDA here: an error
    views = zarr.open_group(str(views_path), mode="r")
    dataset = views.attrs["dataset"]
    state = read_state(path)
    if state is not None and state.complete:
        log.info("cache-features %s (%s): up to date (%s)", dataset, params.teacher, path)
        return path
    shard, n_shards = parse_shard(params.shard, dist)
    teacher = load_teacher(params.teacher, params.weights, device, values["precision"], offline=offline)
    if teacher.random_weights:
        log.warning(
            "teacher %s has RANDOM weights: features are for tests and smoke runs only", params.teacher
        )
    layout = _layout(params, views, teacher)
    needed = layout_bytes(layout, left_to_write(state) / n_shards)  # this shard's part of what is left
    check_space(path, needed, f"features store {path.name}")  # before its lock and metadata
    lock_tag = f"shard-{shard}-of-{n_shards}" if n_shards > 1 else None
    with StoreLock(path, tag=lock_tag):
        with StoreLock(path, tag="create", wait=True):  # shards create the metadata one at a time
            writer = _create(path, params, values, fp, views, views_path, layout, teacher)
            started = writer.group.attrs.get("shards")
            if started is None:
                writer.update_attrs({"shards": n_shards})
            elif started != n_shards:
                raise ConfigError(
                    f"{path} is being filled in {started} shard(s); this process asks for {n_shards}",
                    f"use --shard i/{started} (or none when {started} is 1) until the store is complete",
                )
        _fill(writer, params, views_path, teacher, device, shard, n_shards, dataset)
        if writer.all_done():
            writer.finish(sole_writer=n_shards == 1)
            log.info("cache-features %s: wrote %s", dataset, path)
        else:
            log.info(
                "cache-features %s: shard %d/%d done; other shards still running", dataset, shard, n_shards
            )
    return path


def _normalisation(kind: str, teacher: Any) -> dict[str, Any]:
    """The mean/std images are normalised with: ImageNet's (method §5.2, the default) or the teacher's."""
    from i2pmae.geometry import IMAGENET_MEAN, IMAGENET_STD

    if kind == "imagenet":
        return {"kind": kind, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    return {"kind": kind, "mean": list(teacher.mean), "std": list(teacher.std)}


def _create(path, params, values, fp, views, views_path, layout, teacher) -> StoreWriter:
    attrs = {
        "fingerprint": fp,
        "stage": "cache-features",
        "params": values,
        "stage_params": params.fingerprint_params(),
        "upstream": {"render": views.attrs["fingerprint"]},
        "upstream_paths": {"render": str(views_path)},
        "dataset": views.attrs["dataset"],
        "teacher": {**teacher.describe(), "normalisation": _normalisation(params.normalisation, teacher)},
    }
    if teacher.note:  # what a teacher trained by i2p knows (tiny-synthetic), from its shipped record
        attrs["teacher_note"] = teacher.note
    elif teacher.random_weights:
        attrs["teacher_note"] = "random weights: knows nothing (tests and smoke runs only)"
    writer = StoreWriter(path, attrs)
    writer.create(layout)
    return writer


def _layout(params: FeaturesParams, views: Any, teacher: Any) -> dict[str, tuple]:
    """{split: (work chunks, [ArraySpec])} of the features store of the views store ``views``: ``feature``
    (O, [K,] V, C, h, w) float16, uncompressed, and ``saliency`` (O, [K,] V, h, w) float32."""
    c, (h, w), ch = params.chunk, teacher.patch_grid, teacher.channels
    layout = {}
    for split in views.attrs["splits"]:
        n, *lead = views[f"{split}/image"].shape[:-2]  # (O, V) or, augmented views, (O, K, V)
        where = ("draw", "view") if len(lead) == 2 else ("view",)
        layout[split] = (
            max(1, -(-n // c)),
            [
                per_object(
                    "feature",
                    (n, *lead, ch, h, w),
                    c,
                    "float16",
                    ("object", *where, "channel", "row", "col"),
                    compress=False,
                    per_draw=len(lead) == 2,
                ),
                per_object(
                    "saliency",
                    (n, *lead, h, w),
                    c,
                    "float32",
                    ("object", *where, "row", "col"),
                    per_draw=len(lead) == 2,
                ),
            ],
        )
    return layout


def _fill(writer, params, views_path, teacher, device, shard, n_shards, dataset) -> None:
    import torch

    from pipeline.features.feed import teacher_batches

    chunks = []
    for split in writer.group.attrs["splits"]:
        n = writer.group[f"{split}/feature"].shape[0]
        for i in np.flatnonzero(~writer.done(split)).tolist():
            if i % n_shards == shard:
                chunks.append((split, i, i * params.chunk, min(n, (i + 1) * params.chunk)))
    norm = _normalisation(params.normalisation, teacher)
    lead = writer.group[f"{chunks[0][0]}/saliency"].shape[1:-2] if chunks else (3,)  # (V,) or (K, V)
    n_views = int(np.prod(lead))  # teacher images per object
    sizes = [(stop - start) * n_views for *_, start, stop in chunks]  # images per chunk

    def store(k: int, feats: list, sals: list) -> None:
        """float16/float32 conversion, zarr write and done mark: runs in the writer thread."""
        split, i, start, stop = chunks[k]
        feature = torch.cat(feats).reshape(stop - start, *lead, *feats[0].shape[1:])
        saliency = torch.cat(sals).reshape(stop - start, *lead, *sals[0].shape[1:])
        writer.write(split, "feature", start, feature.numpy().astype(np.float16))
        writer.write(split, "saliency", start, saliency.numpy().astype(np.float32))
        writer.mark_done(split, i)  # only after both arrays are written

    # Teacher batches may span chunks; chunk k is written once its last image is through the teacher.
    # One writer thread overlaps a chunk's conversion and write with the next teacher forwards; at
    # most one write is pending, and any write error is raised here.
    outputs: dict[int, tuple[list, list, int]] = {}
    batches = teacher_batches(
        str(views_path),
        chunks,
        norm["mean"],
        norm["std"],
        device,
        params.batch_size,
        params.num_workers,
        n_views,
    )
    with (
        progress_bar(f"cache-features {dataset}", sum(sizes), "images") as advance,
        torch.no_grad(),
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        pending = None
        for batch in batches:
            f, s = teacher(batch.images)
            f, s, at = f.float().cpu(), s.float().cpu(), 0
            for k, _, count in batch.parts:
                feats, sals, seen = outputs.setdefault(k, ([], [], 0))
                feats.append(f[at : at + count])
                sals.append(s[at : at + count])
                outputs[k] = (feats, sals, seen + count)
                at += count
                if seen + count == sizes[k]:
                    if pending is not None:
                        pending.result()
                    pending = pool.submit(store, k, *outputs.pop(k)[:2])
            advance(len(batch.images))
        if pending is not None:
            pending.result()
