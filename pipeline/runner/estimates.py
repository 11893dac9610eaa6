"""Time and disk each step of ``i2p reproduce`` will take, estimated before anything runs (``--dry-run``).

Units of work (objects, images, training samples) times a per-unit cost. CPU costs are the ones
measured on the project's 2-core machine (docs/performance.md, docs/evaluation.md), scaled to this
machine's cores; GPU costs are the throughput model's **assumptions** until a GPU run measures them
(``benchmarks/gpu_check.sh``, ``benchmarks/partseg_step.py``). Object counts are the releases' published
sizes (or the stand-ins' for ``--quick``). Disk is the measured bytes per object of each store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# dataset → (train objects, test objects) of the public release (or the --quick stand-in)
SIZES = {
    "shapenet": (41952, 10518),
    "modelnet40": (9843, 2468),
    "modelnet40-resampled": (9843, 2468),
    "scanobjectnn-obj-bg": (2309, 581),
    "scanobjectnn-obj-only": (2309, 581),
    "scanobjectnn-pb-t50-rs": (11416, 2882),
    "shapenetpart": (14007, 2874),
    "synthetic": (360, 90),
    "synthetic-parts": (64, 16),
}
# seconds per unit: (one CPU core, measured here; one GPU, assumed by the throughput model)
COST = {
    "prepare": (31e-3, None),  # per mesh object (synthetic meshes: 32 objects/s on one core)
    "prepare-points": (2.5e-3, None),  # per object of a point release (npy, h5, txt)
    "render": (17e-3, None),  # per object and draw, 3 views
    "teacher": (1 / 3.7 * 2, 1 / 3000),  # per image, ViT-B/16 (3.7 images/s on 2 cores, fp32)
    "teacher-tiny": (31 / 5400 * 2, 1 / 30000),  # per image, the tiny teachers (5,400 images in 31 s)
    "encode": (0.05, 1e-4),  # per object, a frozen encoder's feature (assumed on both)
    "train": (3.1 / 8, 0.1 / 64),  # per sample of a step (batch 8 on one thread: 3.1 s; GPU ≤ 0.1 s at 64)
    "finetune": (0.3, 1.0e-3),  # per training sample, 1k points
    "partseg": (4.9 / 4 * 2, 185e9 / 20e12),  # per shape (batch 4 on 2 cores: 4.9 s; 185 GFLOP at 20 TFLOP/s)
}
KIB = 1024
DISK = {"prepare": 88.9 * KIB, "render": 49.6 * KIB, "cache-features": 590 * KIB}  # per object (and draw)


@dataclass(frozen=True)
class Estimate:
    seconds: float
    bytes: int
    how: str  # what the figure is made of


def machine() -> tuple[int, bool]:
    """(CPU cores, whether a CUDA GPU is visible)."""
    import torch

    return os.cpu_count() or 1, torch.cuda.is_available()


def estimate(step: Any, params: dict[str, Any], cores: int, gpu: bool) -> Estimate:
    """The estimate of one :class:`pipeline.runner.reproduce.Step`; ``params``: the stage's resolved params."""
    train, test = SIZES.get(step.dataset, (0, 0))
    objects, device = train + test, "GPU (assumed)" if gpu else f"{cores} CPU cores"

    def per(kind: str, units: float, cpu_parallel: bool = False) -> float:
        cpu, gpu_cost = COST[kind]
        if gpu and gpu_cost is not None:
            return units * gpu_cost
        return units * cpu / (max(cores - 1, 1) if cpu_parallel else max(cores / 2, 1))

    if step.stage == "prepare":
        meshes = params.get("source") in ("synthetic", "synthetic-parts", "folder")
        kind = "prepare" if meshes else "prepare-points"
        return Estimate(per(kind, objects, True), int(objects * DISK["prepare"]), f"{objects:,} objects")
    if step.stage == "train":
        k = int(params.get("draws", 4))
        teacher = "teacher-tiny" if str(params.get("teacher", "")).startswith("tiny") else "teacher"
        seconds = per("render", objects * k, True) + per(teacher, objects * k * 3)
        steps = params.get("max_steps")
        samples = (steps * params["batch_size"]) if steps else params["epochs"] * train
        disk = objects * k * (DISK["render"] + DISK["cache-features"]) + 10**9
        return Estimate(
            seconds + per("train", samples),
            int(disk),
            f"render + teacher for {objects:,} objects × {k} draws, {samples:,} training samples on {device}",
        )
    if step.stage == "eval":
        return Estimate(per("encode", objects), 0, f"features of {objects:,} objects")
    if step.stage == "finetune":
        epochs = params.get("epochs") or 300
        samples = min(epochs * train, (params.get("max_steps") or 10**12) * (params.get("batch_size") or 32))
        return Estimate(
            per("finetune", samples * (params.get("seeds") or 1)),
            0,
            f"{samples:,} samples × seeds on {device}",
        )
    if step.stage == "fewshot":
        settings = len(params.get("way", [5, 10])) * len(params.get("shot", [10, 20]))
        samples = settings * params.get("folds", 10) * (params.get("epochs") or 150) * 150
        if params.get("max_steps"):
            samples = (
                settings * params.get("folds", 10) * params["max_steps"] * (params.get("batch_size") or 32)
            )
        return Estimate(
            per("finetune", samples), 0, f"{samples:,} samples over {settings} settings on {device}"
        )
    if step.stage == "partseg":
        shapes = params["epochs"] * (train + test)
        if params.get("max_steps"):
            shapes = params["max_steps"] * params["batch_size"] + test
        return Estimate(per("partseg", shapes), 0, f"{shapes:,} shape passes on {device}")
    return Estimate(0.0, 0, "")


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
