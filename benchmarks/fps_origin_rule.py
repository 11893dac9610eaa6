"""How much the pointnet2 FPS rule near the origin changes the encoder's centres (method §12.3).

    python benchmarks/fps_origin_rule.py                        # prepares synthetic (10 per class) in a temp root
    python benchmarks/fps_origin_rule.py --store PATH.zarr      # any prepared points store

The official FPS (pointnet2_ops) never picks a point with |p|² ≤ 1e-3 after index 0; ours does unless
``train.fps_origin_rule`` is on. For every object of the store this groups the encoder's input — the first
``--points`` stored points (stores sampled from meshes keep FPS order, so these are an FPS sample; a store in
a release's order is FPS-sampled from index 0 first, as ``eval svm`` does) — at the paper's three scales
(512 / 256 / 64 centres), once with the rule and once without, and counts the clouds with a point within
0.032 of the origin and the clouds whose centre set changes at each scale. The same again on one seeded
pre-training draw of each cloud (ScaleAndTranslate 2/3–3/2, ±0.2, method §1.6: the shift moves the origin).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

GROUPS, SIZES = (512, 256, 64), (16, 8, 8)  # the paper's pre-training and SVM grouping (method §2)


def encoder_inputs(store_path: Path, points: int) -> dict[str, torch.Tensor]:
    """Per split: (O, points, 3) float32, the points the encoder sees (:func:`extract.feature_points`)."""
    from i2pmae.evaluate import select_points
    from pipeline.evaluate.extract import feature_points, points_store

    store = points_store(store_path)
    n, how, _ = feature_points(store, points, points)
    out = {}
    for split in store.splits:
        xyz = torch.from_numpy(np.asarray(store.split(split).points[:], dtype=np.float32))
        out[split] = torch.cat([select_points(xyz[i : i + 64], n, how) for i in range(0, len(xyz), 64)])
    return out


def changed(xyz: torch.Tensor, batch: int = 32) -> tuple[int, list[int]]:
    """(clouds with a point |p|² ≤ 1e-3, clouds whose centre set differs at scale 0, 1, 2)."""
    from i2pmae.ops import POINTNET2_ORIGIN_EPS
    from i2pmae.tokenizer import group_multiscale

    near = int(((xyz * xyz).sum(-1) <= POINTNET2_ORIGIN_EPS).any(1).sum())
    per_scale = [0, 0, 0]
    for i in range(0, len(xyz), batch):
        x = xyz[i : i + batch]
        off = group_multiscale(x, GROUPS, SIZES).center_point_idx
        on = group_multiscale(x, GROUPS, SIZES, POINTNET2_ORIGIN_EPS).center_point_idx
        for s in range(3):
            a, b = off[s].sort(1).values, on[s].sort(1).values
            per_scale[s] += int((a != b).any(1).sum())
    return near, per_scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, help="a prepared points store (default: prepare synthetic here)")
    ap.add_argument("--per-class", type=int, default=10, help="synthetic objects per class (no --store)")
    ap.add_argument("--points", type=int, default=2048, help="encoder input points (the paper's 2048)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the pre-training draws")
    args = ap.parse_args()
    tmp = None
    if args.store is None:
        from pipeline.core.params import PrepareParams
        from pipeline.prepare.points import prepare

        tmp = Path(tempfile.mkdtemp(prefix="fps-origin-"))
        args.store = prepare(PrepareParams(synthetic_per_class=args.per_class), tmp).path
    try:
        from i2pmae.augment import scale_and_translate

        t0 = time.perf_counter()
        inputs = encoder_inputs(args.store, args.points)
        print(f"store {args.store}: {args.points} encoder points, centres {GROUPS}")
        print(
            "| input | split | clouds | with a point within 0.032 of the origin | centre set changed at scale 0 / 1 / 2 |"
        )
        print("|---|---|---|---|---|")
        g = torch.Generator().manual_seed(args.seed)
        for what in ("stored", "pre-training draw"):
            for split, xyz in inputs.items():
                x = xyz if what == "stored" else scale_and_translate(xyz.clone(), generator=g)
                near, scales = changed(x)
                print(f"| {what} | {split} | {len(x)} | {near} | {' / '.join(map(str, scales))} |")
        print(f"({time.perf_counter() - t0:.0f} s)")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
