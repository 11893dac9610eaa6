"""Seconds per pre-training step: cached teacher features vs the teacher run inside the step.

Both modes use the same model, batch, points and optimizer; the online mode renders the three views
and runs the teacher (default ViT-B/16 with random weights: timing does not depend on the weights) in
every step, as the paper's code does. Also: DataLoader samples/s vs what the cached step consumes.
Everything is measured in one run on this machine; prints ratios.

    python benchmarks/train_step.py [--device cuda] [--batch-size 8] [--steps 3]
    python benchmarks/train_step.py --device cuda --batch-size 64 --per-class 24 --precisions fp32 bf16 \
        --workers 8 --stage-workers 8       # the paper's batch on a GPU (benchmarks/gpu_check.sh)

On CUDA each mode and precision also prints the peak GPU memory of its steps.

``--precision-check`` (CUDA only) measures what ``train.precision=bf16`` does against the paper's fp32:
the same steps from the same weights, seeds and batches in both precisions, then the seconds per step
ratio and the relative difference of the losses, step by step.

    python benchmarks/train_step.py [--device cuda] [--batch-size 8] [--steps 3] [--precision-check]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from pipeline.core.config import load_config  # noqa: E402
from pipeline.runner.execute import run as run_plan  # noqa: E402
from pipeline.train.engine import setup, train_step  # noqa: E402
from pipeline.train.stage import train_inputs  # noqa: E402
from pipeline.runner.plan import Context, plan  # noqa: E402
from pipeline.features.teachers import load_teacher  # noqa: E402
from pipeline.train.trainset import CachedShapes  # noqa: E402


def time_steps(s, batches, device) -> float:  # noqa: ANN001
    """Mean seconds per step of the training loop's own step function after one warm-up step."""
    times = []
    for k, item in enumerate(batches):
        if device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        train_step(s, item)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k > 0:
            times.append(time.perf_counter() - tic)
    return sum(times) / len(times)


def precision_check(params, inputs, batches, data_root, device) -> None:  # noqa: ANN001
    """fp32 vs bf16 autocast on the same steps: seconds per step and the losses' relative difference."""
    losses, seconds = {}, {}
    cuda = device.type == "cuda"
    for precision in ("fp32", "bf16"):
        s = setup(params.model_copy(update={"precision": precision if cuda else "fp32"}), inputs,
                  data_root / "runs" / "bench", str(device))  # fmt: skip
        s.precision = precision  # on CPU: bf16 autocast of the same step (i2p train refuses it there: slow)
        times, losses[precision] = [], []
        for k, item in enumerate(batches):
            if cuda:
                torch.cuda.synchronize()
            tic = time.perf_counter()
            losses[precision].append(train_step(s, item)[0].loss.item())
            if cuda:
                torch.cuda.synchronize()
            if k > 0:
                times.append(time.perf_counter() - tic)
        seconds[precision] = sum(times) / len(times)
    rel = [abs(b - a) / abs(a) for a, b in zip(losses["fp32"], losses["bf16"], strict=True)]
    print(f"precision check: fp32 {seconds['fp32']:.3f} s/step, bf16 {seconds['bf16']:.3f} s/step "
          f"(bf16 speed-up {seconds['fp32'] / seconds['bf16']:.2f}×)")  # fmt: skip
    print("  loss per step fp32: " + " ".join(f"{x:.4f}" for x in losses["fp32"]))
    print("  loss per step bf16: " + " ".join(f"{x:.4f}" for x in losses["bf16"]))
    print(f"  relative loss difference: first step {rel[0]:.2e}, mean {sum(rel) / len(rel):.2e}, max {max(rel):.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per mode (after one warm-up)")
    ap.add_argument("--teacher", default="random:ViT-B-16-quickgelu", help="online teacher")
    ap.add_argument("--per-class", type=int, default=2, help="synthetic objects per class")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for the loader test")
    ap.add_argument("--data-root", type=Path, default=None, help="reuse stores here (default: a temp dir)")
    ap.add_argument(
        "--precisions",
        nargs="+",
        choices=("fp32", "bf16"),
        help="default: fp32, as i2p train (train.precision); bf16 is refused on CPU",
    )
    ap.add_argument("--stage-workers", type=int, default=1, help="prepare/render workers for the stores")
    ap.add_argument("--precision-check", action="store_true",
                    help="fp32 vs bf16 steps and losses (on CPU: the losses under CPU autocast only)")  # fmt: skip
    args = ap.parse_args()
    device = torch.device(args.device)
    data_root = args.data_root or Path(tempfile.mkdtemp(prefix="i2p-bench-"))
    config = load_config(
        overrides=[
            f"prepare.synthetic_per_class={args.per_class}",
            f"prepare.workers={args.stage_workers}",
            f"render.workers={args.stage_workers}",
            "cache-features.teacher=tiny-random",
            f"cache-features.device={args.device}",
            "train.num_workers=0",
        ]
    )
    ctx = Context(config, data_root, "synthetic", offline=True)
    p = plan("train", ctx)
    for need in p.needs.values():
        run_plan(need, ctx)
    inputs = train_inputs(p)
    params = config.params("train").model_copy(update={"batch_size": args.batch_size})  # setup checks full batches
    n = args.batch_size
    cached = CachedShapes(inputs.points, inputs.views, inputs.features, "train", params.points, params.seed)
    online = CachedShapes(inputs.points, None, None, "train", params.points, params.seed)  # the official step: points only
    collate = torch.utils.data.default_collate
    cached_batches = [collate([cached[i] for i in range(k * n, (k + 1) * n)]) for k in range(args.steps + 1)]
    online_batches = [collate([online[i] for i in range(k * n, (k + 1) * n)]) for k in range(args.steps + 1)]
    if args.precision_check:  # on CPU only the losses mean something (CPU autocast), not the speeds
        precision_check(params, inputs, cached_batches, data_root, device)
        return
    precisions = args.precisions or ["fp32"]
    teacher = load_teacher(args.teacher, None, str(device), "fp16" if device.type == "cuda" else "fp32", offline=True)
    results, peaks = {}, {}
    for precision in precisions:
        run_params = params.model_copy(update={"precision": precision})  # fp32 (the paper's) | bf16
        for mode, batches, t in (("cached", cached_batches, None), ("online", online_batches, teacher)):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            s = setup(run_params, inputs, data_root / "runs" / "bench", str(device), teacher=t)  # seeds, model, optimizer
            results[mode, precision] = time_steps(s, batches, device)
            if device.type == "cuda":
                peaks[mode, precision] = torch.cuda.max_memory_allocated(device) / 2**30
            del s
    loader = torch.utils.data.DataLoader(
        cached, batch_size=n, shuffle=True, num_workers=args.workers, drop_last=True, persistent_workers=False
    )
    tic, seen = time.perf_counter(), 0
    for k, item in enumerate(loader):
        seen += item["xyz"].shape[0]
        if k == 0:
            tic, seen = time.perf_counter(), 0  # exclude worker start-up
        if k >= 2 * args.steps:
            break
    loader_rate = seen / (time.perf_counter() - tic) if seen else float("nan")
    step_rate = max(n / results["cached", p] for p in precisions)
    print(f"device {device} | batch {n} × {params.points} points | online teacher {args.teacher}")
    for p in precisions:
        for mode in ("cached", "online"):
            peak = f", peak GPU memory {peaks[mode, p]:.1f} GiB" if (mode, p) in peaks else ""
            seconds = results[mode, p]
            print(f"{mode:<7} step {p}  {seconds:8.3f} s   ({n / seconds:8.2f} samples/s){peak}")
        print(f"speed-up cached vs online, {p}: {results['online', p] / results['cached', p]:.2f}×")
    print(
        f"loader ({args.workers} workers) {loader_rate:8.1f} samples/s = {loader_rate / step_rate:.1f}× "
        "what the fastest cached step consumes"
    )


if __name__ == "__main__":
    main()
