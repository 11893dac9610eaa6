"""Samples/s of the training dataset (cached mode, paper sizes) per process and through a DataLoader.

    python benchmarks/loader.py                   # 300 objects, batch 64, workers 0 1 2
    python benchmarks/loader.py --per-class 8 --workers 0 2

The stores are built by the pipeline itself in a temporary data root (not timed): ``prepare`` of the
synthetic source with P = 8192 stored points, ``render``, and ``cache-features`` with the
``tiny-random`` teacher, whose maps have the paper's size (3 views × 512 × 14 × 14, float16). Then,
from the page cache (every store is read once before timing):

1. per process: ``CachedShapes[i]`` (shard reads, ``pipeline.storage.fastread``) over a shuffled epoch,
   against the same items read through zarr-python's array API one object at a time (the loader before), and their ratio;
2. through ``pipeline.train.trainset.batch_loader``, the real ``torch.utils.data.DataLoader`` as
   ``i2p train`` builds it (batch 64, the ``EpochSampler``, ``--workers`` values):
   samples/s from the first batch to the last (worker start-up reported apart), and the CPU time
   per sample of this process and its workers together: "samples/s per 2 cores" is what two free
   cores would give, whatever else runs on the machine;
3. the bytes one sample carries.

All from one run; the load average is printed next to the numbers (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_stores(root: Path, per_class: int, workers: int = 1) -> tuple[str, str, str]:
    """Prepare, render and cache tiny-random features; returns the three store paths."""
    from pipeline.core.params import FeaturesParams, PrepareParams, RenderParams
    from pipeline.prepare.points import prepare
    from pipeline.runner.execute import build_store

    points = prepare(PrepareParams(synthetic_per_class=per_class, points=8192, workers=workers), root).path
    # fixed views: the items the zarr baseline below rebuilds; an augmented store's item reads one
    # draw's chunk of the same size, plus that draw's subset row (8 KiB)
    views = build_store("render", RenderParams(workers=workers, views="fixed"), points, root)
    features = build_store("cache-features", FeaturesParams(teacher="tiny-random", device="cpu"), views, root)
    return str(points), str(views), str(features)


def zarr_item(groups: dict, index: int, seed: int, epoch: int, n_points: int) -> dict:
    """One item as the loader made it before the shard reads: zarr-python reads, one call per array."""
    import numpy as np
    import torch

    stored = groups["points"]["points"][index]
    chosen = np.random.default_rng([seed, epoch, index]).permutation(stored.shape[0])[:n_points]
    canonical = stored[chosen]
    centred = canonical - canonical.mean(axis=0, keepdims=True)
    xyz = centred / np.sqrt((centred**2).sum(axis=1)).max()
    return {
        "xyz": torch.from_numpy(xyz.astype(np.float32)),
        "canonical": torch.from_numpy(canonical),
        "proj": torch.from_numpy(groups["views"]["proj"][index]),
        "feature": torch.from_numpy(groups["features"]["feature"][index]),
        "saliency": torch.from_numpy(groups["features"]["saliency"][index]),
    }


def per_process(paths: tuple[str, str, str], n_points: int, rounds: int) -> tuple[float, float, int]:
    """(shard-read items/s, zarr items/s, bytes per item) over shuffled epochs in this process."""
    import numpy as np
    import torch
    import zarr

    from pipeline.train.trainset import CachedShapes

    data = CachedShapes(*paths, "train", n_points, seed=0)
    groups = {
        k: zarr.open_group(p, mode="r")["train"]
        for k, p in zip(("points", "views", "features"), paths, strict=True)
    }
    order = np.random.default_rng(0).permutation(len(data))
    for i in order:  # warm the page cache and both readers
        data[int(i)]
    item = data[0]
    assert all(torch.equal(item[k], v) for k, v in zarr_item(groups, 0, 0, 0, n_points).items())
    nbytes = sum(v.numel() * v.element_size() for v in item.values())
    fast = slow = 0.0
    for _ in range(rounds):  # alternated, so drifting load hits both
        start = time.perf_counter()
        for i in order:
            data[int(i)]
        fast += time.perf_counter() - start
        start = time.perf_counter()
        for i in order:
            zarr_item(groups, int(i), 0, 0, n_points)
        slow += time.perf_counter() - start
    n = rounds * len(order)
    return n / fast, n / slow, nbytes


def _cpu() -> float:
    """CPU seconds of this process and its finished children (DataLoader workers once joined)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def through_loader(paths, n_points: int, batch: int, workers: int, epochs: int) -> tuple[float, float, float]:
    """(samples/s, CPU ms per sample of this process and its workers, seconds to the first batch).

    ``batch_loader`` as ``i2p train`` builds it (persistent workers, whole batches per worker); the
    rate counts every batch after the first, the CPU time every sample (worker start-up included,
    measured once the workers have exited); best of two passes."""
    import gc

    from pipeline.train.trainset import CachedShapes, EpochSampler, batch_loader

    data = CachedShapes(*paths, "train", n_points, seed=0)
    sampler = EpochSampler(len(data), batch, seed=0)
    best = (0.0, float("inf"), float("inf"))
    for _ in range(2):
        start, cpu = time.perf_counter(), _cpu()
        loader = batch_loader(data, sampler, num_workers=workers)
        first, samples, total = None, 0, 0
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            for item in loader:
                total += len(item["xyz"])
                if first is None:
                    first = time.perf_counter()
                else:
                    samples += len(item["xyz"])
        rate = samples / (time.perf_counter() - first)
        del loader, item
        gc.collect()  # the persistent workers exit: their CPU time is counted from here on
        cpu_ms = (_cpu() - cpu) / total * 1e3
        best = (max(best[0], rate), min(best[1], cpu_ms), min(best[2], first - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20, help="synthetic objects per class (15 classes)")
    parser.add_argument("--points", type=int, default=2048, help="points per item (train.points)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per DataLoader measurement")
    parser.add_argument("--rounds", type=int, default=2, help="passes per reader, per process")
    parser.add_argument("--stage-workers", type=int, default=1, help="prepare/render workers (not timed)")
    parser.add_argument("--data-root", type=Path, help="reuse stores here (default: a temporary folder)")
    args = parser.parse_args()

    import torch

    root = args.data_root or Path(tempfile.mkdtemp(prefix="i2p-bench-loader-"))
    try:
        start = time.perf_counter()
        paths = build_stores(root, args.per_class, args.stage_workers)
        built = time.perf_counter() - start
        import zarr

        n = zarr.open_group(paths[0], mode="r")["train/points"].shape[0]
        print(
            f"loader benchmark: {n} training objects, 8192 stored points, features 3x512x14x14 float16, "
            f"train.points {args.points}; {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"load average {os.getloadavg()[0]:.1f} (stores built in {built:.0f} s, not timed)"
        )
        fast, slow, nbytes = per_process(paths, args.points, args.rounds)
        print(f"one sample: {nbytes / 1024:.0f} KiB")
        print(
            f"per process: {fast:.0f} samples/s (shard reads) vs {slow:.0f} samples/s "
            f"(zarr-python per object, before): {fast / slow:.1f}x; load average {os.getloadavg()[0]:.1f}"
        )
        for workers in args.workers:
            rate, cpu_ms, first = through_loader(paths, args.points, args.batch_size, workers, args.epochs)
            print(
                f"DataLoader batch {args.batch_size}, {workers} workers: {rate:.0f} samples/s, "
                f"{cpu_ms:.2f} CPU ms per sample = {2000 / cpu_ms:.0f} samples/s per 2 cores "
                f"(first batch after {first:.2f} s); load average {os.getloadavg()[0]:.1f}"
            )
    finally:
        if args.data_root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
