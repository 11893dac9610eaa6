"""The views trade-off: fixed vs K augmented draws, against the official online step: how faithful is a cache?

    python benchmarks/draws.py                          # ViT-B/16 (random weights), K = 1 2 4 8, CPU
    python benchmarks/draws.py --teacher tiny-random --ks 1 2 --epochs 1   # a fast smoke run

On a synthetic dataset prepared by the pipeline (temporary data root), for the fixed views and for
K augmented draws per object, this builds the views and features stores with the real stages and
prints, from that one run:

* store bytes per object (views + features, every split) and teacher images per object;
* cache-features wall time for the whole set (teacher included: its share dominates on a CPU);
* how far the cached 2D branch is from the official online step on the same steps. For every train
  object and epoch the loader gives the cached mode's input (fixed: the 3D input is augmented here
  with a fresh scale and shift, as in training; augmented: the loader already applied the draw's).
  The official step on that very input projects it, runs the teacher on its views and reads its maps
  at the input's own points: that is the reference. Reported: the mean cosine of the 2D targets at
  the members of the visible tokens (mask drawn from the reference saliency), and the IoU of the 13
  top-scale centres the reference saliency and the cached saliency rank highest (the tokens 2D-guided
  masking favours, method §4).
* distinct augmented inputs of an object over the paper's 301 epochs: K for the draws, every step
  (301) for the fixed views and the online step. Fidelity and input diversity are the trade-off.

Rows: ``fixed`` (one unaugmented subset per object), ``augmented K=k`` (the default
``input_subset: draw``: the 3D input is the draw's own cloud, so the cached targets should equal the
online ones up to float16 storage) and ``augmented K=k fresh`` (a fresh subset each step with the
draw's scale and shift).

The teacher is ``random:ViT-B-16-quickgelu`` by default: the paper's architecture (C = 512, 14 × 14
maps) with random weights, so bytes and times are those of the real teacher; its maps are not CLIP's,
so the cosines describe the geometry of the views, not semantic similarity.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

VIT = "random:ViT-B-16-quickgelu"
TOP = 13  # tokens kept visible at the top scale: 64 − int(0.8·64) (method §4)


def build(data_root: Path, prepared: Path, views: str, k: int, teacher: str, workers: int) -> dict:
    """Render and cache one mode; its stores, bytes/object, images/object and cache seconds."""
    import zarr

    from pipeline.core.params import FeaturesParams, RenderParams
    from pipeline.runner.execute import build_store
    from pipeline.storage.store import store_bytes

    vpath = build_store("render", RenderParams(subset=2048, views=views, draws=k), prepared, data_root)
    start = time.perf_counter()
    fparams = FeaturesParams(teacher=teacher, num_workers=workers, batch_size=32)
    fpath = build_store("cache-features", fparams, vpath, data_root)
    seconds = time.perf_counter() - start
    group = zarr.open_group(str(vpath), mode="r")
    n = sum(group[f"{s}/image"].shape[0] for s in group.attrs["splits"])
    images = int(np.prod(group[f"{group.attrs['splits'][0]}/image"].shape[1:-2]))
    return {
        "views": vpath,
        "features": fpath,
        "bytes": (store_bytes(vpath) + store_bytes(fpath)) / n,
        "images": images,
        "seconds": seconds,
        "objects": n,
    }


def fidelity(
    points: Path, built: dict, teacher, n_objects: int, epochs: int, subset: str
) -> tuple[float, float]:
    """(mean target cosine, mean top-13 IoU) of the cached 2D branch against the official online step."""
    import torch
    import torch.nn.functional as F

    from i2pmae.augment import scale_and_translate
    from i2pmae.model import I2PMAE, I2PMAEConfig
    from i2pmae.pretrain import Batch, online_maps, saliency_fn, target_fn
    from pipeline.train.trainset import CachedShapes

    data = CachedShapes(
        str(points), str(built["views"]), str(built["features"]), "train", 2048, seed=1, input_subset=subset
    )
    model = I2PMAE(I2PMAEConfig(feat_dim_2d=built["channels"])).eval()
    cosines, ious = [], []
    for epoch in range(epochs):
        data.set_epoch(epoch)
        rows = [data[i] for i in range(min(n_objects, len(data)))]
        cached = Batch.from_item(torch.utils.data.default_collate(rows), torch.device("cpu"))
        if not data.augmented:  # the step's fresh augmentation of the 3D input (method §1.6)
            torch.manual_seed(1000 + epoch)
            cached.xyz = scale_and_translate(cached.xyz)
        with torch.no_grad():
            truth = online_maps(Batch(cached.xyz, None), teacher)  # the official 2D branch on this input
            groups = model.group(cached.xyz)
            idx = groups.top_center_point_idx
            s_true, s_cached = saliency_fn(truth)(idx).mean(1), saliency_fn(cached)(idx).mean(1)  # (B, G)
            top_t, top_c = s_true.topk(TOP, dim=1).indices, s_cached.topk(TOP, dim=1).indices
            for a, b in zip(top_t.tolist(), top_c.tolist(), strict=True):
                ious.append(len(set(a) & set(b)) / len(set(a) | set(b)))
            torch.manual_seed(epoch)
            enc = model.forward_encoder(groups, model.guided_mask(saliency_fn(truth)(idx)))
            members = model.visible_members(groups, enc.masks)
            t_true, t_cached = target_fn(truth)(*members), target_fn(cached)(*members)  # (L, K, V·C)
            V, C = truth.feature.shape[1:3]
            cos = F.cosine_similarity(
                t_true.reshape(*t_true.shape[:2], V, C), t_cached.reshape(*t_true.shape[:2], V, C), dim=-1
            )
            cosines.append(cos.mean().item())
    return float(np.mean(cosines)), float(np.mean(ious))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", default=VIT)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8], help="draws per object")
    ap.add_argument("--per-class", type=int, default=2, help="synthetic objects per class (15 classes)")
    ap.add_argument("--objects", type=int, default=16, help="train objects in the fidelity comparison")
    ap.add_argument("--epochs", type=int, default=2, help="epochs (steps per object) compared")
    ap.add_argument("--workers", type=int, default=2, help="cache-features DataLoader workers")
    ap.add_argument("--keep", type=Path, help="keep the stores in this folder (default: a temporary one)")
    args = ap.parse_args()

    import torch

    from pipeline.core.params import PrepareParams
    from pipeline.features.teachers import load_teacher
    from pipeline.prepare.points import prepare

    torch.set_num_threads(max(1, torch.get_num_threads()))
    root = args.keep or Path(tempfile.mkdtemp(prefix="i2p-draws-"))
    try:
        prepared = prepare(PrepareParams(synthetic_per_class=args.per_class, points=8192), root).path
        teacher = load_teacher(args.teacher, None, "cpu", "fp32", offline=True)
        modes = [("fixed", 1, "fresh")] + [("augmented", k, "draw") for k in args.ks]
        modes.append(("augmented", max(args.ks), "fresh"))  # a fresh subset with the draw's augmentation
        rows, builds = [], {}
        for views, k, subset in modes:
            if (views, k) not in builds:  # the fresh row reads the K-draw stores built above
                builds[views, k] = {
                    **build(root, prepared, views, k, args.teacher, args.workers),
                    "channels": teacher.channels,
                }
            built = builds[views, k]
            cos, iou = fidelity(prepared, built, teacher, args.objects, args.epochs, subset)
            rows.append((views, k, subset, built, cos, iou))
        print(
            f"teacher {args.teacher} | {rows[0][3]['objects']} objects | fidelity on {args.objects} train "
            f"objects × {args.epochs} epochs, against the official online step on the same input"
        )
        print(
            f"{'views':<22} {'KiB/object':>10} {'images/obj':>10} {'cache s':>8} {'s/object':>8} "
            f"{'target cos':>10} {'top-13 IoU':>10} {'augmentations/301 ep':>20}"
        )
        for views, k, subset, b, cos, iou in rows:
            name = (
                "fixed" if views == "fixed" else f"augmented K={k}" + (" fresh" if subset == "fresh" else "")
            )
            diversity = (
                "301 (3D only)"
                if views == "fixed"
                else (f"{k} (subsets: 301)" if subset == "fresh" else str(k))
            )
            print(
                f"{name:<22} {b['bytes'] / 1024:>10.0f} {b['images']:>10} {b['seconds']:>8.1f} "
                f"{b['seconds'] / b['objects']:>8.2f} {cos:>10.4f} {iou:>10.3f} {diversity:>20}"
            )
        print(
            "online (official step)  no store; the teacher runs 3 images per object and step (301 × 3 "
            "per object over the paper's schedule)"
        )
        per_draw = rows[1][3]["bytes"] if rows[1][1] == 1 else None
        if per_draw:
            print(
                f"ShapeNet-55 (52,470 objects) estimate: {per_draw * 52470 / 1e9:.1f} GB per draw "
                f"(× K for K draws); fixed views {rows[0][3]['bytes'] * 52470 / 1e9:.1f} GB"
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
