"""The part-segmentation loop (method §14.3), split as fine-tuning's is: one step
(:func:`i2pmae.partseg_step.partseg_step`), one epoch, the whole fit with a test evaluation after each epoch.

Per epoch: shuffled batches (the last partial one dropped), each shape's ``points`` drawn with replacement
from its own points, scale and shift; the learning rate set once per epoch (warm-up + cosine with the
one-epoch lag of the reference scheduler, :func:`i2pmae.schedule.epoch_lr`). After every epoch the test
split is scored (:mod:`i2pmae.partseg_metrics`) and three selections are kept: the last epoch, the epoch
with the best instance mIoU (its own class mIoU beside it), and the reference scripts' independent maxima
of each mIoU (which may come from two epochs). Tensors in, results out; files are the caller's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from i2pmae.partseg import PartSegmenter
from i2pmae.partseg_metrics import predict_parts, score
from i2pmae.partseg_step import PartSegTrainConfig, augment, draw_points, partseg_step, predict
from i2pmae.schedule import epoch_lr, param_groups
from pipeline.evaluate.epoch_state import load_epoch_state, save_epoch_state


@dataclass(frozen=True)
class PartsegData:
    """One split in memory: points (S, P, 3) float32, parts (S, P) long, count (S,) long, category (S,) long."""

    points: Tensor
    parts: Tensor
    count: Tensor
    category: Tensor


@dataclass
class PartsegEpoch:
    epoch: int
    lr: float
    loss: float  # mean training loss (negative log-likelihood per point)
    train_acc: float  # share of training points right (argmax over all parts)
    instance_miou: float  # on the test split, in [0, 1]
    class_miou: float
    accuracy: float  # share of test points right (argmax within the category)
    seconds: float
    per_category: dict[str, float] = field(default_factory=dict)


@dataclass
class PartsegResult:
    history: list[PartsegEpoch]
    last: PartsegEpoch
    best: PartsegEpoch  # the epoch of the best instance mIoU (chosen on the test split)
    max_instance: float  # the reference's independent maxima over epochs (may come from two epochs)
    max_class: float
    steps: int  # batches trained

    def summary(self) -> dict:
        """The three selections as plain numbers (the stage's record, the command's lines)."""
        pick = ("epoch", "instance_miou", "class_miou")
        return {
            "last": {k: getattr(self.last, k) for k in pick},
            "best_by_instance": {k: getattr(self.best, k) for k in pick},
            "max_instance_miou": self.max_instance,
            "max_class_miou": self.max_class,
            "steps": self.steps,
        }


def train_epoch(
    model: PartSegmenter,
    optimizer: torch.optim.Optimizer,
    train: PartsegData,
    cfg: PartSegTrainConfig,
    g: torch.Generator,
    device,
    on_batch: Callable[[int], None] | None = None,
    max_batches: int | None = None,
) -> tuple[float, float, int]:
    """One pass over shuffled batches -> (mean loss, train point accuracy, batches trained)."""
    model.train()
    n, bs = len(train.count), cfg.batch_size
    order = torch.randperm(n, generator=g)
    loss_sum, right, seen, steps = 0.0, 0, 0, 0
    for b in range(n // bs if n >= bs else 1):
        if max_batches is not None and steps >= max_batches:
            break
        idx = order[b * bs : (b + 1) * bs]
        if len(idx) < 2:  # BatchNorm needs two shapes
            continue
        xyz, target = draw_points(train.points[idx], train.parts[idx], train.count[idx], cfg.points, g)
        xyz = augment(xyz, cfg, g)
        target = target.to(device)
        loss, logp, stepped = partseg_step(
            model, optimizer, xyz.to(device), train.category[idx].to(device), target, cfg
        )
        if not stepped:
            raise FloatingPointError(f"non-finite part-segmentation loss {loss.item()} in batch {b}")
        steps += 1
        loss_sum += loss.item() * len(idx)
        right += int((logp.argmax(dim=-1) == target).sum())
        seen += len(idx)
        if on_batch is not None:
            on_batch(1)
    return loss_sum / max(seen, 1), right / max(seen * cfg.points, 1), steps


def evaluate(
    model: PartSegmenter,
    test: PartsegData,
    cfg: PartSegTrainConfig,
    parts: Sequence[Sequence[int]],
    names: Sequence[str],
    g: torch.Generator,
    device,
):
    """Score the test split once (:class:`i2pmae.partseg_metrics.PartsegScores`)."""
    logps, targets = predict(model, test.points, test.parts, test.count, test.category, cfg, g, device)
    cats = test.category.numpy()
    preds = [predict_parts(lp[None], cats[i : i + 1], parts)[0] for i, lp in enumerate(logps)]
    return score(preds, targets, cats, parts, names)


def fit(
    model: PartSegmenter,
    train: PartsegData,
    test: PartsegData,
    cfg: PartSegTrainConfig,
    parts: Sequence[Sequence[int]],
    names: Sequence[str],
    device: str | torch.device = "cpu",
    on_epoch: Callable[[PartsegEpoch], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    resume: Path | None = None,
) -> PartsegResult:
    """Train all parameters for ``cfg.epochs`` epochs (or ``cfg.max_steps`` batches), scoring the test split
    after each. ``resume``: the per-epoch state file (:mod:`pipeline.evaluate.epoch_state`); a rerun continues
    after its last epoch. Test draws use their own generator (seed + 1), so they do not depend on training.
    Raises FloatingPointError on a non-finite loss."""
    g, g_test = torch.Generator().manual_seed(cfg.seed), torch.Generator().manual_seed(cfg.seed + 1)
    torch.manual_seed(cfg.seed)  # dropout and drop path
    model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    history: list[PartsegEpoch] = []
    steps = 0
    if resume is not None and Path(resume).is_file():
        saved = load_epoch_state(resume, model, optimizer, g)
        g_test.set_state(saved["test_generator"])
        history, steps = [PartsegEpoch(**h) for h in saved["history"]], saved["steps"]
    for epoch in range(len(history), cfg.epochs):
        t0 = time.perf_counter()
        lr = epoch_lr(epoch, cfg.lr, cfg.epochs, cfg.warmup_epochs, cfg.epochs, cfg.warmup_lr, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        left = None if cfg.max_steps is None else cfg.max_steps - steps
        try:
            loss, train_acc, taken = train_epoch(model, optimizer, train, cfg, g, device, on_batch, left)
        except FloatingPointError as err:
            raise FloatingPointError(f"epoch {epoch}: {err}") from None
        steps += taken
        s = evaluate(model, test, cfg, parts, names, g_test, device)
        history.append(
            PartsegEpoch(
                epoch, lr, loss, train_acc, s.instance_miou, s.class_miou, s.accuracy,
                time.perf_counter() - t0, s.per_category,
            )
        )  # fmt: skip
        if resume is not None:
            loop = {"history": [asdict(h) for h in history], "steps": steps}
            save_epoch_state(resume, model, optimizer, g, {**loop, "test_generator": g_test.get_state()})
        if on_epoch is not None:
            on_epoch(history[-1])
        if cfg.max_steps is not None and steps >= cfg.max_steps:
            break
    best = max(reversed(history), key=lambda h: h.instance_miou)  # the latest of equals (the reference's >=)
    return PartsegResult(
        history,
        history[-1],
        best,
        max(h.instance_miou for h in history),
        max(h.class_miou for h in history),
        steps,
    )
