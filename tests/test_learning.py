"""Guard against regressions of what pre-training learns: a small run of benchmarks/learning_signal.py.

Slow (minutes on 2 CPU cores): run with ``-m slow``. Fixed seeds; fails when the encoder pre-trained with
the knowing teacher (arm a) no longer beats its random initialisation (arm d) under re-estimated
BatchNorm statistics, the protocol that measures the encoder rather than the statistics' memory.
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
def test_pretraining_with_the_knowing_teacher_beats_random_initialisation(tmp_path):
    bench = load_benchmark()
    results = bench.main(
        ["--seeds", "2", "--steps", "40", "--per-class", "12", "--arms", "ad", "--data-root", str(tmp_path)]
    )
    a = np.mean(results["acc"]["a"]["reestimate"])
    d = np.mean(results["acc"]["d"]["reestimate"])
    assert a > d, f"pre-trained {a:.3f} ≤ random init {d:.3f} (re-estimated BatchNorm statistics)"
