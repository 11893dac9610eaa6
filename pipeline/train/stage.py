"""The train stage: a planned run → device, DDP, online teacher, config.yaml → :func:`pipeline.train.engine.fit`.

A run behaves like a stage (the runner skips it when it is up to date): an unfinished run with a
checkpoint continues from it, exactly; a run that never wrote a checkpoint starts again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.params import TrainParams
from pipeline.storage import rundir
from pipeline.storage.contract import Context, Plan, Reads

log = logging.getLogger("i2p")


def train_inputs(plan: Plan):
    """The stores of a planned run (views/features None when the run reads none) and their fingerprints."""
    import zarr

    from pipeline.train.setup import TrainInputs

    paths = {s: str(p.out) for s, p in plan.needs.items()}
    fps = {s: p.fingerprint for s, p in plan.needs.items()}
    channels = 512
    if "cache-features" in paths:
        group = zarr.open_group(paths["cache-features"], mode="r")
        channels = int(group[f"{group.attrs['splits'][0]}/feature"].shape[-3])  # (O, [K,] V, C, h, w)
        if group.attrs["teacher"].get("random_weights"):
            log.warning(
                "training on features of a RANDOM-weight teacher (%s): fine for smoke runs only",
                group.attrs["teacher"].get("name"),
            )
    return TrainInputs(paths["prepare"], paths.get("render"), paths.get("cache-features"), fps, channels)


def warn_if_warmup_only(params: TrainParams, n_objects: int, world: int = 1) -> None:
    """Warn when every epoch this run trains lies in the warm-up (lr never near its peak), with the numbers."""

    per_epoch = max(n_objects // params.batch_size, 1)  # batch_size is the total over ranks
    last = params.epochs - 1
    if params.max_steps is not None:
        last = min(last, (params.max_steps - 1) // per_epoch)
    lr = params.lr_at(last)
    if params.warmup_epochs > 0 and last <= params.warmup_epochs and lr < 0.5 * params.lr:
        log.warning(
            "this run trains epochs 0..%d, inside the %d-epoch warm-up: lr stays ≤ %.2g (peak lr %.2g); "
            "for a short run use --set train.warmup_epochs=0 (and train.cosine_to_end=true)",
            last,
            params.warmup_epochs,
            lr,
            params.lr,
        )


def fit_to_store(params: TrainParams, n_objects: int, stored: int, world: int = 1) -> TrainParams:
    """A small store: every stored point when it holds fewer than train.points (e.g. `prepare --points
    1024`), and one batch of every training object when there are fewer than train.batch_size; each
    with a warning that names the explicit setting. The run's identity keeps the params as given."""
    floor = TrainParams.model_fields["points"].metadata[0].ge  # the 512 scale-0 groups need 512 points
    if stored < floor:
        raise ConfigError(
            f"the points store holds {stored} points per object; training needs at least {floor}",
            f"prepare the dataset with --points {floor} or more",
        )
    if stored < params.points:
        log.warning(
            "train.points=%d but the points store holds %d per object: each step uses all %d "
            "(a new run with --set train.points=%d says so explicitly)",
            params.points,
            stored,
            stored,
            stored,
        )
        params = params.model_copy(update={"points": stored})
    fitting = (n_objects // world) * world
    if 0 < fitting < params.batch_size:
        log.warning(
            "train.batch_size=%d but the train split holds %d objects: each step uses %d "
            "(a new run with --batch-size %d says so explicitly)",
            params.batch_size,
            n_objects,
            fitting,
            fitting,
        )
        params = params.model_copy(update={"batch_size": fitting})
    return params


def run_config(plan: Plan, inputs: Any, reads: Reads | None = None) -> dict[str, Any]:
    """config.yaml: identity, params, runtime params, seed, dataset, stores, teacher, code, machine
    (``reads``: the command's, which has read the stores' attrs when it planned)."""
    from pipeline.storage.provenance import code_version, machine_info, teacher_record

    attrs = {s: (reads or Reads()).state(p.out, progress=False).attrs for s, p in plan.needs.items()}
    config = {
        "identity": plan.fingerprint,
        "dataset": plan.dataset,
        "params": plan.params.fingerprint_params(),
        "runtime": plan.params.model_dump(),
        "seed": plan.params.seed,
        "stores": {s: {"path": str(p.out), "fingerprint": p.fingerprint} for s, p in plan.needs.items()},
        "feature_channels": inputs.feature_channels,
        "code": code_version(),
        "machine": {k: (str(v) if v is not None else None) for k, v in machine_info().items()},
    }
    config["teacher"] = teacher_record(attrs, config)
    return config


def run(plan: Plan, ctx: Context) -> Path:
    """The train stage's body: train (or continue) the planned run; returns its directory. Rank 0 holds the
    run's training lock throughout: a second process training the same run stops at once (LockError)."""
    if ctx.dist.rank != 0:
        return _train(plan, ctx)
    with rundir.training_lock(plan.out):
        return _train(plan, ctx)


def _train(plan: Plan, ctx: Context) -> Path:
    import torch
    import zarr

    from pipeline.core.devices import resolve_device
    from pipeline.evaluate.monitor import build_monitor
    from pipeline.train.engine import fit
    from pipeline.train.setup import setup

    params, dist, run_dir = plan.params, ctx.dist, plan.out
    state = rundir.read(run_dir)
    if params.resume and not state.has_checkpoint:
        raise ConfigError(
            f"--resume: run {params.run} has no checkpoint to continue from",
            "drop --resume to start it, or name the run to continue with --run NAME",
        )
    if state.exists and not state.has_checkpoint and dist.rank == 0:
        log.warning("run %s stopped before its first checkpoint; starting it from the beginning", params.run)
        rundir.clear(run_dir)
    device = resolve_device(params.device)
    if dist.world > 1:
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{dist.local_rank}"
            torch.cuda.set_device(device)
    inputs = train_inputs(plan)
    teacher = _online_teacher(params, device, ctx.offline)
    if teacher is not None:
        inputs = type(inputs)(
            **{**inputs.__dict__, "feature_channels": teacher.channels}
        )  # e.g. 768 for ViT-L/14
    n_objects, stored = zarr.open_group(inputs.points, mode="r")["train/points"].shape[:2]
    params = fit_to_store(params, int(n_objects), int(stored), dist.world)
    warn_if_warmup_only(params, n_objects, dist.world)
    if dist.rank == 0:
        if state.has_checkpoint:
            rundir.clear_evals(run_dir)  # they describe the checkpoint this continuation replaces
        config = run_config(plan, inputs, ctx.reads)
        config["effective"] = {"points": params.points, "batch_size": params.batch_size}
        rundir.write_config(run_dir, config)
        rundir.forget_stripped(run_dir)
    log.info(
        "run %s: %s", params.run, "continuing from its checkpoint" if state.has_checkpoint else "starting"
    )
    monitor = build_monitor(params, ctx.data_root, device) if dist.rank == 0 else None
    try:
        s = setup(
            params, inputs, run_dir, device, teacher, dist.rank, dist.world, resume=state.has_checkpoint
        )
        ckpt = fit(s, monitor=monitor)
    finally:
        if dist.world > 1:
            torch.distributed.destroy_process_group()
    if not params.keep_optimizer and dist.rank == 0 and rundir.finished_for_good(run_dir):
        rundir.strip_optimizer_state(run_dir)
    log.info("run %s: checkpoint %s", params.run, ckpt)
    return run_dir


def _online_teacher(params: TrainParams, device: str, offline: bool) -> Any:
    if not params.online_teacher:
        return None
    from pipeline.core.devices import resolve_precision
    from pipeline.features.teachers import load_teacher

    teacher = load_teacher(
        params.online_teacher, None, device, resolve_precision("auto", device), offline=offline
    )
    if teacher.random_weights:
        log.warning(
            "online teacher %s has RANDOM weights: for timing and smoke runs only", params.online_teacher
        )
    return teacher
