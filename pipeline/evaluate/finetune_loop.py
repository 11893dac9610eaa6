"""The fine-tuning loop (method §9.2), split as pre-training's (:mod:`pipeline.train.engine`) is: one step
(:func:`i2pmae.finetune.finetune_step`, the method's maths), one epoch, the whole fit.

Per training batch: the objects' points are shuffled, FPS picks ``point_all`` of them, one random subset of
``points`` columns is shared by the batch, then the recipe's augmentation (:mod:`i2pmae.finetune_inputs`).
The learning rate is set once per epoch (warm-up + cosine with the one-epoch lag, :func:`i2pmae.schedule.epoch_lr`);
the test split is evaluated after every epoch, unvoted; the best epoch is chosen from epoch 1 on, as the paper's
runner validates only from there (epoch 0 only when it is the only epoch run); the last and the best epoch's
weights vote ``vote_repeats`` passes each.
All randomness comes from the seed: an explicit CPU generator for data, ``torch.manual_seed`` for dropout and
drop path. Tensors in, results out: files are written by the callers (:mod:`pipeline.evaluate.finetuning`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from i2pmae.classifier import PointClassifier
from i2pmae.errors import TooFewPoints
from i2pmae.finetune import FinetuneConfig, accuracy, finetune_step, vote_passes
from i2pmae.finetune_inputs import augment, fps_inputs, point_all, train_sample
from i2pmae.ops import fps_eps
from i2pmae.schedule import epoch_lr, param_groups
from pipeline.evaluate.epoch_state import load_epoch_state, save_epoch_state


@dataclass
class EpochMetrics:
    epoch: int
    lr: float
    loss: float  # mean training loss
    train_acc: float  # fraction, on the augmented training batches
    test_acc: float  # fraction, unvoted
    seconds: float


@dataclass
class FinetuneResult:
    seed: int
    history: list[EpochMetrics]
    last_acc: float
    best_acc: float  # chosen on the split passed as test (there is no validation split), from epoch 1 on
    best_epoch: int
    last_vote_acc: float | None  # None when votes == 0; the max over the passes when vote_repeats > 1
    best_vote_acc: float | None
    vote_repeats: int = 1  # voting passes per weights (1: one honest pass; the paper's --test: 49, max)
    last_vote_passes: list[float] | None = None  # every pass, in order (their mean is the unselected number)
    best_vote_passes: list[float] | None = None


def _snapshot(model: PointClassifier) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train_epoch(
    model: PointClassifier,
    optimizer: torch.optim.Optimizer,
    train_x: Tensor,
    train_y: Tensor,
    cfg: FinetuneConfig,
    generator: torch.Generator,
    device,
    on_batch: Callable[[int], None] | None = None,
    max_batches: int | None = None,
) -> tuple[float, float, int]:
    """One pass over shuffled batches (the last partial one dropped), at most ``max_batches`` of them
    -> (mean loss, train accuracy, optimiser steps taken)."""
    model.train()
    n_objects, bs = len(train_x), cfg.batch_size  # O
    order = torch.randperm(n_objects, generator=generator)
    loss_sum, correct, seen, steps = 0.0, 0, 0, 0
    for b in range(n_objects // bs if n_objects >= bs else 1):  # never zero batches on tiny data
        if max_batches is not None and steps >= max_batches:
            break
        idx = order[b * bs : (b + 1) * bs]
        if len(idx) < 2:  # BatchNorm in the head needs two objects
            continue
        eps = fps_eps(model.cfg.fps_origin_rule)
        xyz = augment(
            train_sample(train_x[idx].to(device), cfg.points, generator, eps), cfg.augment, generator
        )
        target = train_y[idx].to(device)
        loss, logits, stepped = finetune_step(model, optimizer, xyz, target, cfg)
        if not stepped:
            raise FloatingPointError(f"non-finite fine-tuning loss {loss.item()} in batch {b}")
        steps += 1
        loss_sum += loss.item() * len(idx)
        correct += int((logits.argmax(dim=1) == target).sum())
        seen += len(idx)
        if on_batch is not None:
            on_batch(1)
    return loss_sum / max(seen, 1), correct / max(seen, 1), steps


def finetune(
    model: PointClassifier,
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    cfg: FinetuneConfig,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    resume: Path | None = None,
) -> FinetuneResult:
    """Train all parameters of ``model`` for ``cfg.epochs`` epochs; evaluate on the test split after each.

    ``resume``: a file written after every epoch (weights, optimizer, the data generator's and torch's RNG
    states, history, best epoch); when it exists at the start, training continues exactly after its last
    epoch. The caller names it for this one training (data, config, encoder) and removes it when done.

    train_x (O, P, 3), train_y (O,) long, test_x (T, P', 3), test_y (T,) long, on the CPU; batches are
    moved to ``device``. The model is left with its last-epoch weights; the best epoch's weights (on
    the test split, from epoch 1 on: the paper validates from there) are kept only to vote with. Raises
    FloatingPointError on a non-finite loss.
    """
    if cfg.points > min(train_x.shape[1], test_x.shape[1]):
        raise TooFewPoints(
            f"{cfg.points} input points requested, the clouds hold {train_x.shape[1]}/{test_x.shape[1]}",
            "pass --points N (at most the stored count)",
        )
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # dropout and drop path
    model.to(device)
    model.h_encoder.token_embed[0].recompute = cfg.recompute_embed  # i2pmae.recompute: same numbers
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.decay_token_fix), lr=cfg.lr)
    test_inputs = fps_inputs(
        test_x, cfg.points, cfg.test_batch_size, device, fps_eps(model.cfg.fps_origin_rule)
    )
    history: list[EpochMetrics] = []
    best_acc, best_epoch, best_state, steps = -1.0, -1, None, 0
    if resume is not None and Path(resume).is_file():
        saved = load_epoch_state(resume, model, optimizer, g)
        history = [EpochMetrics(**h) for h in saved["history"]]
        best_acc, best_epoch, best_state, steps = (
            saved[k] for k in ("best_acc", "best_epoch", "best_state", "steps")
        )
    for epoch in range(len(history), cfg.epochs):
        t0 = time.perf_counter()
        lr = epoch_lr(epoch, cfg.lr, cfg.epochs, cfg.warmup_epochs, cfg.t_initial, cfg.warmup_lr, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        try:
            left = None if cfg.max_steps is None else cfg.max_steps - steps
            loss, train_acc, taken = train_epoch(
                model, optimizer, train_x, train_y, cfg, g, device, on_batch, left
            )
            steps += taken
        except FloatingPointError as err:
            raise FloatingPointError(f"epoch {epoch}: {err}") from None
        test_acc = accuracy(model, test_inputs, test_y, cfg.test_batch_size, device)
        history.append(EpochMetrics(epoch, lr, loss, train_acc, test_acc, time.perf_counter() - t0))
        if test_acc > best_acc or best_epoch == 0:  # epoch 0 holds the place until epoch 1 (see above)
            best_acc, best_epoch, best_state = test_acc, epoch, _snapshot(model)
        if resume is not None:
            loop = {"history": [asdict(h) for h in history], "steps": steps, "best_state": best_state}
            save_epoch_state(
                resume, model, optimizer, g, {**loop, "best_acc": best_acc, "best_epoch": best_epoch}
            )
        if on_epoch is not None:
            on_epoch(history[-1])
        if cfg.max_steps is not None and steps >= cfg.max_steps:
            break
    last_votes = best_votes = None
    if cfg.votes > 0 and history:
        last_votes, best_votes = _vote_last_and_best(model, best_state, test_x, test_y, cfg, device)
    last = history[-1].test_acc if history else float("nan")
    last_vote, best_vote = _top(last_votes), _top(best_votes)
    return FinetuneResult(
        cfg.seed,
        history,
        last,
        best_acc,
        best_epoch,
        last_vote,
        best_vote,
        cfg.vote_repeats,
        last_votes,
        best_votes,
    )


def _top(passes: list[float] | None) -> float | None:
    """The reported voted accuracy: the one pass, or the paper's maximum over repeated passes (§12.4)."""
    return None if passes is None else max(passes)


def _vote_last_and_best(
    model: PointClassifier,
    best_state: dict[str, Tensor],
    test_x: Tensor,
    test_y: Tensor,
    cfg: FinetuneConfig,
    device,
) -> tuple[list[float], list[float]]:
    """``cfg.vote_repeats`` voting passes with the last weights and as many with the best epoch's, on the
    same subsets and augmentations (same generator seed); the model keeps its last weights."""
    pool = fps_inputs(
        test_x,
        point_all(cfg.points, test_x.shape[1]),
        cfg.test_batch_size,
        device,
        fps_eps(model.cfg.fps_origin_rule),
    )
    last = vote_passes(model, pool, test_y, cfg, torch.Generator().manual_seed(cfg.seed + 1), device)
    last_state = _snapshot(model)
    model.load_state_dict(best_state)
    best = vote_passes(model, pool, test_y, cfg, torch.Generator().manual_seed(cfg.seed + 1), device)
    model.load_state_dict(last_state)
    return last, best
