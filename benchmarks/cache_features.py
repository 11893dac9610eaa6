"""Images/s of the whole cache-features stage vs the bare teacher forward, and bytes per object.

    python benchmarks/cache_features.py                      # tiny-random and ViT-B/16, CPU or CUDA
    python benchmarks/cache_features.py --teachers tiny-random --tiny-objects 90
    python benchmarks/cache_features.py --device cuda --vit-objects 450

For each teacher, on a synthetic dataset prepared and rendered by the pipeline itself (in a temporary
data root), this times (1) ``pipeline.features.cache.cache_features`` end to end: teacher construction,
DataLoader workers reading and normalising view chunks from the views store, the forward, the copy
back and the zarr writes; and (2) the same teacher called on normalised images already on the device,
with the batch sizes the stage uses (batches of ``batch_size`` images that span chunks; only the last
is smaller), after one warm-up batch. The ratio stage / bare is the share of the teacher's speed the
stage keeps (the goal: ≥ 0.9). And (3) the feed alone, the teacher's forward excluded
(``pipeline.features.feed.teacher_batches``: read, normalise, move to the device), in images/s and in CPU
seconds per image of this process and its DataLoader workers together, so "images/s per 2 cores" does
not depend on what else runs here; on a CPU-only machine also the float16 hand-over that a CUDA device
gets (normalisation then runs on the GPU). All numbers come from one run; importing torch and
open_clip happens before, once, and is reported apart.

ViT-B/16 runs as the teacher ``random:ViT-B-16-quickgelu``: the paper's architecture with a seeded
random init (flagged random in the store's attrs). Random weights time the same as real ones.
Points are prepared with ``--points`` (default 2048, not the stage default 8192) to keep the
preparation short; the views (3 × 224² from a 2048-point subset) are the same size either way.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.storage.store import store_bytes

VIT = "random:ViT-B-16-quickgelu"  # the paper's teacher architecture with random weights


def build_views(data_root: Path, per_class: int, points: int) -> tuple[Path, int, float]:
    """Prepare and render a synthetic set; returns (views store, objects, seconds)."""
    from pipeline.core.params import PrepareParams, RenderParams
    from pipeline.prepare.points import prepare
    from pipeline.runner.execute import build_store

    start = time.perf_counter()
    prepared = prepare(PrepareParams(synthetic_per_class=per_class, points=points), data_root)
    views = build_store("render", RenderParams(views="fixed"), prepared.path, data_root)  # 3 images/object
    import zarr

    group = zarr.open_group(str(views), mode="r")
    n = sum(group[f"{s}/image"].shape[0] for s in group.attrs["splits"])
    return views, n, time.perf_counter() - start


def batch_sizes(views: Path, chunk: int, batch_size: int) -> list[int]:
    """The images per teacher call the stage makes: batches of batch_size across chunks and splits."""
    import zarr

    group = zarr.open_group(str(views), mode="r")
    images = sum(int(np.prod(group[f"{split}/image"].shape[:2])) for split in group.attrs["splits"])
    return [min(batch_size, images - b) for b in range(0, images, batch_size)]


def view_chunks(views: Path, chunk: int) -> list[tuple[str, int, int, int]]:
    """Every work chunk of the views store, as the stage lists them: (split, i, start, stop)."""
    import zarr

    group = zarr.open_group(str(views), mode="r")
    chunks = []
    for split in group.attrs["splits"]:
        n = group[f"{split}/image"].shape[0]
        chunks += [(split, i, s, min(n, s + chunk)) for i, s in enumerate(range(0, n, chunk))]
    return chunks


def _cpu() -> float:
    """CPU seconds of this process and its finished children (DataLoader workers once joined)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def feed_only(views: Path, args, device: str, raw: bool = False) -> tuple[float, float]:
    """(images/s, CPU seconds per image) of the feed without the teacher; ``raw``: float16 hand-over."""
    import torch

    from i2pmae.geometry import IMAGENET_MEAN, IMAGENET_STD
    from pipeline.features.feed import ViewBatches, teacher_batches

    chunks = view_chunks(views, args.chunk)
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    best_wall, best_cpu = math.inf, math.inf
    for _ in range(max(2, args.repeat)):  # the first pass also warms the page cache
        start, cpu, n = time.perf_counter(), _cpu(), 0
        if raw:
            loader = torch.utils.data.DataLoader(
                ViewBatches(str(views), chunks, 3, args.batch_size),
                batch_size=None,
                num_workers=args.num_workers,
            )
            n = sum(len(images) for _, images in loader)
        else:
            n = sum(
                len(b.images)
                for b in teacher_batches(
                    str(views), chunks, mean, std, device, args.batch_size, args.num_workers
                )
            )
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        best_wall = min(best_wall, time.perf_counter() - start)
        best_cpu = min(best_cpu, _cpu() - cpu)
    return n / best_wall, best_cpu / n


def bare_forward(teacher, views: Path, sizes: list[int], device: str) -> float:
    """Seconds for the teacher alone over batches of ``sizes`` images already normalised on the device."""
    import numpy as np
    import torch
    import zarr

    from i2pmae.geometry import IMAGENET_MEAN, IMAGENET_STD, normalise_images

    group = zarr.open_group(str(views), mode="r")
    raw = np.concatenate([group[f"{split}/image"][:] for split in group.attrs["splits"]])  # (n, V, H, W) f16
    raw = raw[: math.ceil(max(sizes) / raw.shape[1])]
    images = normalise_images(torch.from_numpy(raw.astype("float32")), IMAGENET_MEAN, IMAGENET_STD)
    images = images.flatten(0, 1).to(device)  # (n·V, 3, H, W)
    assert len(images) >= max(sizes), (len(images), max(sizes))

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.no_grad():
        teacher(images[: sizes[0]])  # warm-up: first-call allocations and kernel selection
        sync()
        start = time.perf_counter()
        for size in sizes:
            teacher(images[:size])
        sync()
    return time.perf_counter() - start


def run_teacher(name: str, weights: str | None, views: Path, n_objects: int, data_root: Path, args) -> dict:
    from pipeline.core.devices import resolve_device
    from pipeline.core.params import FeaturesParams
    from pipeline.features.teachers import load_teacher
    from pipeline.runner.execute import build_store

    params = FeaturesParams(
        teacher=name,
        weights=weights,
        chunk=args.chunk,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
    )
    device = resolve_device(args.device)
    sizes = batch_sizes(views, args.chunk, args.batch_size)
    start = time.perf_counter()
    teacher = load_teacher(name, weights, device, params.precision, offline=True)
    load = time.perf_counter() - start
    stage, bare = math.inf, math.inf
    for _ in range(args.repeat):  # alternate, keep the best of each: other load on the machine hits both
        start = time.perf_counter()
        features = build_store("cache-features", params, views, data_root)
        stage = min(stage, time.perf_counter() - start)
        if args.repeat > 1:
            shutil.rmtree(features)  # the next repeat computes it again
        bare = min(bare, bare_forward(teacher, views, sizes, device))
    if args.repeat > 1:
        features = build_store("cache-features", params, views, data_root)  # keep one for its size
    images = sum(sizes)
    return {
        "teacher": "ViT-B/16 (random)" if name == VIT else name,
        "objects": n_objects,
        "images": images,
        "batch": max(sizes),
        "stage_s": stage,
        "load_s": load,
        "stage_ips": images / stage,
        "bare_ips": images / bare,
        "features": features,
    }


def print_feed(views: tuple[Path, int], args, device: str) -> None:
    """The feed alone, on the largest views store built."""
    path, n = views
    rows = [(f"feed for {device} (read, normalise, to device)", *feed_only(path, args, device))]
    if not device.startswith("cuda"):
        rows.append(
            ("float16 hand-over (the CUDA path, before the GPU)", *feed_only(path, args, device, True))
        )
    for label, rate, cpu in rows:
        print(
            f"{label:<52} {rate:>7.0f} images/s, {cpu * 1e3:.2f} CPU ms per image = "
            f"{2 / cpu:.0f} images/s per 2 cores ({n} objects, {args.num_workers} workers; "
            f"load average {os.getloadavg()[0]:.1f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--teachers", nargs="+", choices=("tiny-random", "vit-b16"), default=["tiny-random", "vit-b16"]
    )
    parser.add_argument(
        "--tiny-objects", type=int, default=450, help="objects for tiny-random (rounded up to 15·k)"
    )
    parser.add_argument(
        "--vit-objects", type=int, default=32, help="objects for ViT-B/16 (rounded up to 15·k)"
    )
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--batch-size", type=int, default=64, help="stage default 64")
    parser.add_argument("--chunk", type=int, default=16, help="objects per chunk, stage default 16")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers, stage default 2")
    parser.add_argument("--points", type=int, default=2048, help="points per object for prepare")
    parser.add_argument("--repeat", type=int, default=1, help="runs of stage and bare, alternated; best kept")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data root")
    parser.add_argument("--feed-only", action="store_true", help="only the feed, no teacher")
    args = parser.parse_args()

    start = time.perf_counter()
    import open_clip  # noqa: F401 -- imported before the timings: a per-process cost, reported apart
    import torch

    from pipeline.core.devices import resolve_device

    imports = time.perf_counter() - start

    device = resolve_device(args.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here (use --device cpu or auto)")
    where = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"{os.cpu_count()} CPUs"
    print(
        f"cache-features benchmark on {device} ({where}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads; chunk {args.chunk}, batch_size {args.batch_size}, "
        f"num_workers {args.num_workers}; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"importing torch + open_clip: {imports:.1f} s (once per process; not in the timings below)")
    tmp = Path(tempfile.mkdtemp(prefix="i2p-bench-features-"))
    try:
        wanted = {"tiny-random": args.tiny_objects, "vit-b16": args.vit_objects}
        views = {}
        for per_class in sorted({max(2, math.ceil(wanted[t] / 15)) for t in args.teachers}):
            path, n, seconds = build_views(tmp, per_class, args.points)
            views[per_class] = (path, n)
            print(f"prepared + rendered {n} objects in {seconds:.1f} s (not timed below): {path.name}")
        feed_views = max(views.values(), key=lambda pn: pn[1])
        print()
        print_feed(feed_views, args, device)
        if args.feed_only:
            return
        rows = []
        for teacher in args.teachers:
            path, n = views[max(2, math.ceil(wanted[teacher] / 15))]
            rows.append(run_teacher(VIT if teacher == "vit-b16" else teacher, None, path, n, tmp, args))

        print()
        print(
            f"{'teacher':<18} {'objects':>7} {'images':>6} {'batch':>5} {'stage s':>8} {'(load s)':>8} "
            f"{'stage img/s':>11} {'bare img/s':>10} {'stage/bare':>10}"
        )
        for r in rows:
            print(
                f"{r['teacher']:<18} {r['objects']:>7} {r['images']:>6} {r['batch']:>5} {r['stage_s']:>8.2f} "
                f"{r['load_s']:>8.2f} {r['stage_ips']:>11.1f} {r['bare_ips']:>10.1f} "
                f"{r['stage_ips'] / r['bare_ips']:>10.2f}"
            )
        print("(load s: building the teacher alone, measured apart; it is inside stage s)")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        print()
        for path, n in views.values():
            print(f"views store ({n} objects): {store_bytes(path) / n / 1024:.1f} KiB per object on disk")
        for r in rows:
            print(
                f"features store, {r['teacher']}: {store_bytes(r['features']) / r['objects'] / 1024:.1f} KiB per object on disk"
            )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
