"""Connects ``i2p train`` to the loop: resolve the stores, the device, DDP and the online teacher."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.runner import register, train_inputs

log = logging.getLogger("i2p")


@dataclass(frozen=True)
class Distributed:
    """What torchrun says about this process (read by the CLI from WORLD_SIZE / RANK / LOCAL_RANK)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0


def run_training(
    config: Config,
    data_root: Path,
    dataset: str,
    features: Path | None = None,
    dist: Distributed = Distributed(),
) -> Path:
    """Train one run; returns its directory."""
    import torch

    from pipeline.features import resolve_device, resolve_precision
    from pipeline.train import train

    params = config.params("train")
    inputs = train_inputs(config, data_root, dataset, features, {})
    device = resolve_device(params.device)
    if dist.world > 1:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
        if device.startswith("cuda"):
            device = f"cuda:{dist.local_rank}"
            torch.cuda.set_device(device)
    teacher = None
    if params.online_teacher:
        from pipeline.teachers import load_teacher

        teacher = load_teacher(
            params.online_teacher, None, device, resolve_precision("auto", device), offline=config.offline
        )
    run_dir = data_root / "runs" / params.run
    try:
        ckpt = train(params, inputs, run_dir, device, teacher, dist.rank, dist.world)
    finally:
        if dist.world > 1:
            torch.distributed.destroy_process_group()
    log.info("run %s: checkpoint %s", params.run, ckpt)
    return run_dir


@register("train")
def _run_train(config: Config, data_root: Path, dataset: str, inputs: dict[str, Path]) -> Path:
    return run_training(config, data_root, dataset)
