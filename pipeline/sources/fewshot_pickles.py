"""The Point-BERT few-shot release (``ModelNetFewshot/<way>way_<shot>shot/<fold>.pkl``, method §1.5)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import LayoutError
from pipeline.storage.safe_load import load_pickle


def read_fewshot_pickle(root: Path, way: int, shot: int, fold: int) -> tuple[Any, Any, Any, Any, tuple]:
    """One Point-BERT few-shot episode, ``<root>/[ModelNetFewshot/]<way>way_<shot>shot/<fold>.pkl``:
    lists of (points (8192, 6), label 0..way-1, original class). xyz only, centred and scaled into the
    unit sphere as the paper's loader does (method §1.5)."""
    import torch

    candidates = [
        Path(root) / f"{way}way_{shot}shot" / f"{fold}.pkl",
        Path(root) / "ModelNetFewshot" / f"{way}way_{shot}shot" / f"{fold}.pkl",
    ]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise LayoutError(
            f"few-shot episode missing: expected {candidates[0]}", "point --episodes at ModelNetFewshot/"
        )
    try:
        data = load_pickle(path, "few-shot episode")  # arrays and plain containers only: nothing runs
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise LayoutError(
            f"cannot read few-shot episode {path}: {type(err).__name__}: {err}", "download the episodes again"
        ) from None
    out = []
    for split in ("train", "test"):
        items = data.get(split) if isinstance(data, dict) else None
        if not items:
            raise LayoutError(f"{path}: expected a dict with a non-empty {split!r} list")
        xyz = np.stack([np.asarray(it[0], dtype=np.float32)[:, :3] for it in items])
        xyz = xyz - xyz.mean(axis=1, keepdims=True)
        xyz /= np.linalg.norm(xyz, axis=2).max(axis=1)[:, None, None]
        out += [torch.from_numpy(xyz), torch.tensor([int(it[1]) for it in items])]
    classes = tuple(sorted({int(it[2]) for it in data["train"]}))
    return (*out, classes)
