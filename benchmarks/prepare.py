"""Objects/s of prepare (synthetic and a ShapeNet-55-style npy release) and render, 1 vs 2 workers.

    python benchmarks/prepare.py                  # 450 objects (30 per class), P = 8192, oversample 4
    python benchmarks/prepare.py --per-class 6 --npy-objects 200    # shorter

Three scaling tables from one run: prepare of the synthetic source (meshes sampled and FPS'd),
prepare of a ShapeNet-55-style release (``shapenet_pc/<synset>-<model>.npy``, 8192 × 3 float32 each,
random points: reading costs the same whatever they hold), and render of the synthetic points store.

The meshes are generated once (timed on its own line) and every run reads the same ones from a fresh
data root in a temporary folder, so each run does the whole stage: scan, sampling, FPS, zarr writes and,
with 2 workers, starting the local dask cluster. All timings come from one run of this script; compare
the ratios, not the absolute numbers, between machines. "up to date" is a fresh ``i2p prepare`` process
that finds the store complete (imports included), as a user sees it. "CPU s" is this process's CPU
time plus that of the worker processes: when 2 workers do not beat 1 although their CPU time adds up to
about the same, other load on the machine took the second core.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.core.params import PrepareParams
from pipeline.prepare.points import prepare
from pipeline.sources import synthetic
from pipeline.storage.store import store_bytes


def same_store(a: Path, b: Path) -> bool:
    """True when two points stores hold the same arrays, element for element."""
    import zarr

    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    splits = ga.attrs["splits"]
    return splits == gb.attrs["splits"] and all(
        np.array_equal(ga[f"{s}/{k}"][:], gb[f"{s}/{k}"][:])
        for s in splits
        for k in ("points", "label", "id")
    )


def time_up_to_date(data_root: Path, params: PrepareParams) -> float:
    """Seconds of a fresh ``i2p prepare synthetic`` process that finds its store up to date."""
    cmd = [
        sys.executable,
        "-c",
        "import cli; cli.main()",
        "prepare",
        "synthetic",
        "--data-root",
        str(data_root),
    ]
    for key in ("points", "oversample", "fps", "synthetic_per_class", "seed", "chunk", "test_fraction"):
        cmd += ["--set", f"prepare.{key}={getattr(params, key)}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=data_root)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or "up to date" not in done.stderr + done.stdout:
        raise RuntimeError(f"the rerun did not find the store up to date:\n{done.stdout}{done.stderr}")
    return seconds


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the dask worker processes, once closed)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def write_npy_release(base: Path, n: int) -> Path:
    """A ShapeNet-55-style release of ``n`` objects (8192 points each, 80 % train) under ``base``."""
    rng = np.random.default_rng(0)
    (base / "shapenet_pc").mkdir(parents=True)
    (base / "ShapeNet-55").mkdir()
    ids = [
        f"{synset}-m{k}"
        for k in range(-(-n // 5))
        for synset in ("02691156", "02958343", "03001627", "04379243", "04530566")
    ][:n]
    for i in ids:
        np.save(base / "shapenet_pc" / f"{i}.npy", rng.normal(size=(8192, 3)).astype(np.float32))
    cut = int(0.8 * n)
    (base / "ShapeNet-55" / "train.txt").write_text("".join(f"{i}.npy\n" for i in ids[:cut]))
    (base / "ShapeNet-55" / "test.txt").write_text("".join(f"{i}.npy\n" for i in ids[cut:]))
    return base


def scaling(label: str, run, workers: list[int], n: int) -> dict[int, Path]:
    """Time ``run(workers) -> store`` for each worker count; print objects/s, CPU s and the ratio."""
    rows, stores = [], {}
    for w in workers:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        cpu, children = time.process_time(), _children_cpu()
        stores[w] = run(w)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        rows.append((w, seconds, n / seconds, cpu, _children_cpu() - children, load))
    print()
    print(f"{label}, {n} objects")
    print(
        f"{'workers':>7}  {'seconds':>8}  {'objects/s':>9}  {'CPU s main + workers':>20}  {'vs 1 worker':>11}  load"
    )
    for w, seconds, rate, cpu, kids, load in rows:
        print(
            f"{w:>7}  {seconds:>8.2f}  {rate:>9.1f}  {f'{cpu:.1f} + {kids:.1f}':>20}  "
            f"{rate / rows[0][2]:>10.2f}x  {load:.1f}"
        )
    return stores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=30, help="synthetic objects per class (15 classes)")
    parser.add_argument("--points", type=int, default=8192)
    parser.add_argument("--oversample", type=int, default=4)
    parser.add_argument("--fps", choices=("bucket", "exact"), default="bucket")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--npy-objects", type=int, default=400, help="objects of the npy release (0: skip)")
    parser.add_argument("--no-render", action="store_true", help="skip the render table")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data roots")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="i2p-bench-prepare-"))
    try:
        base = PrepareParams(
            synthetic_per_class=args.per_class, points=args.points, oversample=args.oversample, fps=args.fps
        )
        start = time.perf_counter()
        meshes = synthetic.ensure_dataset(
            tmp / "shared", base.seed, base.synthetic_per_class, base.test_fraction
        )
        generation = time.perf_counter() - start
        n_objects = sum(1 for _ in meshes.rglob("*.ply"))
        print(
            f"prepare benchmark: synthetic, {n_objects} objects, P={args.points}, oversample {args.oversample}, "
            f"fps {args.fps}, chunk {base.chunk}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"mesh generation (not in the timings below): {generation:.2f} s, {n_objects / generation:.1f} objects/s"
        )

        def run_prepare(workers: int) -> Path:
            root = tmp / f"workers-{workers}"
            (root / "sources").mkdir(parents=True)
            (root / "sources" / meshes.name).symlink_to(meshes, target_is_directory=True)  # reuse the meshes
            return prepare(base.model_copy(update={"workers": workers}), root).path

        stores = scaling("prepare, synthetic meshes", run_prepare, args.workers, n_objects)
        if args.npy_objects:
            release = write_npy_release(tmp / "release", args.npy_objects)
            npy = PrepareParams(source="shapenet", root=str(release))
            scaling(
                "prepare, ShapeNet-55-style npy release",
                lambda w: prepare(npy.model_copy(update={"workers": w}), tmp / f"npy-{w}").path,
                args.workers,
                args.npy_objects,
            )
        if not args.no_render:
            from pipeline.core.params import RenderParams
            from pipeline.runner.execute import build_store

            points_store = stores[args.workers[0]]
            scaling(
                "render (3 depth views of 2048 points per object and draw; default 4 augmented draws)",
                lambda w: build_store("render", RenderParams(workers=w), points_store, tmp / f"render-{w}"),
                args.workers,
                n_objects,
            )
        path = stores[args.workers[0]]
        total = store_bytes(path)
        points = sum(
            store_bytes(path / split / "points") for split in ("train", "test") if (path / split).is_dir()
        )
        print()
        print(
            f"points store: {total / n_objects / 1024:.1f} KiB per object on disk "
            f"({points / n_objects / 1024:.1f} KiB of it the points array; raw float32 "
            f"{args.points * 12 / 1024:.1f} KiB); {sum(1 for f in path.rglob('*') if f.is_file())} files"
        )
        if len(stores) > 1:
            same = all(same_store(path, other) for other in stores.values())
            print(f"stores of every worker count identical: {'yes' if same else 'NO'}")
        up = time_up_to_date(tmp / f"workers-{args.workers[0]}", base)
        print(f"rerun that finds the store up to date (fresh process): {up:.2f} s")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
