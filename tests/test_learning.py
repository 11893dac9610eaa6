"""Guard against regressions of what pre-training learns: a small run of benchmarks/learning_signal.py.

Slow (minutes on 2 CPU cores): run with ``-m slow``. Fixed seeds. The claim the method must one day show,
arm a (the knowing teacher) above arm d (random initialisation) under re-estimated BatchNorm statistics,
is a strict xfail: measured not to hold at CPU budgets. The positive control (arm o, a perfect teacher)
guards the path from teacher features to what the 3D model learns.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_signal.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("learning_signal", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="not reached on CPU budgets (docs/evaluation.md, 'With a teacher that knows more'): pre-training first makes the "
    "encoder's features worse than random weights, even with a perfect teacher; strict, so that the day it "
    "holds the suite says so",
)
def test_pretraining_with_the_knowing_teacher_beats_random_initialisation(tmp_path):
    bench = load_benchmark()
    results = bench.main(
        ["--seeds", "2", "--steps", "40", "--per-class", "12", "--arms", "ad", "--data-root", str(tmp_path)]
    )
    a = np.mean(results["acc"]["a"]["reestimate"])
    d = np.mean(results["acc"]["d"]["reestimate"])
    assert a > d, f"pre-trained {a:.3f} ≤ random init {d:.3f} (re-estimated BatchNorm statistics)"


@pytest.mark.slow
def test_a_perfect_teacher_is_learnt_through_the_2d_targets(tmp_path):
    """The positive control (arm o): 2D targets that are one code per class. Its loss_2d must fall clearly
    below the best class-agnostic prediction, which it can only do by telling the classes apart from the
    visible points; a broken path from teacher features to the 2D targets (targets of another object,
    misaligned views or slots) leaves it at that floor."""
    bench = load_benchmark()
    results = bench.main(
        ["--seeds", "1", "--steps", "300", "--per-class", "12", "--arms", "o", "--data-root", str(tmp_path)]
    )
    first, last = results["loss_2d"]["o"][0]
    floor = results["oracle_floor_2d"]
    assert last < 0.9 * floor < first, f"loss_2d {first:.4f} → {last:.4f}, class-agnostic floor {floor:.4f}"
