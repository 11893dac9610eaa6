"""Seconds per pre-training step: the 3D-only step, the cached I2P-MAE step and the official online step.

Three variants at the paper's sizes (2048 points, the default model), same batch objects and optimizer:

* ``3d-only``: random masking, 3D targets (Point-M2AE's step: no saliency, no 2D targets, no 2D head),
  fed by the points store alone;
* ``cached``: 2D-guided masking and 3D+2D targets from the cached teacher maps (``i2p train``'s default);
* ``online``: the paper's step, which projects each augmented input and runs the teacher (default
  ViT-B/16 with random weights: timing does not depend on the weights) inside the step.

The variants are timed interleaved (one step of each in turn, the order rotated every repeat, after one
warm-up round), so load on a shared machine hits them alike; it prints each variant's median seconds
per step and the ratios of the medians, cached ÷ 3D-only (the cost of the cached 2D branch: the paper's
code pays 2.2× for it, 42.6 h vs Point-M2AE's 19.1 h) and online ÷ 3D-only. Also: DataLoader samples/s
vs what the cached step consumes. Everything is measured in one run on this machine.

    python benchmarks/train_step.py [--device cuda] [--batch-size 8] [--repeats 5] [--threads 1] [--no-online]
    python benchmarks/train_step.py --device cuda --batch-size 64 --per-class 24 --precisions fp32 bf16 \
        --workers 8 --stage-workers 8       # the paper's batch on a GPU (benchmarks/gpu_check.sh)

On CUDA each variant and precision also prints the peak GPU memory of its steps.

``--precision-check`` (CUDA only) measures what ``train.precision=bf16`` does against the paper's fp32:
the same steps from the same weights, seeds and batches in both precisions, then the seconds per step
ratio and the relative difference of the losses, step by step.

    python benchmarks/train_step.py [--device cuda] [--batch-size 8] [--steps 3] [--precision-check]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from pipeline.core.config import load_config
from pipeline.features.teachers import load_teacher
from pipeline.runner.execute import run as run_plan
from pipeline.runner.plan import Context, plan
from pipeline.train.engine import train_step
from pipeline.train.setup import TrainInputs, setup
from pipeline.train.stage import train_inputs
from pipeline.train.trainset import CachedShapes

VARIANTS = ("3d-only", "cached", "online")


def machine(device: torch.device) -> str:
    """The CPU's (or GPU's) name, in words."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def timed_step(s, item, device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call of the training loop's own step function."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    tic, cpu = time.perf_counter(), time.process_time()
    train_step(s, item)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - tic, time.process_time() - cpu


def interleaved(setups: dict, batches: dict, repeats: int, device) -> dict[str, list[tuple[float, float]]]:
    """Per variant (wall, CPU) seconds of ``repeats`` steps, timed one variant after another in a
    rotating order (round 0, a warm-up of every variant, is not kept)."""
    names, times = list(setups), {name: [] for name in setups}
    for r in range(repeats + 1):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds = timed_step(setups[name], batches[name][r % len(batches[name])], device)
            if r > 0:
                times[name].append(seconds)
    return times


def median(times: list[tuple[float, float]], which: int) -> float:
    return statistics.median(t[which] for t in times)


def precision_check(params, inputs, batches, data_root, device) -> None:
    """fp32 vs bf16 autocast on the same steps: seconds per step and the losses' relative difference."""
    losses, seconds = {}, {}
    cuda = device.type == "cuda"
    for precision in ("fp32", "bf16"):
        s = setup(
            params.model_copy(update={"precision": precision if cuda else "fp32"}),
            inputs,
            data_root / "runs" / "bench",
            str(device),
        )
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
    print(
        f"precision check: fp32 {seconds['fp32']:.3f} s/step, bf16 {seconds['bf16']:.3f} s/step "
        f"(bf16 speed-up {seconds['fp32'] / seconds['bf16']:.2f}×)"
    )
    print("  loss per step fp32: " + " ".join(f"{x:.4f}" for x in losses["fp32"]))
    print("  loss per step bf16: " + " ".join(f"{x:.4f}" for x in losses["bf16"]))
    print(
        f"  relative loss difference: first step {rel[0]:.2e}, mean {sum(rel) / len(rel):.2e}, max {max(rel):.2e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--repeats", "--steps", type=int, default=5, help="timed steps per variant (after one warm-up round)"
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: 1 on CPU, torch's own on CUDA)"
    )
    ap.add_argument("--no-online", action="store_true", help="skip the online step (the slowest on a CPU)")
    ap.add_argument("--teacher", default="random:ViT-B-16-quickgelu", help="online teacher")
    ap.add_argument("--per-class", type=int, default=4, help="synthetic objects per class")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for the loader test")
    ap.add_argument("--data-root", type=Path, default=None, help="reuse stores here (default: a temp dir)")
    ap.add_argument(
        "--precisions",
        nargs="+",
        choices=("fp32", "bf16"),
        help="default: fp32, as i2p train (train.precision); bf16 is refused on CPU",
    )
    ap.add_argument("--stage-workers", type=int, default=1, help="prepare/render workers for the stores")
    ap.add_argument(
        "--precision-check",
        action="store_true",
        help="fp32 vs bf16 steps and losses (on CPU: the losses under CPU autocast only)",
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
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
    params = config.params("train").model_copy(
        update={"batch_size": args.batch_size}
    )  # setup checks full batches
    n = args.batch_size
    cached = CachedShapes(inputs.points, inputs.views, inputs.features, "train", params.points, params.seed)
    points_only = CachedShapes(
        inputs.points, None, None, "train", params.points, params.seed
    )  # 3D-only, online
    collate = torch.utils.data.default_collate
    rounds = min(args.repeats + 1, len(cached) // n)  # distinct batches; the rounds reuse them in turn
    cached_batches = [collate([cached[i] for i in range(k * n, (k + 1) * n)]) for k in range(rounds)]
    point_batches = [collate([points_only[i] for i in range(k * n, (k + 1) * n)]) for k in range(rounds)]
    if args.precision_check:  # on CPU only the losses mean something (CPU autocast), not the speeds
        precision_check(params, inputs, cached_batches, data_root, device)
        return
    precisions = args.precisions or ["fp32"]
    variants = [v for v in VARIANTS if v != "online" or not args.no_online]
    teacher = None
    if "online" in variants:
        teacher = load_teacher(
            args.teacher, None, str(device), "fp16" if device.type == "cuda" else "fp32", offline=True
        )
    points_inputs = TrainInputs(inputs.points, None, None, inputs.fingerprints, inputs.feature_channels)
    batches = {"3d-only": point_batches, "cached": cached_batches, "online": point_batches}
    load_before = os.getloadavg()
    results, peaks = {}, {}
    for precision in precisions:
        run_params = params.model_copy(update={"precision": precision})  # fp32 (the paper's) | bf16
        setups = {}
        for v in variants:  # seeds, model, optimizer: the same initial weights for the shared parameters
            arm = (
                run_params.model_copy(update={"masking": "random", "targets": "3d"})
                if v == "3d-only"
                else run_params
            )
            setups[v] = setup(
                arm,
                points_inputs if v == "3d-only" else inputs,
                data_root / "runs" / "bench",
                str(device),
                teacher=teacher if v == "online" else None,
            )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = interleaved(setups, {v: batches[v] for v in variants}, args.repeats, device)
        if device.type == "cuda":
            peaks[precision] = torch.cuda.max_memory_allocated(device) / 2**30
        for v in variants:
            results[v, precision] = median(times[v], 0)
            results[v, precision, "cpu"] = median(times[v], 1)
            results[v, precision, "spread"] = (min(t[0] for t in times[v]), max(t[0] for t in times[v]))
        del setups
    load_after = os.getloadavg()
    draws = torch.utils.data.RandomSampler(cached, replacement=True, num_samples=n * (2 * args.repeats + 1))
    loader = torch.utils.data.DataLoader(cached, batch_size=n, sampler=draws, num_workers=args.workers)
    tic, seen = time.perf_counter(), 0
    for k, item in enumerate(loader):
        seen += item["xyz"].shape[0]
        if k == 0:
            tic, seen = time.perf_counter(), 0  # exclude worker start-up
        if k >= 2 * args.repeats:
            break
    loader_rate = seen / (time.perf_counter() - tic) if seen else float("nan")
    step_rate = max(n / results["cached", p] for p in precisions)
    print(
        f"machine {machine(device)} | device {device} | torch threads {torch.get_num_threads()} | "
        f"batch {n} × {params.points} points | online teacher {args.teacher}"
    )
    print(
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after | {args.repeats} interleaved "
        f"steps per variant after one warm-up round; medians"
    )
    for p in precisions:
        peak = f" | peak GPU memory of the three {peaks[p]:.1f} GiB" if p in peaks else ""
        print(f"precision {p}{peak}")
        print("  variant   median wall s (min–max)    samples/s  ÷ 3d-only | median CPU s  ÷ 3d-only")
        for v in variants:
            wall, cpu, (lo, hi) = results[v, p], results[v, p, "cpu"], results[v, p, "spread"]
            print(
                f"  {v:<8} {wall:8.3f} ({lo:7.3f}–{hi:7.3f}) {n / wall:9.2f}  {wall / results['3d-only', p]:9.3f} |"
                f" {cpu:12.3f}  {cpu / results['3d-only', p, 'cpu']:9.3f}"
            )
        for v in variants[1:]:
            print(
                f"  {v} ÷ 3d-only: {results[v, p] / results['3d-only', p]:.3f} wall, "
                f"{results[v, p, 'cpu'] / results['3d-only', p, 'cpu']:.3f} CPU"
                + (" (goal ≤ 1.05)" if v == "cached" else "")
            )
    print(
        f"loader ({args.workers} workers) {loader_rate:8.1f} samples/s = {loader_rate / step_rate:.1f}× "
        "what the fastest cached step consumes"
    )


if __name__ == "__main__":
    main()
