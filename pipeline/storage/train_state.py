"""What a pre-training checkpoint holds besides the weights: every rank's RNG state and the position.

Each rank draws its augmentation, masking and drop path from its own stream (seeded ``seed + rank``), so
an exact resume of a multi-process run needs every rank's state: :func:`gather_rng_states` collects them
on rank 0, which writes them all into ``ckpt-last.pt`` (``rng_ranks``, one entry per rank; ``rng`` is rank
0's, as single-process checkpoints have always held); on resume each rank restores its own entry.
"""

from __future__ import annotations

import io
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.core.errors import I2PError
from pipeline.storage import rundir


class TrainingError(I2PError):
    """Training cannot go on (non-finite loss, no full batch, a checkpoint mismatch)."""


def rng_state() -> dict[str, Any]:
    """This process's torch, numpy and python RNG states (and CUDA's when present), as tensors, numbers and
    tuples only, so that a checkpoint reads with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    state = {"torch": torch.get_rng_state(), "numpy": numpy, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]  # keys: a tensor, or a uint32 array in older checkpoints
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(world: int) -> list[dict[str, Any]] | None:
    """Every rank's :func:`rng_state`, in rank order, on rank 0 (None on the other ranks). Collective:
    every rank calls it. CUDA states are moved to the CPU (they are CPU byte tensors already)."""
    mine = rng_state()
    if world == 1:
        return [mine]
    import torch.distributed as dist

    rank = dist.get_rank()
    states: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(mine, states, dst=0)
    return states


def restore_rng(state: dict[str, Any], rank: int, world: int) -> None:
    """Restore this rank's RNG stream from a checkpoint; a checkpoint of another number of processes is
    an error (the per-rank streams would not continue)."""
    states = state.get("rng_ranks") or [state["rng"]]
    if len(states) != world:
        raise TrainingError(
            f"the checkpoint was written by {len(states)} training process(es); this run has {world}",
            f"resume with the same number of processes (torchrun --nproc-per-node {len(states)})",
        )
    set_rng_state(states[rank])


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: Any,
    params: Any,
    position: dict,
    rng_states: list[dict[str, Any]],
) -> None:
    """model, optimizer, every rank's RNG state, position {epoch, batch, step} and config, written atomically."""
    core = model.module if hasattr(model, "module") else model
    buffer = io.BytesIO()
    torch.save(
        {
            "model": core.state_dict(),
            "model_config": asdict(core.cfg),
            "train_params": params.model_dump(),
            "optimizer": optimizer.state_dict(),
            "scaler": None,
            "rng": rng_states[0],
            "rng_ranks": rng_states,
            **position,
        },
        buffer,
    )
    rundir.write_atomic(path, buffer.getvalue())
