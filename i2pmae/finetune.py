"""Fine-tuning a pre-trained encoder as a classifier (method §3.5, §9.2), on tensors.

Per training batch: the objects' points are shuffled (the official train loaders shuffle point order,
so FPS starts at a random point), FPS picks ``point_all`` of them (1200 for 1024 inputs, 2400 for
2048), then **one** random choice of ``points`` columns is shared by the batch; then the recipe's
augmentation. Loss: cross-entropy with the official label smoothing (1 − ε on the true class, ε/(n−1)
elsewhere; ε = 0.2 for ModelNet40 only), global gradient-norm clip 10, AdamW with the "token"
no-decay quirk, warm-up + cosine stepped per epoch with the one-epoch lag (``i2pmae.schedule``).
Test inputs: FPS of ``points`` from index 0, no augmentation, evaluated after every epoch.

Voting (ModelNet40): ``votes`` passes over the test split, each the FPS ``point_all`` points, one
random ``points`` subset per batch (so the voted accuracy depends on the test batch size, as in the
paper's code) and a ScaleAndTranslate(2/3–3/2, ±0.2); logits averaged. One
voting pass is run (never the maximum over repeated passes, method §12.4). For 2048-point inputs
(ScanObjectNN) voting is not defined by the paper's code (it raises); recipes set ``votes = 0``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from i2pmae.augment import scale_and_translate
from i2pmae.classifier import ClassifierConfig, PointClassifier
from i2pmae.errors import TooFewPoints
from i2pmae.finetune_inputs import Augment, augment, fps_inputs, point_all, train_sample
from i2pmae.schedule import epoch_lr, param_groups


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 300  # the official loop runs range(0, 301); its extra last epoch trains at ≈ min_lr
    batch_size: int = 32  # train batches, the last partial one dropped (method §9.2)
    test_batch_size: int = 64  # total_bs·2; recipes.finetune_config sets it to a user's batch_size (memory)
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: int = 10
    schedule_epochs: int | None = None  # cosine t_initial; None = epochs (the official 300 = max_epoch)
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    decay_token_fix: bool = False  # True: decay the token_embed weights too (changes behaviour)
    grad_clip: float = 10.0  # global L2 norm
    points: int = 1024  # input points: 1024 ModelNet40, 2048 ScanObjectNN
    label_smoothing: float = 0.2  # ε; 0 gives plain cross-entropy (ScanObjectNN)
    augment: Augment = "scale-translate"  # ModelNet40; "scale-rotate" for ScanObjectNN (method §1.6)
    votes: int = 10  # views of the one voting pass; 0 = no voting
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimiser steps (a quick check; None: all epochs)
    precision: str = "fp32"  # "fp32" as the paper (§9.2); "bf16": the training forward under bf16 autocast
    # recompute the scale-0 token embedding in backward: less memory, same numbers
    recompute_embed: bool = True


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
    best_acc: float  # chosen on the split passed as test (there is no validation split)
    best_epoch: int
    last_vote_acc: float | None  # None when votes == 0
    best_vote_acc: float | None


def smooth_cross_entropy(logits: Tensor, target: Tensor, eps: float) -> Tensor:
    """The official smoothed loss: target 1 − ε on the true class, ε/(n − 1) on the others."""
    if eps == 0:
        return F.cross_entropy(logits, target)
    n = logits.shape[1]
    one_hot = torch.zeros_like(logits).scatter_(1, target[:, None], 1.0)
    soft = one_hot * (1 - eps) + (1 - one_hot) * eps / (n - 1)
    return -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def build_classifier(
    cfg: ClassifierConfig, encoder_state: Mapping[str, Tensor] | None, seed: int
) -> PointClassifier:
    """A fresh classifier (head, norm and drop path seeded by ``seed``) with the pre-trained encoder."""
    torch.manual_seed(seed)
    model = PointClassifier(cfg)
    if encoder_state is not None:
        model.load_pretrained_encoder(encoder_state)
    return model


@torch.no_grad()
def accuracy(model: PointClassifier, xyz: Tensor, labels: Tensor, batch_size: int, device) -> float:
    """Unvoted accuracy of ``model`` in eval mode on ready inputs xyz (O, N, 3)."""
    model.eval()
    correct = 0
    for i in range(0, len(xyz), batch_size):
        logits = model(xyz[i : i + batch_size].to(device))
        correct += int((logits.argmax(dim=1).cpu() == labels[i : i + batch_size]).sum())
    return correct / max(len(xyz), 1)


@torch.no_grad()
def vote_accuracy(
    model: PointClassifier,
    pool: Tensor,
    labels: Tensor,
    cfg: FinetuneConfig,
    generator: torch.Generator,
    device,
) -> float:
    """One voting pass: pool (O, point_all, 3) FPS points; per batch and vote a shared random subset
    of ``cfg.points`` plus ScaleAndTranslate; logits averaged over ``cfg.votes``."""
    model.eval()
    correct = 0
    for i in range(0, len(pool), cfg.test_batch_size):
        xyz = pool[i : i + cfg.test_batch_size].to(device)
        logits = 0.0
        for _ in range(cfg.votes):
            cols = torch.randperm(pool.shape[1], generator=generator)[: cfg.points].to(device)
            logits = logits + model(scale_and_translate(xyz[:, cols], generator=generator))
        pred = (logits / cfg.votes).argmax(dim=1).cpu()
        correct += int((pred == labels[i : i + cfg.test_batch_size]).sum())
    return correct / max(len(pool), 1)


def evaluate_classifier(
    model: PointClassifier, test_x: Tensor, test_y: Tensor, cfg: FinetuneConfig, device
) -> tuple[float, float | None]:
    """(unvoted, voted or None) accuracy of a trained classifier on (O, P, 3) clouds."""
    model.to(device)
    acc = accuracy(
        model,
        fps_inputs(test_x, cfg.points, cfg.test_batch_size, device),
        test_y,
        cfg.test_batch_size,
        device,
    )
    if cfg.votes <= 0:
        return acc, None
    pool = fps_inputs(test_x, point_all(cfg.points, test_x.shape[1]), cfg.test_batch_size, device)
    return acc, vote_accuracy(model, pool, test_y, cfg, torch.Generator().manual_seed(cfg.seed + 1), device)


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
        xyz = augment(train_sample(train_x[idx].to(device), cfg.points, generator), cfg.augment, generator)
        target = train_y[idx].to(device)
        with torch.autocast(xyz.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            logits = model(xyz)
        loss = smooth_cross_entropy(logits.float(), target, cfg.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite fine-tuning loss {loss.item()} in batch {b}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
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
) -> FinetuneResult:
    """Train all parameters of ``model`` for ``cfg.epochs`` epochs; evaluate on the test split after each.

    train_x (O, P, 3), train_y (O,) long, test_x (T, P', 3), test_y (T,) long, on the CPU; batches are
    moved to ``device``. The model is left with its last-epoch weights; the best epoch's weights (on
    the test split) are kept only to vote with. Raises FloatingPointError on a non-finite loss.
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
    test_inputs = fps_inputs(test_x, cfg.points, cfg.test_batch_size, device)
    schedule = cfg.schedule_epochs or cfg.epochs
    history: list[EpochMetrics] = []
    best_acc, best_epoch, best_state, steps = -1.0, -1, None, 0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        lr = epoch_lr(epoch, cfg.lr, cfg.epochs, cfg.warmup_epochs, schedule, cfg.warmup_lr, cfg.min_lr)
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
        if test_acc > best_acc:
            best_acc, best_epoch, best_state = test_acc, epoch, _snapshot(model)
        if on_epoch is not None:
            on_epoch(history[-1])
        if cfg.max_steps is not None and steps >= cfg.max_steps:
            break
    last_vote = best_vote = None
    if cfg.votes > 0 and history:
        last_vote, best_vote = _vote_last_and_best(model, best_state, test_x, test_y, cfg, device)
    last = history[-1].test_acc if history else float("nan")
    return FinetuneResult(cfg.seed, history, last, best_acc, best_epoch, last_vote, best_vote)


def _vote_last_and_best(
    model: PointClassifier,
    best_state: dict[str, Tensor],
    test_x: Tensor,
    test_y: Tensor,
    cfg: FinetuneConfig,
    device,
) -> tuple[float, float]:
    """One voting pass with the last weights and one with the best epoch's, on the same subsets and
    augmentations (same generator seed); the model keeps its last weights."""
    pool = fps_inputs(test_x, point_all(cfg.points, test_x.shape[1]), cfg.test_batch_size, device)
    last = vote_accuracy(model, pool, test_y, cfg, torch.Generator().manual_seed(cfg.seed + 1), device)
    last_state = _snapshot(model)
    model.load_state_dict(best_state)
    best = vote_accuracy(model, pool, test_y, cfg, torch.Generator().manual_seed(cfg.seed + 1), device)
    model.load_state_dict(last_state)
    return last, best
