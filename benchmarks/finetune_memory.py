"""Peak host memory and seconds per fine-tuning step: the scale-0 embedding recomputed or kept, glibc's
mmap threshold fixed or left to glibc (docs/evaluation.md, "Host memory"). CPU, the paper's classifier at random init.

Each of the four variants runs in a fresh process (peak RSS is per process): the real
``pipeline.evaluate.finetune_loop.train_epoch`` on random clouds for ``--steps`` steps after one warm-up step.
Prints peak RSS, wall and CPU seconds per step, the load average, then the ratios.

    python benchmarks/finetune_memory.py [--batch-size 8] [--steps 3] [--points 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
import torch
from i2pmae.finetune import build_classifier
from pipeline.evaluate.finetune_loop import train_epoch
from i2pmae.model import I2PMAEConfig
from i2pmae.recipes import RECIPES, classifier_config, finetune_config
from pipeline.core.host_memory import return_freed_tensors
recompute, fixed, B, P, steps = {recompute}, {fixed}, {batch}, {points}, {steps}
if fixed:
    assert return_freed_tensors()
torch.set_num_threads(2)
rec = RECIPES["modelnet40"]
model = build_classifier(classifier_config(rec, 5, I2PMAEConfig(), P), None, 0)
model.h_encoder.token_embed[0].recompute = recompute
cfg = finetune_config(rec, batch_size=B, points=P)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
g = torch.Generator().manual_seed(0)
x, y = torch.rand(B * (steps + 1), 2 * P, 3, generator=g) * 2 - 1, torch.arange(B * (steps + 1)) % 5
train_epoch(model, opt, x[:B], y[:B], cfg, g, "cpu")  # warm-up step
t0, c0 = time.perf_counter(), time.process_time()
train_epoch(model, opt, x[B:], y[B:], cfg, g, "cpu")
wall, cpu = (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print(json.dumps({{"peak_gb": peak, "wall_s": wall, "cpu_s": cpu}}))
"""


def run(recompute: bool, fixed: bool, args: argparse.Namespace) -> dict:
    code = CHILD.format(
        recompute=recompute, fixed=fixed, batch=args.batch_size, points=args.points, steps=args.steps
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["load"] = os.getloadavg()[0]
    name = f"embedding {'recomputed' if recompute else 'kept      '}, mmap threshold {'fixed' if fixed else 'glibc'}"
    print(
        f"{name}: peak RSS {res['peak_gb']:.2f} GB, {res['wall_s']:.2f} s/step wall, "
        f"{res['cpu_s']:.2f} CPU s/step (load {res['load']:.1f})",
        flush=True,
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant, after one warm-up step")
    ap.add_argument("--points", type=int, default=1024)
    args = ap.parse_args()
    r = {(rc, fx): run(rc, fx, args) for rc in (False, True) for fx in (False, True)}
    base, new = r[(False, False)], r[(True, True)]
    print(
        f"peak RSS: {base['peak_gb']:.2f} → {new['peak_gb']:.2f} GB ({new['peak_gb'] / base['peak_gb']:.2f}×); "
        f"recomputing alone {r[(True, False)]['peak_gb']:.2f}, the fixed threshold alone {r[(False, True)]['peak_gb']:.2f}"
    )
    for key, what in (("cpu_s", "CPU"), ("wall_s", "wall")):
        print(
            f"{what} time per step, recomputed / kept: {r[(True, True)][key] / r[(False, True)][key]:.2f}× "
            f"(threshold fixed), {r[(True, False)][key] / r[(False, False)][key]:.2f}× (glibc); "
            f"fixed / glibc threshold: {r[(False, True)][key] / r[(False, False)][key]:.2f}× (kept), "
            f"{r[(True, True)][key] / r[(True, False)][key]:.2f}× (recomputed)"
        )


if __name__ == "__main__":
    main()
