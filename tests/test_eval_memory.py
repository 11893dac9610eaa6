"""Evaluation fits where training fits: test passes and few-shot folds follow the
batch size the user gives, and a few-shot fold reads only its own objects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from i2pmae.recipes import RECIPES, finetune_config
from tests.builders import write_classes_store

ROOT = Path(__file__).resolve().parents[1]


def test_a_given_batch_size_sets_the_test_batch_too():
    rec = RECIPES["modelnet40"]
    assert finetune_config(rec).test_batch_size == 64  # the paper's total_bs · 2 by default
    assert finetune_config(rec, batch_size=8).test_batch_size == 8
    assert finetune_config(rec, batch_size=8, test_batch_size=16).test_batch_size == 16


def test_test_passes_and_votes_run_at_the_given_batch_size():
    import torch

    from i2pmae.finetune import build_classifier
    from i2pmae.model import I2PMAEConfig
    from i2pmae.recipes import classifier_config
    from pipeline.evaluate.finetune_loop import finetune
    from tests.builders import TINY_ENCODER

    tiny = I2PMAEConfig(**{**TINY_ENCODER, "drop_path": 0.1})  # the shared tiny encoder, drop path as before
    rec = RECIPES["modelnet40"]
    cfg = finetune_config(rec, batch_size=4, epochs=1, points=32, votes=2)
    model = build_classifier(classifier_config(rec, 3, tiny, 32), None, seed=0)
    seen = {True: [], False: []}  # training mode -> batch sizes of forward passes
    model.register_forward_pre_hook(lambda m, args: seen[m.training].append(args[0].shape[0]))
    x, y = torch.rand(8, 40, 3) * 2 - 1, torch.arange(8) % 3
    finetune(model, x, y, torch.rand(10, 40, 3) * 2 - 1, torch.arange(10) % 3, cfg)
    assert seen[True] == [4, 4]  # 8 train objects, batch 4
    votes = 2 * 2  # two voting passes (last and best weights) of 2 votes each
    assert max(seen[False]) == 4 and sum(seen[False]) == 10 * (1 + votes)


def test_a_fewshot_fold_reads_only_its_own_objects(tmp_path):
    from pipeline.evaluate.extract import points_store
    from pipeline.evaluate.finetuning import rows_tensor, split_labels

    store = points_store(write_classes_store(tmp_path, "many", {"train": 6, "test": 2}, n_classes=4, P=16))
    split, rows, labels = split_labels(store, "train")
    assert len(rows) == 24 and labels.tolist() == (np.arange(24) % 4).tolist()
    pick = np.array([17, 3, 9])  # unsorted: returned in the order asked for
    got = rows_tensor(split, rows[pick]).numpy()
    assert got.shape == (3, 16, 3) and np.array_equal(got, np.asarray(split.points[:])[pick])


PROBE = """
import resource, sys
from typer.testing import CliRunner
sys.path.insert(0, {root!r})
from cli import app
out = CliRunner().invoke(app, {args!r})
print("EXIT", out.exit_code, out.output[-2000:] if out.exit_code else "")
print("PEAK_GB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
"""


@pytest.mark.slow
def test_a_fewshot_fold_at_batch_8_fits_in_a_few_gb(tmp_path):
    """5-way 10-shot, one fold, one epoch, batch 8, 1024 points, the paper's encoder at random init, CPU.

    History: 11.5 GB with the test batch fixed at 64; 4.2 GB with test passes at the given batch (one
    training step alone peaked at 3.6 GB: the scale-0 token embedding kept 8·512·48 members × 1,792
    float32 for backward, and glibc's heap held freed activations). Now the embedding's layers before
    second_conv's BatchNorm are recomputed in backward (same numbers, tests/test_recompute.py) and
    glibc's mmap threshold is fixed (pipeline.core.host_memory): measured 2.75 GB.
    """
    write_classes_store(tmp_path / "data", "fs", {"train": 10, "test": 20}, n_classes=5, P=8192)
    args = [
        "fewshot",
        "--random-init",
        "-d",
        "fs",
        "--way",
        "5",
        "--shot",
        "10",
        "--folds",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--data-root",
        str(tmp_path / "data"),
    ]
    code = PROBE.format(root=str(ROOT), args=args)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=1200,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"},
    )
    assert "EXIT 0" in done.stdout, done.stdout + done.stderr
    peak = float(done.stdout.split("PEAK_GB")[1].split()[0])
    print(json.dumps({"peak_rss_gb": peak}))
    assert peak < 3.0, f"peak RSS {peak:.2f} GB"
