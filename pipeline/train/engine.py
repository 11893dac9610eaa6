"""The pre-training loop over cached stores, split as MAE's is: one step, one epoch, the whole fit (the
set-up before it: :mod:`pipeline.train.setup`).

``fit`` trains one run into its directory (files: :mod:`pipeline.storage.rundir`). Resume is exact, mid-epoch
too: data order and point subsets come from (seed, epoch, index), each rank's global RNG state
(augmentation, masking, drop path; :mod:`pipeline.storage.train_state`) is restored from the checkpoint, and a run
stopped mid-epoch skips the batches it already trained. Ctrl-C finishes the current step, saves
``ckpt-last.pt`` at that step and stops; a second Ctrl-C stops at once. A loader worker killed by the kernel
(out of memory) stops it the same way, with one line naming the knobs (:mod:`pipeline.train.workers`); a run
whose checkpoints cannot fit on its disk is refused before its first step (:mod:`pipeline.train.disk`).
Under ``torchrun`` the model is wrapped in DistributedDataParallel, ``batch_size`` is the total over ranks
and rank 0 writes; rank 0 also runs the monitor and keeps ckpt-best / ckpt-epoch-XXX
(:mod:`pipeline.evaluate.monitor`).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from i2pmae.pretrain import Batch, pretrain_step
from pipeline.core.console import progress_bar
from pipeline.core.errors import Interrupted
from pipeline.core.params import TrainParams
from pipeline.evaluate.monitor import check, keep_epoch
from pipeline.storage import run_plots, rundir
from pipeline.storage.train_state import TrainingError, gather_rng_states, save_checkpoint
from pipeline.train.disk import check_room
from pipeline.train.setup import Setup
from pipeline.train.workers import WorkerWatch, worker_error

log = logging.getLogger("i2p")

__all__ = ["TrainingError", "train_step", "train_one_epoch", "fit"]


def train_step(s: Setup, item: dict[str, torch.Tensor]) -> tuple[Any, bool]:
    """One optimiser step on one collated batch (:func:`i2pmae.pretrain.pretrain_step`) → (the forward's
    output: loss, loss_3d, loss_2d; whether the loss was finite on every rank — when not, no rank stepped)."""
    return pretrain_step(
        s.model,
        s.optimizer,
        Batch.from_item(item, s.device),
        teacher=s.teacher,
        augment=not s.dataset.augmented,
        precision=s.precision,
        call=s.call,
        any_rank=lambda value: _anywhere(value, s),
    )


def _anywhere(value: bool, s: Setup) -> bool:
    """``value`` on any rank (one all-reduce under torchrun; the value itself in one process)."""
    return _largest(int(value), s) > 0


def _largest(value: int, s: Setup) -> int:
    """The largest of every rank's ``value`` (one all-reduce under torchrun; the value in one process)."""
    if s.call is None:
        return value
    t = torch.tensor([float(value)], device=s.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


STOP_SIGNALS = (
    "SIGINT",
    "SIGTERM",
    "SIGUSR1",
)  # Ctrl-C; a scheduler's preemption; `sbatch --signal` ahead of it


@contextmanager
def stop_on_interrupt() -> Iterator[dict[str, Any]]:
    """The first Ctrl-C, SIGTERM or SIGUSR1 sets ``flag["stop"]`` (the loop stops after the current step and
    saves) and ``flag["signal"]`` (its name); a second one more than a second later raises KeyboardInterrupt
    (torchrun forwards the terminal's Ctrl-C again at once: not a second)."""
    flag: dict[str, Any] = {"stop": False, "at": 0.0, "signal": None}

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"] and time.monotonic() - flag["at"] > 1.0:
            raise KeyboardInterrupt(signal.Signals(signum).name)  # the CLI exits 128 + this signal
        if not flag["stop"]:
            flag["stop"], flag["at"], flag["signal"] = True, time.monotonic(), signal.Signals(signum).name

    previous = {}
    try:
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                previous[name] = signal.signal(getattr(signal, name), handler)
    except ValueError:  # not the main thread: no handler, a signal stops at once
        yield flag
        return
    try:
        yield flag
    finally:
        for name, handler_before in previous.items():
            signal.signal(getattr(signal, name), handler_before)


def train_one_epoch(
    s: Setup,
    epoch: int,
    params: TrainParams,
    run: Path,
    metrics: Any,
    flag: dict,
    world: int,
    on_step: Any = None,
    watch: WorkerWatch | None = None,
) -> str:
    """Train the epoch from ``s.position``; returns "epoch" (finished), "max_steps", "interrupted", "due"
    (``checkpoint_every_minutes`` passed since ``flag["saved_at"]``: the caller saves and continues the epoch)
    or "worker" (``watch.death``: a loader worker died; under torchrun it raises ResourceError at once).
    ``on_step()`` is called after each step's metrics row (the monitor's sub-epoch cadence)."""
    lr = params.lr_at(epoch)
    for group in s.optimizer.param_groups:
        group["lr"] = lr
    start = s.position["batch"] if epoch == s.position["epoch"] else 0
    s.sampler.set_epoch(epoch, start)
    s.dataset.set_epoch(epoch)
    s.model.train()
    total = s.sampler.batches_per_epoch()
    if params.max_steps is not None:  # the bar ends where the run stops, not at the epoch's end
        total = min(total, start + max(params.max_steps - s.position["step"], 0))
    with progress_bar(f"epoch {epoch}", total, "steps", done=start) as advance:
        for b, item in enumerate(watch.batches(s.loader) if watch else s.loader, start=start):
            tic = time.perf_counter()
            out, finite = train_step(s, item)
            step = s.position["step"] + 1  # the number metrics.jsonl gives this step
            if not finite:
                last = rundir.checkpoint(run)
                raise TrainingError(
                    f"non-finite loss at step {step} (epoch {epoch}, batch {b}; this process: {out.loss.item()}); "
                    f"metrics.jsonl holds the steps before it",
                    f"the last good checkpoint is {last}"
                    if last.exists()
                    else "no checkpoint was written yet",
                )
            s.position = {"epoch": epoch, "batch": b + 1, "step": step}
            if metrics:
                metrics.write(
                    {
                        "step": step,
                        "epoch": epoch,
                        "loss": out.loss.item(),
                        "loss_3d": out.loss_3d.item(),
                        "loss_2d": None if out.loss_2d is None else out.loss_2d.item(),
                        "lr": lr,
                        "samples_per_s": round(params.batch_size / (time.perf_counter() - tic), 2),
                    }
                )
            if on_step:
                on_step()
            advance(1, loss=round(out.loss.item(), 4))
            if params.max_steps is not None and step >= params.max_steps:
                return "max_steps"
            if _anywhere(flag["stop"], s):  # every rank stops after the same step
                return "interrupted"
            every, last = params.checkpoint_every_minutes, b + 1 == s.sampler.batches_per_epoch()
            if every and not last and _anywhere(time.monotonic() - flag["saved_at"] >= 60 * every, s):
                return "due"  # the epoch's end saves anyway
    if watch and watch.death:  # the ranks cannot agree on a save: the last checkpoint stays
        if world > 1:
            raise worker_error(watch.death, s.position["step"], None, params.num_workers, params.batch_size)
        return "worker"
    s.position = {"epoch": epoch + 1, "batch": 0, "step": s.position["step"]}
    return "epoch"


def fit(s: Setup, monitor: Any = None) -> Path:
    """Train a set-up run (:func:`pipeline.train.setup.setup`) from its position to its end (epochs or
    ``max_steps``); returns ckpt-last.pt.

    ``monitor`` (rank 0; :func:`pipeline.evaluate.monitor.build_monitor`) measures the encoder at step 0 of a fresh
    run and on its cadence, keeping ckpt-best.pt; ckpt-epoch-XXX.pt are kept on ``keep_every``/``keep_from``."""
    params, run, rank, world = s.params, s.run, s.rank, s.world
    if rank == 0:
        check_room(s, monitor is not None)  # before anything is written or trained
        rundir.record_parameters(run, parameter_counts(s.model))  # config.yaml, report.md, status --json
        rundir.unmark_complete(run)  # set again when this invocation reaches the end
        if s.resumed:
            rundir.trim_metrics(run, s.position["step"])
    metrics = rundir.MetricsLog(run) if rank == 0 else None
    ckpt = rundir.checkpoint(run)
    if monitor is not None:
        monitor.restore(run)  # best and measured steps of the rows kept

    def watch(epoch: int | None = None, rng_states: list | None = None) -> None:
        check(monitor, s, params, run, metrics, epoch, rng_states)

    try:
        with stop_on_interrupt() as flag, WorkerWatch() as workers:
            flag["saved_at"] = time.monotonic()
            watch()  # step 0 of a fresh run: the initial (random) weights
            done = (
                params.max_steps is not None and s.position["step"] >= params.max_steps
            )  # e.g. stopped past it
            epoch = s.position["epoch"]
            while not done and epoch < params.epochs:
                how = train_one_epoch(s, epoch, params, run, metrics, flag, world, watch, workers)
                rng_states = gather_rng_states(world)  # every rank's stream, for an exact resume
                if rank == 0:
                    save_checkpoint(ckpt, s.model, s.optimizer, params, s.position, rng_states)
                    if how == "epoch":
                        keep_epoch(s, params, run, epoch, rng_states)
                        watch(epoch, rng_states)
                flag["saved_at"] = time.monotonic()
                if how == "interrupted":  # every rank names the signal one of them got, after rank 0 saved
                    signum = _largest(int(getattr(signal, flag["signal"])) if flag["signal"] else 0, s)
                    if world > 1:
                        torch.distributed.barrier()
                    name = signal.Signals(signum).name if signum else "SIGINT"
                    stop = Interrupted(
                        f"interrupted by {name}: checkpoint saved at step {s.position['step']} ({ckpt})",
                        "rerun the same `i2p train` command (or add --resume) to continue exactly from there",
                    )
                    stop.exit_code = 128 + signum if signum else 130
                    raise stop
                if how == "worker":  # saved at the last finished step, as for a stop signal
                    raise worker_error(
                        workers.death, s.position["step"], ckpt, params.num_workers, params.batch_size
                    )
                if how == "due" and rank == 0:
                    log.info("step %d: ckpt-last.pt written (checkpoint_every_minutes)", s.position["step"])
                epoch += how == "epoch"  # "due": a time-based checkpoint mid-epoch, the epoch goes on
                done = how == "max_steps"
        if rank == 0:
            rundir.mark_complete(run, s.position["epoch"], s.position["step"])
        if world > 1:  # no rank returns before rank 0 has written the run (a next fit reads ckpt-last.pt)
            torch.distributed.barrier()
    finally:
        if metrics:
            metrics.close()
        if rank == 0:
            run_plots.write_loss_plot(run)
    return ckpt


def parameter_counts(model: Any) -> dict[str, int]:
    """Trainable parameters of the model a run trains (``model``: encoder, decoder and heads) and of its
    encoder alone (``encoder``, what the evaluations use)."""
    module = getattr(model, "module", model)  # unwrap DDP
    return {
        "model": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "encoder": sum(p.numel() for p in module.h_encoder.parameters() if p.requires_grad),
    }
