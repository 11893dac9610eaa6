"""Fixtures shared by several test modules (import none from another test module: ask for these, or
import the plain builders of tests/builders.py).

torch and the model are imported inside the fixtures, so collecting a test that needs neither stays cheap.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.builders import TINY_ENCODER


@pytest.fixture(autouse=True)
def _i2p_logger_as_found():
    """Every CLI command sets up the ``i2p`` logger (its own handler, no propagation), module fixtures too;
    each test starts and ends with the logger as imported (propagating, no handler), so that its ``caplog``
    sees the records whatever ran before it, and no handler outlives the stream it was given."""
    import logging

    log = logging.getLogger("i2p")

    def pristine() -> None:
        log.propagate, log.handlers[:] = True, []
        log.setLevel(logging.NOTSET)

    pristine()
    yield
    pristine()


@pytest.fixture(scope="session")
def tiny_encoder():
    """I2PMAEConfig of a tiny encoder (16/8/4 groups, widths 16/32/64, one block per scale): 64 points suffice."""
    from i2pmae.model import I2PMAEConfig

    return I2PMAEConfig(**TINY_ENCODER)


@pytest.fixture(scope="session")
def blob_clouds():
    """``make(n, P=64, seed=1)`` -> (n, P, 3) float32: clouds of classes 0, 1, 2, 0, ... (:func:`blob_cloud`)."""

    def make(n: int, P: int = 64, seed: int = 1) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.stack([blob_cloud(i % 3, rng, P) for i in range(n)])

    return make


def blob_cloud(c: int, rng: np.random.Generator, P: int) -> np.ndarray:
    """(P, 3) float32 in the unit sphere: class 0 a sphere, 1 a flat disc, 2 a needle, randomly stretched."""
    x = rng.normal(size=(P, 3)) * np.array([[1, 1, 1], [1, 0.03, 1], [0.05, 1, 0.05]])[c]
    x = x * rng.uniform(0.6, 1.0, 3)
    x -= x.mean(0)
    return (x / np.linalg.norm(x, axis=1).max()).astype(np.float32)


def write_points_store(data_root: Path, name: str, per_class: dict[str, int], P: int = 64) -> Path:
    """A complete points store of 3 classes (:func:`blob_cloud`) in the real schema, bound as dataset ``name``."""
    from tests.builders import write_labelled_store

    rng = np.random.default_rng(0)
    fp = f"{sum(map(ord, name)):08x}" + "0" * 56
    labels = {s: np.arange(3 * n) % 3 for s, n in per_class.items()}
    clouds = {s: np.stack([blob_cloud(int(c), rng, P) for c in y]) for s, y in labels.items()}
    ids = {s: [f"{c}/{s}{i}" for i, c in enumerate(y)] for s, y in labels.items()}
    return write_labelled_store(data_root, name, fp, ["ball", "disc", "needle"], clouds, labels, ids)


@pytest.fixture(scope="session")
def tiny_eval_root(tmp_path_factory, tiny_encoder) -> Path:
    """A data root with dataset ``blobs`` (train 8, test 4 objects per class, 64 points) and run ``fresh``:
    a checkpoint of the tiny encoder at its initialisation (BatchNorm running statistics never updated)."""
    root = tmp_path_factory.mktemp("bn-data")
    write_points_store(root, "blobs", {"train": 8, "test": 4})
    run_dir = root / "runs" / "fresh"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"params": {"points": 64}}))
    import torch

    from i2pmae.model import I2PMAE

    torch.manual_seed(0)
    torch.save(
        {
            "model": I2PMAE(tiny_encoder).state_dict(),
            "model_config": asdict(tiny_encoder),
            "train_params": {"points": 64},
            "epoch": 0,
            "step": 0,
        },
        run_dir / "ckpt-last.pt",
    )
    return root
