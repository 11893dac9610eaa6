"""BatchNorm statistics of the frozen encoder: how many updates they saw, re-estimating them, their mismatch.

Frozen-encoder features (method §3.4) run the encoder in eval mode, where every BatchNorm layer normalises
with its *running* statistics. Those start at mean 0 / var 1 and move with momentum 0.1 once per training
forward, so after n updates a share 0.9ⁿ of the initial values remains (0.9¹⁵ = 0.21, 0.9¹⁰⁰ = 2.7e-5).
An encoder at random initialisation, or one trained for a few steps, is therefore measured through
statistics that describe no data at all. Re-estimation replaces them by the data's own:

* every BatchNorm of the encoder (``model.h_encoder``; the decoder's are not run) is reset and switched to
  ``momentum=None`` (a cumulative average over batches, each batch weighted equally);
* only the BatchNorm layers are in train mode, everything else stays in eval mode (no drop path), and
  the forward is the one the features use: grouping of the selected points, the encoder, no mask,
  no gradient;
* the layers get their momentum and mode back; the weights are never touched.

Re-estimation overwrites the running buffers: a caller that must keep them (the training monitor, a
model whose state is saved later) wraps it in :func:`i2pmae.recompute.buffers_kept`. Nothing here opens
a file: callers pass arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from i2pmae.evaluate import Selection, select_points
from i2pmae.model import I2PMAE
from i2pmae.ops import fps_eps
from i2pmae.recompute import buffers_kept

STALE_UPDATES = 100  # fewer updates since initialisation: 0.9ⁿ > 2.7e-5 of the init var 1 remains, i.e.
# ≥ 1 % of the variances of ≈ 0.003 measured on trained encoders (docs: learning-probe, README)
STALE_RATIO = 2.0  # running / re-estimated variance (median over channels) beyond 2× either way


def encoder_batchnorms(model: I2PMAE) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers the feature forward runs (the encoder's token embeddings), in module order."""
    return [m for m in model.h_encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bn_updates(model: I2PMAE) -> int:
    """Updates of the running statistics since initialisation: the smallest ``num_batches_tracked`` over
    the encoder's BatchNorm layers (one per training forward; 0 at random initialisation)."""
    return min((int(m.num_batches_tracked) for m in encoder_batchnorms(model)), default=0)


def unmasked_tokens(model: I2PMAE, xyz: Tensor) -> Tensor:
    """xyz (B, N, 3) -> top-scale tokens (B, G_top, C): the forward of ``I2PMAE.global_feature``, in the
    modules' current modes (the caller chooses which layers train)."""
    groups = model.group(xyz)
    B, G = groups.centers[-1].shape[:2]
    return model.forward_encoder(groups, torch.zeros(B, G, dtype=torch.bool, device=xyz.device)).tokens[-1]


@torch.no_grad()
def reestimate_batchnorm(
    model: I2PMAE,
    points: Any,
    *,
    n_points: int,
    selection: Selection = "first",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Replace the encoder's BatchNorm running statistics by their cumulative average over ``points``.

    points: (O, P, 3), sliceable as for :func:`i2pmae.evaluate.extract_features` (numpy, torch, zarr),
    read in order in batches of ``batch_size`` objects; each object contributes its ``n_points`` points
    chosen by ``selection``, as the features do. Returns O, the number of objects used. Afterwards
    ``running_mean`` / ``running_var`` of every layer are the mean over batches of the batch mean /
    unbiased batch variance of the layer's input (B·G·K members per batch), and ``num_batches_tracked``
    is the number of batches. Weights are unchanged; modes and momenta are restored.
    Raises :class:`~i2pmae.errors.InputError` when ``points`` holds no object.
    """
    from i2pmae.errors import InputError

    n_objects = points.shape[0] if hasattr(points, "shape") else len(points)  # O
    if n_objects == 0:
        raise InputError("cannot re-estimate BatchNorm statistics on 0 objects")
    model = model.to(device)
    layers = encoder_batchnorms(model)
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for start in range(0, n_objects, batch_size):
            xyz = torch.as_tensor(np.asarray(points[start : start + batch_size]), dtype=torch.float32)
            xyz = select_points(xyz.to(device), n_points, selection, fps_eps(model.cfg.fps_origin_rule))
            unmasked_tokens(model, xyz)
            if progress is not None:
                progress(xyz.shape[0])
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        for m, mode in modes:
            m.training = mode
    return n_objects


def variance_ratio(
    model: I2PMAE,
    points: Any,
    *,
    n_points: int,
    selection: Selection = "first",
    device: str | torch.device = "cpu",
) -> float:
    """Median over every encoder BatchNorm channel of running var / var re-estimated on ``points``.

    points: (O, P, 3), one batch (a few dozen objects suffice: each layer sees O·G·K members). ≈ 1 when
    the running statistics describe this data; ≫ 1 when they are stale (an encoder that has not
    trained long enough to forget its initial var of 1). The model's buffers are left as found.
    Variances are compared with each layer's ``eps`` added, as normalisation uses them.
    """
    layers = encoder_batchnorms(model)
    running = [m.running_var.detach().clone() + m.eps for m in layers]
    with buffers_kept(model.h_encoder):
        reestimate_batchnorm(
            model,
            points,
            n_points=n_points,
            selection=selection,
            batch_size=max(1, points.shape[0] if hasattr(points, "shape") else len(points)),
            device=device,
        )
        fresh = [m.running_var.detach().clone() + m.eps for m in layers]
    ratios = torch.cat([(r / f).flatten().double().cpu() for r, f in zip(running, fresh, strict=True)])
    return float(ratios.median()) if ratios.numel() else 1.0


def is_stale(updates: int, ratio: float | None) -> bool:
    """Whether running statistics measure their initialisation more than the data (see the constants)."""
    off = ratio is not None and not (1 / STALE_RATIO <= ratio <= STALE_RATIO)
    return updates < STALE_UPDATES or off
