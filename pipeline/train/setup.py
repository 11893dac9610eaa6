"""A pre-training run's set-up: seeds, the model and its optimizer, the position restored from
``ckpt-last.pt`` on resume, the loader of this rank's share of each batch. :mod:`pipeline.train.engine`
runs the loop on what :func:`setup` returns.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from i2pmae.model import I2PMAE, I2PMAEConfig
from i2pmae.pretrain import LossOnly
from i2pmae.schedule import param_groups
from pipeline.core.devices import check_training_precision
from pipeline.core.params import TrainParams
from pipeline.storage import rundir
from pipeline.storage.safe_load import torch_load
from pipeline.storage.train_state import TrainingError, restore_rng
from pipeline.train.trainset import CachedShapes, EpochSampler, batch_loader, maps_used

log = logging.getLogger("i2p")


@dataclass(frozen=True)
class TrainInputs:
    """The stores a run reads, and their fingerprints (recorded in config.yaml)."""

    points: str
    views: str | None
    features: str | None
    fingerprints: dict[str, str]
    feature_channels: int = 512


def build_model(params: TrainParams, channels: int, arch: dict[str, Any] | None = None) -> I2PMAE:
    """The paper's architecture with the run's ablation params; ``arch`` overrides config fields
    (smaller grouping for tests and benchmarks; checkpoints record the config used)."""
    cfg = I2PMAEConfig(
        drop_path=params.drop_path,
        mask_ratio=params.mask_ratio,
        masking=params.masking,
        targets=params.targets,
        fps_origin_rule=params.fps_origin_rule,
        feat_dim_2d=channels,
        **(arch or {}),
    )
    return I2PMAE(cfg)


@dataclass
class Setup:
    """Everything one run's loop holds: its params and directory, model, optimizer, data, device, this
    process's rank among ``world``, and where it starts (``resumed``: from the run's ckpt-last.pt)."""

    params: TrainParams
    run: Path
    rank: int
    world: int
    resumed: bool
    model: I2PMAE
    optimizer: Any
    dataset: CachedShapes
    sampler: EpochSampler
    loader: Any
    device: torch.device
    call: Any  # DDP(LossOnly(model)) under torchrun, else None (the model's own forward)
    teacher: Any
    position: dict[str, int]  # epoch, batch (within the epoch), step
    precision: str = "fp32"  # "bf16": the forward under bf16 autocast (CUDA or the CPU)


def setup(
    params: TrainParams,
    inputs: TrainInputs,
    run: Path,
    device: str,
    teacher: Any = None,
    rank: int = 0,
    world: int = 1,
    arch: dict[str, Any] | None = None,
    resume: bool = False,
) -> Setup:
    """Seed, build model and optimizer, restore ``ckpt-last.pt`` when ``resume``, build the loader.

    ``params.batch_size`` is the total over the ``world`` ranks (method §9.1: the official total batch is split
    across GPUs), each rank loading ``batch_size // world``; the lr and the steps per epoch do not depend on
    ``world``. Raises TrainingError when it does not split evenly, ConfigError for bf16 on a device other than CUDA or the CPU."""
    check_training_precision(params.precision, device)
    if params.batch_size % world:
        raise TrainingError(
            f"train.batch_size={params.batch_size} is the total over {world} processes and must split evenly: "
            f"batch_size % world == 0 ({params.batch_size} % {world} = {params.batch_size % world})",
            f"use a multiple of {world}, e.g. --batch-size {params.batch_size // world * world or world}",
        )
    for seed_fn in (torch.manual_seed, np.random.seed, random.seed):
        seed_fn(params.seed + rank)
    dev = torch.device(device)
    model = build_model(params, inputs.feature_channels, arch).to(dev)
    optimizer = torch.optim.AdamW(
        param_groups(model, params.weight_decay, params.decay_token_fix), lr=params.lr
    )
    position = {"epoch": 0, "batch": 0, "step": 0}
    if resume:
        state = torch_load(rundir.checkpoint(run))  # on the CPU: the RNG states stay there
        model.load_state_dict(state["model"])
        if state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        else:  # stripped by `i2p gc` or train.keep_optimizer=false: not an exact continuation
            log.warning(
                "%s holds no optimizer state: AdamW's moments restart from zero", rundir.checkpoint(run)
            )
        restore_rng(state, rank, world)
        position = {k: state[k] for k in position}
    call = None
    if world > 1:  # every parameter gets a gradient through LossOnly: no find_unused_parameters needed
        call = torch.nn.parallel.DistributedDataParallel(
            LossOnly(model), device_ids=[dev.index] if dev.type == "cuda" else None
        )
    dataset = CachedShapes(
        inputs.points,
        inputs.views,
        inputs.features,
        "train",
        params.points,
        params.seed,
        params.input_subset,
        maps_used(params.masking, params.targets),
    )
    sampler = EpochSampler(len(dataset), params.batch_size, params.seed, rank, world)
    if sampler.batches_per_epoch() == 0:
        raise TrainingError(
            f"{len(dataset)} training objects make no full batch of {params.batch_size}", "lower --batch-size"
        )
    loader = batch_loader(  # one worker reads this rank's share of a whole batch (pipeline/train/trainset.py)
        dataset,
        sampler,
        num_workers=min(params.num_workers, os.cpu_count() or 1),
        pin_memory=dev.type == "cuda",
        generator=torch.Generator(),  # own generator: keeps the global RNG exact
    )
    return Setup(
        params,
        run,
        rank,
        world,
        resume,
        model,
        optimizer,
        dataset,
        sampler,
        loader,
        dev,
        call,
        teacher,
        position,
        params.precision,
    )
