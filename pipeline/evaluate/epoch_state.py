"""The per-epoch resume file of the downstream trainings (fine-tuning, few-shot, part segmentation).

After every epoch a training writes its weights, optimizer, data generator and torch (and CUDA) RNG states
and whatever its loop keeps (history, best epoch) atomically; a rerun that finds the file continues after
its last epoch to the same numbers. Only tensors, numbers and plain containers are stored, so the file
reads with ``torch.load(weights_only=True)`` (:func:`pipeline.storage.safe_load.torch_load`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from pipeline.storage.safe_load import torch_load
from pipeline.storage.store import atomic_write_bytes


def save_epoch_state(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, g: torch.Generator, loop: dict
) -> None:
    """Write the training's state after an epoch to ``path``; ``loop``: the loop's own fields."""
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": g.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            **loop,
        },
        buffer,
    )
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_epoch_state(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, g: torch.Generator
) -> dict[str, Any]:
    """Restore what :func:`save_epoch_state` wrote into model, optimizer, generator and torch's RNG;
    returns the whole saved dict (the loop reads its own fields from it)."""
    saved = torch_load(path)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    g.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    if saved.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    return saved


def drop_epoch_state(path: Path) -> None:
    """Remove a finished training's state file, and its folder when no other training waits there."""
    path = Path(path)
    path.unlink(missing_ok=True)
    if path.parent.is_dir() and not any(path.parent.iterdir()):
        path.parent.rmdir()
