"""``i2p train``: the pre-training loop over cached stores, and the run directory it writes.

``runs/<name>/`` holds ``config.yaml`` (every param, seed, store fingerprints, n_params),
``metrics.jsonl`` (one line per step), ``ckpt-last.pt`` (written atomically every epoch and at the
end: model, optimizer, RNG states, position, config) and ``loss.png``. ``--resume`` continues from
``ckpt-last.pt`` exactly: data order and point subsets come from (seed, epoch, index), the global RNG
state (augmentation, masking, drop path) is restored, and a run stopped mid-epoch skips the batches
it already trained. Under ``torchrun`` the model is wrapped in DistributedDataParallel and rank 0 writes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from i2pmae.model import I2PMAE, I2PMAEConfig
from i2pmae.pretrain import Batch, LossOnly, online_maps, pretrain_forward
from i2pmae.schedule import epoch_lr, param_groups
from pipeline.console import progress_bar
from pipeline.errors import I2PError
from pipeline.params import TrainParams
from pipeline.store import atomic_write_bytes
from pipeline.trainset import CachedShapes, EpochSampler, batch_loader

log = logging.getLogger("i2p")


class TrainingError(I2PError):
    """Training cannot go on (non-finite loss, a run directory in the way, a checkpoint mismatch)."""


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
        feat_dim_2d=channels,
        **(arch or {}),
    )
    return I2PMAE(cfg)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer, params: TrainParams, position: dict
) -> None:  # noqa: ANN001
    core = model.module if hasattr(model, "module") else model
    buffer = io.BytesIO()
    torch.save(
        {
            "model": core.state_dict(),
            "model_config": asdict(core.cfg),
            "train_params": params.model_dump(),
            "optimizer": optimizer.state_dict(),
            "scaler": None,
            "rng": _rng_state(),
            **position,
        },
        buffer,
    )
    atomic_write_bytes(path, buffer.getvalue())


def _prepare_run_dir(run_dir: Path, params: TrainParams, inputs: TrainInputs, n_params: int) -> bool:
    """Check the run dir (a new run must not overwrite one; a resumed run must match it); write config.yaml."""
    ckpt = run_dir / "ckpt-last.pt"
    if not ckpt.exists() and (params.resume or (run_dir / "metrics.jsonl").exists()):
        # nothing to resume (e.g. stopped before its first checkpoint): the run starts again from step 0
        log.warning("run %s has no checkpoint to resume; starting it from the beginning", run_dir.name)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        params = params.model_copy(update={"resume": False})
    if params.resume:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        old = saved["params"]
        if saved.get("stores", {}).get("fingerprints") != inputs.fingerprints:
            raise TrainingError(
                f"--resume: run {run_dir.name} was trained on other stores "
                f"({saved.get('stores', {}).get('fingerprints')} vs now {inputs.fingerprints})",
                "resume with the stores it started with (--features, --set ...), or start a new --run",
            )
        now = params.fingerprint_params()
        diff = {k: (old.get(k), v) for k, v in now.items() if old.get(k) != v and k != "epochs"}
        if diff:
            raise TrainingError(
                f"--resume with different params than run {run_dir.name}: {diff}",
                "resume with the run's own params, or start a new --run",
            )
    elif ckpt.exists() or (run_dir / "metrics.jsonl").exists():
        raise TrainingError(
            f"run directory {run_dir} already holds a run",
            "pass --resume to continue it, or choose another --run NAME",
        )
    config = {
        "params": params.fingerprint_params(),
        "runtime": params.model_dump(),
        "seed": params.seed,
        "stores": asdict(inputs),
        "n_params": n_params,
    }
    atomic_write_bytes(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())
    return params.resume


def _trim_metrics(run_dir: Path, step: int) -> None:
    """Drop metric rows after the checkpoint's step (a crash after it wrote them); resume rewrites them."""
    path = run_dir / "metrics.jsonl"
    if path.exists():
        rows = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= step
        ]
        atomic_write_bytes(path, "".join(f"{r}\n" for r in rows).encode())


def train(
    params: TrainParams,
    inputs: TrainInputs,
    run_dir: Path,
    device: str,
    teacher: Any = None,
    rank: int = 0,
    world: int = 1,
    arch: dict[str, Any] | None = None,
) -> Path:
    """Pre-train; returns the final checkpoint path. ``teacher``: an online teacher (paper mode) or None;
    ``arch``: I2PMAEConfig overrides (smaller grouping for tests and benchmarks)."""
    torch.manual_seed(params.seed + rank)
    np.random.seed(params.seed + rank)
    random.seed(params.seed + rank)
    dev = torch.device(device)
    model = build_model(params, inputs.feature_channels, arch).to(dev)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW(
        param_groups(model, params.weight_decay, params.decay_token_fix), lr=params.lr
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = params.resume and (run_dir / "ckpt-last.pt").exists()
    if rank == 0:
        resume = _prepare_run_dir(run_dir, params, inputs, n_params)
        (run_dir / "complete.json").unlink(missing_ok=True)  # set again when this invocation ends
    position = {"epoch": 0, "batch": 0, "step": 0}
    if resume:
        state = torch.load(
            run_dir / "ckpt-last.pt", map_location="cpu", weights_only=False
        )  # RNG states stay CPU tensors
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        position = {k: state[k] for k in position}
        if rank == 0:
            _trim_metrics(run_dir, position["step"])
        log.info("resuming %s at epoch %d, batch %d (step %d)", run_dir.name, *position.values())
    call = None  # single process: the model's own forward
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
        online=teacher is not None,
    )
    sampler = EpochSampler(len(dataset), params.batch_size, params.seed, rank, world)
    if sampler.batches_per_epoch() == 0:
        raise TrainingError(
            f"{len(dataset)} training objects make no full batch of {params.batch_size}", "lower --batch-size"
        )
    loader = batch_loader(  # one worker reads a whole batch (pipeline/trainset.py)
        dataset,
        sampler,
        num_workers=min(params.num_workers, os.cpu_count() or 1),
        pin_memory=dev.type == "cuda",
        generator=torch.Generator(),  # own generator: keeps the global RNG exact
    )
    metrics = (run_dir / "metrics.jsonl").open("a") if rank == 0 else None
    ckpt = run_dir / "ckpt-last.pt"
    step = position["step"]
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if dev.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    try:
        for epoch in range(position["epoch"], params.epochs):
            lr = epoch_lr(
                epoch,
                params.lr,
                params.epochs,
                params.warmup_epochs,
                params.schedule_epochs,
                params.warmup_lr,
                params.min_lr,
                params.cosine_to_end,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            start = position["batch"] if epoch == position["epoch"] else 0
            sampler.set_epoch(epoch, start)
            dataset.set_epoch(epoch)
            model.train()
            with progress_bar(f"epoch {epoch}", sampler.batches_per_epoch(), "steps", done=start) as advance:
                for b, item in enumerate(loader, start=start):
                    tic = time.perf_counter()
                    batch = Batch.from_item(item, dev)
                    if teacher is not None:
                        batch = online_maps(batch, teacher)
                    with amp:
                        out = pretrain_forward(model, batch, call=call)
                    if not torch.isfinite(out.loss):
                        raise TrainingError(
                            f"non-finite loss {out.loss.item()} at step {step} (epoch {epoch}, batch {b})",
                            f"the last good checkpoint is {ckpt}"
                            if ckpt.exists()
                            else "no checkpoint was written yet",
                        )
                    optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    optimizer.step()
                    step += 1
                    if metrics:
                        rate = params.batch_size * world / (time.perf_counter() - tic)
                        record = {
                            "step": step,
                            "epoch": epoch,
                            "loss": out.loss.item(),
                            "loss_3d": out.loss_3d.item(),
                            "loss_2d": None if out.loss_2d is None else out.loss_2d.item(),
                            "lr": lr,
                            "samples_per_s": round(rate, 2),
                        }
                        metrics.write(json.dumps(record) + "\n")
                        metrics.flush()
                    advance(1)
                    if params.max_steps is not None and step >= params.max_steps:
                        if rank == 0:
                            save_checkpoint(
                                ckpt, model, optimizer, params, {"epoch": epoch, "batch": b + 1, "step": step}
                            )
                        log.info("stopped at --max-steps %d; checkpoint %s", step, ckpt)
                        _mark_complete(run_dir, rank, epoch, step)
                        return ckpt
            if rank == 0:
                save_checkpoint(
                    ckpt, model, optimizer, params, {"epoch": epoch + 1, "batch": 0, "step": step}
                )
        _mark_complete(run_dir, rank, params.epochs, step)
    finally:
        if metrics:
            metrics.close()
        if rank == 0:
            plot_losses(run_dir)
    return ckpt


def _mark_complete(run_dir: Path, rank: int, epoch: int, step: int) -> None:
    """complete.json: the run reached its end (epochs or --max-steps); `i2p run` then skips it."""
    if rank == 0:
        atomic_write_bytes(run_dir / "complete.json", json.dumps({"epoch": epoch, "step": step}).encode())


def plot_losses(run_dir: Path) -> Path | None:
    """loss.png from metrics.jsonl: total, 3D and 2D losses per step."""
    path = run_dir / "metrics.jsonl"
    if not path.exists() or path.stat().st_size == 0:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("loss", "loss_3d", "loss_2d"):
        values = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if values:
            ax.plot(*zip(*values, strict=True), label=key, linewidth=1)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(run_dir.name)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(run_dir / "loss.png", buffer.getvalue())
    return run_dir / "loss.png"
