"""One pre-training step on tensors: augmentation, 2D lookups from cached maps, loss (method §1.6, §4, §8).

The loader gives, per object, N points of its stored cloud (``xyz``, re-normalised as method §1.1) and
the same points in the frame its views were projected from (``canonical``), plus the object's cached
teacher maps and projection parameters. Grouping runs on the augmented ``xyz``; every 2D lookup uses
the same indices into ``canonical``, mapped to pixels with the stored parameters (docs/training.md, "Training
from caches"). With augmented views the loader has already applied the draw's augmentation
(``augment=False`` here). With an online teacher (:func:`official_step`) the step is the official one:
the augmented input itself is projected and run through the teacher, and looked up in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from i2pmae.augment import scale_and_translate
from i2pmae.geometry import bicubic_lookup, normalise_images, points_to_pixels, project
from i2pmae.model import I2PMAE
from i2pmae.ops import gather_points


@dataclass
class Batch:
    """One batch on the device. xyz, canonical: (B, N, 3); proj: (B, V, 5); feature: (B, V, C, h, w);
    saliency: (B, V, h, w). proj/feature/saliency are None before an online teacher's maps are made,
    or for 3D-only training with random masking."""

    xyz: Tensor
    canonical: Tensor
    proj: Tensor | None = None
    feature: Tensor | None = None
    saliency: Tensor | None = None

    @classmethod
    def from_item(cls, item: dict[str, Tensor], device: torch.device) -> Batch:
        """A collated loader item (keys as the fields; missing ones None) moved to ``device``."""
        names = ("xyz", "canonical", "proj", "feature", "saliency")
        return cls(*(item[k].to(device, non_blocking=True) if k in item else None for k in names))


def lookup(maps: Tensor, proj: Tensor, points: Tensor) -> Tensor:
    """Values of per-view maps at points. maps (B, V, C, h, w), proj (B, V, 5), points (B, n, 3) in the
    canonical frame → (B, V, n, C): the bicubic 14→224 upsampling read at each point's pixel (§5.3)."""
    B, V, C, h, w = maps.shape
    rows, cols = points_to_pixels(points, proj)  # (B, V, n) each, clamped to the image
    values = bicubic_lookup(maps.reshape(B * V, C, h, w).float(), rows.flatten(0, 1), cols.flatten(0, 1))
    return values.reshape(B, V, -1, C)


def saliency_fn(batch: Batch) -> Callable[[Tensor], Tensor]:
    """top_center_point_idx (B, G) → saliency at those centres, per view (B, V, G) (method §4)."""

    def at_centres(idx: Tensor) -> Tensor:
        points = gather_points(batch.canonical, idx)  # (B, G, 3)
        return lookup(batch.saliency[:, :, None], batch.proj, points)[..., 0]  # (B, V, G)

    return at_centres


def target_fn(batch: Batch) -> Callable[[Tensor, Tensor], Tensor]:
    """(batch_idx (L,), member_idx (L, K)) → 2D targets (L, K, V·C), views concatenated in order (§8)."""

    def targets(batch_idx: Tensor, member_idx: Tensor) -> Tensor:
        L, K = member_idx.shape
        B, V, C = batch.feature.shape[:3]
        out = member_idx.new_empty(L, K, V, C, dtype=torch.float32)  # every row is written below
        for b, rows in _rows_per_sample(batch_idx, B):  # one lookup per object: its visible members' pixels
            points = batch.canonical[b][member_idx[rows].reshape(-1)]  # (l·K, 3)
            values = lookup(batch.feature[b : b + 1], batch.proj[b : b + 1], points[None])  # (1, V, l·K, C)
            out[rows] = values[0].unflatten(1, (-1, K)).permute(1, 2, 0, 3)  # (l, K, V, C): one copy
        return out.flatten(2)

    return targets


def _rows_per_sample(batch_idx: Tensor, B: int) -> list[tuple[int, slice | Tensor]]:
    """(b, the rows of sample b) for every sample with rows: slices when the rows come sample by
    sample (as ``I2PMAE.visible_members`` gives them), else index tensors."""
    counts = torch.bincount(batch_idx, minlength=B)
    assert len(counts) == B, f"batch_idx holds sample {len(counts) - 1}, the batch has {B}"
    if bool((batch_idx[1:] >= batch_idx[:-1]).all()):
        ends = counts.cumsum(0).tolist()
        return [(b, slice(ends[b] - n, ends[b])) for b, n in enumerate(counts.tolist()) if n]
    return [(b, (batch_idx == b).nonzero()[:, 0]) for b, n in enumerate(counts.tolist()) if n]


def online_maps(batch: Batch, teacher: Callable[[Tensor], tuple[Tensor, Tensor]]) -> Batch:
    """The official step's 2D branch (method §4, §5, §6): project ``batch.xyz`` — the step's input, already
    augmented — into the three views, run the teacher on them, and look every point up in the frame
    that was projected (``canonical`` = ``xyz``). Then call :func:`pretrain_forward` with
    ``augment=False``. xyz (B, N, 3) → proj (B, V, 5), feature (B, V, C, h, w), saliency (B, V, h, w)."""
    with torch.no_grad():
        images, proj = project(batch.xyz.float())  # (B, V, 224, 224), (B, V, 5)
        B, V = images.shape[:2]
        features, saliency = teacher(normalise_images(images).flatten(0, 1))  # (B·V, C, h, w), (B·V, h, w)
    return Batch(
        batch.xyz,
        batch.xyz,
        proj,
        features.reshape(B, V, *features.shape[1:]),
        saliency.reshape(B, V, *saliency.shape[1:]),
    )


def official_step(
    model: I2PMAE,
    batch: Batch,
    teacher: Callable[[Tensor], tuple[Tensor, Tensor]],
    call: Callable[..., Any] | None = None,
) -> Any:
    """The official pre-training step (method §1.6, §4, §5, §8): augment the normalised input, project
    the augmented cloud, run the teacher on its views, mask and look up on that same cloud."""
    augmented = online_maps(Batch(scale_and_translate(batch.xyz), None), teacher)
    return pretrain_forward(model, augmented, augment=False, call=call)


def pretrain_forward(
    model: I2PMAE, batch: Batch, augment: bool = True, call: Callable[..., Any] | None = None
) -> Any:
    """Augment the 3D input, then the model's forward with cached-map lookups.

    call: what runs the forward instead of ``model`` (a DistributedDataParallel-wrapped ``LossOnly``);
    the result has ``loss``, ``loss_3d``, ``loss_2d`` either way."""
    xyz = scale_and_translate(batch.xyz) if augment else batch.xyz
    sal = saliency_fn(batch) if model.cfg.masking == "2d-guided" else None
    tgt = target_fn(batch) if model.cfg.targets == "3d+2d" else None
    out = (call or model)(xyz, saliency_fn=sal, target_fn=tgt)
    return SimpleNamespace(**out) if isinstance(out, dict) else out


def pretrain_step(
    model: I2PMAE,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    *,
    teacher: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
    augment: bool = True,
    precision: str = "fp32",
    call: Callable[..., Any] | None = None,
    any_rank: Callable[[bool], bool] = bool,
) -> tuple[Any, bool]:
    """One optimiser step of pre-training on one batch (method §1.6, §9.1) → (the forward's output with
    ``loss``, ``loss_3d``, ``loss_2d``; whether it stepped).

    With a ``teacher``, the official step (the teacher on the augmented input's views); without one the
    cached maps, the input augmented here unless ``augment`` is False (augmented views: the loader did it).
    ``precision`` "bf16" runs the forward under bf16 autocast. A non-finite loss takes no step: nothing is
    zeroed or updated, and (False) is returned; ``any_rank`` makes that decision the same on every rank
    (one all-reduce under torchrun). No gradient clipping (the official pre-training has none)."""
    device = batch.xyz.device.type
    with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
        if teacher is not None:
            out = official_step(model, batch, teacher, call=call)
        else:
            out = pretrain_forward(model, batch, augment=augment, call=call)
    if any_rank(not bool(torch.isfinite(out.loss))):
        return out, False
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    return out, True


class LossOnly(torch.nn.Module):
    """The model's forward returning only its losses, for DistributedDataParallel.

    The scale-0 encoder norm's output feeds nothing (§3.3), so its parameters would get no gradient
    and DDP would wait for them; a zero-weighted term gives them an exact zero gradient instead, and
    leaves the loss and every other gradient unchanged."""

    def __init__(self, model: I2PMAE):
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """A dict: DDP looks for output tensors in dicts, lists and tuples only."""
        out = self.model(*args, **kwargs)
        unused = sum(t.sum() for t in out.encoded.tokens[:-1]) * 0.0
        return {"loss": out.loss + unused, "loss_3d": out.loss_3d, "loss_2d": out.loss_2d}
