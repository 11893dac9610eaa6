#!/usr/bin/env bash
# The GPU figures docs/performance.md estimates, in one run (< 8 minutes on one H100/H200 with 16 cores), printed on stdout:
#   1. cached and online pre-training steps at batch 64 (2048 points), fp32 and bf16, peak GPU memory,
#      and the loader's samples/s with 8 workers against what the cached step consumes;
#   2. the loader alone (paper sizes, 0 and 8 workers) and its ratio to the shard reads' predecessor;
#   3. cache-features images/s against the bare teacher forward, ViT-B/16 (random weights) in fp16,
#      and the feed alone (read, hand-over, normalisation on the GPU);
#   4. a 5-step `torchrun --nproc-per-node 1` training run over NCCL.
#
#   bash benchmarks/gpu_check.sh [WHEELS_DIR]
#
# Needs the project's dependencies. A GPU machine without network gets them from a folder of wheels
# made beforehand on a machine with network and the same Python version (zarr, numcodecs, open_clip's
# and the CLI's dependencies; torch/torchvision are usually there already), e.g.
#   pip download -d wheels -c constraints.txt open_clip_torch zarr numcodecs typer rich pydantic pyyaml \
#       dask distributed trimesh h5py fpsample scipy scikit-learn matplotlib --no-deps
# Every figure is timed inside its own script; the load average is printed next to each section.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WHEELS="${1:-}"
if [[ -n "$WHEELS" ]]; then
    python -m pip install -q --no-index --find-links "$WHEELS" -e . --no-build-isolation --no-deps
    python -m pip install -q --no-index --find-links "$WHEELS" open_clip_torch zarr typer rich pydantic pyyaml \
        dask distributed trimesh h5py fpsample scipy scikit-learn matplotlib 2>&1 | tail -n 3
fi
python - <<'EOF' || { echo "CUDA is not available: nothing to check"; exit 1; }
import torch
assert torch.cuda.is_available()
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
nproc
ROOT="$(mktemp -d /tmp/i2p-gpu-check-XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
section() { echo; echo "== $1 (load average $(cut -d' ' -f1 /proc/loadavg))"; }

section "1. pre-training step, batch 64, fp32 and bf16 (budget 150 s)"
timeout 240 python benchmarks/train_step.py --device cuda --batch-size 64 --steps 3 --per-class 24 \
    --precisions fp32 bf16 --workers 8 --stage-workers 8 --data-root "$ROOT/step"

section "1b. bf16 against fp32: seconds per step and the loss difference, step by step"
timeout 240 python benchmarks/train_step.py --device cuda --batch-size 64 --steps 5 --precision-check \
    --data-root "$ROOT/step"

section "2. training loader, paper sizes (budget 60 s)"
timeout 150 python benchmarks/loader.py --per-class 24 --workers 0 8 --stage-workers 8 --data-root "$ROOT/loader"

section "3. cache-features vs bare teacher, ViT-B/16 fp16, and the feed alone (budget 90 s)"
timeout 200 python benchmarks/cache_features.py --device cuda --teachers vit-b16 --vit-objects 360 \
    --num-workers 8 --batch-size 64 --repeat 3

section "4. 5 steps under torchrun --nproc-per-node 1 (NCCL)"
SETS=(--set prepare.synthetic_per_class=6 --set cache-features.teacher=tiny-random --set train.batch_size=16
    --set train.run=gpu-check --set train.num_workers=4)
start=$(date +%s.%N)
timeout 240 python -m torch.distributed.run --nproc-per-node 1 cli.py train --dataset synthetic \
    --max-steps 5 --data-root "$ROOT/ddp" "${SETS[@]}" 2>&1 | grep -iE "nccl|error|step|resum" | tail -n 5
status=${PIPESTATUS[0]}
echo "torchrun exit status $status after $(echo "$(date +%s.%N) - $start" | bc) s (stores built inside)"
python - "$ROOT/ddp/runs/gpu-check/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(x) for x in open(sys.argv[1])]
print(f"metrics: {len(rows)} steps, last loss {rows[-1]['loss']:.4f}, {rows[-1]['samples_per_s']} samples/s")
EOF
