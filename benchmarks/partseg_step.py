"""Seconds and memory per part-segmentation batch (method §14), the paper's model at random init, and its
parameter count beside the reference model's (computed from the reference's layer shapes).

Runs the real ``pipeline.evaluate.partseg_loop.train_epoch`` (the reference's double step, and the
single-step fix) on random clouds for ``--steps`` batches after one warm-up batch, then one test pass
(``predict``) over the same number of batches. On CUDA it reports peak allocated GPU memory (and can use
bf16 autocast); on the CPU peak resident memory of the process. Prints the rates, the ratio double ÷
single, and an estimate of the full recipe (300 epochs of 14,007 shapes at batch 16, plus a test pass of
2,874 shapes per epoch) on this device.

    python benchmarks/partseg_step.py [--batch-size 16] [--points 2048] [--steps 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch

from i2pmae.model import I2PMAE, I2PMAEConfig
from i2pmae.partseg import PartSegConfig, PartSegmenter
from i2pmae.partseg_step import PartSegTrainConfig, predict
from i2pmae.schedule import param_groups
from pipeline.evaluate.partseg_loop import PartsegData, train_epoch

TRAIN, TEST, EPOCHS = 14007, 2874, 300  # ShapeNetPart trainval and test shapes, the recipe's epochs


def reference_parameters(encoder: int, dims=(96, 192, 384)) -> int:
    """The reference segmentation model's parameter count from its layer shapes: the pre-training encoder
    (with encoder_norms) + three propagation MLPs (d+3 → 1536 → 1024, conv + BN) + the label conv (no bias)
    and its BN + convs1..3 with BN (6208 → 1024 → 512 → 256) + convs4 (256 → 50)."""

    def conv_bn(i: int, o: int) -> int:
        return i * o + o + 2 * o

    props = sum(conv_bn(d + 3, 1536) + conv_bn(1536, 1024) for d in dims)
    head = conv_bn(6208, 1024) + conv_bn(1024, 512) + conv_bn(512, 256) + 256 * 50 + 50
    return encoder + props + 16 * 64 + 2 * 64 + head


def data(n: int, points: int) -> PartsegData:
    g = torch.Generator().manual_seed(0)
    return PartsegData(
        torch.rand(n, points + 500, 3, generator=g) * 2 - 1,
        torch.randint(0, 4, (n, points + 500), generator=g),
        torch.full((n,), points + 500),
        torch.zeros(n, dtype=torch.long),
    )


def measure(single: bool, args: argparse.Namespace) -> tuple[float, float]:
    """(seconds per training batch, seconds per test batch) after a warm-up batch."""
    torch.manual_seed(0)
    model = PartSegmenter(PartSegConfig()).to(args.device)
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=2e-4)
    cfg = PartSegTrainConfig(batch_size=args.batch_size, test_batch_size=args.batch_size, points=args.points,
                             single_step=single, precision=args.precision)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    warm, timed = data(args.batch_size, args.points), data(args.batch_size * args.steps, args.points)
    train_epoch(model, opt, warm, cfg, g, args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    train_epoch(model, opt, timed, cfg, g, args.device)
    sync()
    train_s = (time.perf_counter() - t0) / args.steps
    t0 = time.perf_counter()
    predict(model, timed.points, timed.parts, timed.count, timed.category, cfg, g, args.device)
    sync()
    return train_s, (time.perf_counter() - t0) / args.steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--points", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args()
    with torch.device("meta"):
        ours = sum(p.numel() for p in PartSegmenter(PartSegConfig()).parameters())
        encoder = sum(p.numel() for p in I2PMAE(I2PMAEConfig()).h_encoder.parameters())
    print(f"parameters: ours {ours:,}, the reference's layer shapes {reference_parameters(encoder):,}")
    name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"device {name}; batch {args.batch_size}, {args.points} points, {args.precision}; load {os.getloadavg()[0]:.1f}"
    )
    double = measure(False, args)
    if args.device.startswith("cuda"):
        peak = f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    else:
        peak = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    single = measure(True, args)
    print(f"double step (reference): {double[0]:.3f} s/batch train, {double[1]:.3f} s/batch test; {peak}")
    print(f"single step (fix):       {single[0]:.3f} s/batch train, {single[1]:.3f} s/batch test")
    print(f"double ÷ single: {double[0] / single[0]:.3f}")
    per_epoch = TRAIN // args.batch_size * double[0] + -(-TEST // args.batch_size) * double[1]
    print(
        f"full recipe on this device: {per_epoch:.0f} s per epoch, {EPOCHS * per_epoch / 3600:.1f} h for {EPOCHS} "
        f"epochs (batch {args.batch_size})"
    )


if __name__ == "__main__":
    main()
