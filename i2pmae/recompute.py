"""Recompute instead of keep: activation checkpointing that changes no numbers (memory, method §3.1).

A training step keeps, for the backward pass, every activation the backward needs. For the
scale-0 token embedding of the fine-tuning classifier (B·512·48 members × up to 512 channels)
that is most of a step's memory. ``recomputed(fn, *args, keep=module)`` runs ``fn`` under
``torch.utils.checkpoint`` (non-reentrant): only its tensor inputs are kept, and ``fn`` runs again
in the backward pass when its activations are needed.

The values are the same: the recomputation repeats the same CPU/GPU kernels on the same inputs.
The one thing a second run would change is state: BatchNorm in training mode updates its running
mean, variance and ``num_batches_tracked`` on every call. ``keep``'s buffers are therefore put back
after the recomputation, so they are updated exactly once per step, by the forward pass, as without
recomputation. Dropout / drop path inside ``fn`` would see the same random numbers (the checkpoint
restores the RNG state), but the token embedding has none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn


@contextmanager
def buffers_kept(module: nn.Module) -> Iterator[None]:
    """Restore every buffer of ``module`` (BatchNorm running stats, counters) on exit, bit for bit."""
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def recomputed(fn: Callable[..., Any], *args: Any, keep: nn.Module) -> Any:
    """``fn(*args)``, keeping only the tensor inputs for backward and recomputing the rest there.

    Under ``torch.no_grad`` (evaluation) this is a plain call. ``keep``: the module whose buffers the
    recomputation must leave as the forward pass left them (all of ``fn``'s BatchNorm layers).
    """
    if not torch.is_grad_enabled():
        return fn(*args)
    from torch.utils.checkpoint import checkpoint

    return checkpoint(fn, *args, use_reentrant=False, context_fn=lambda: (nullcontext(), buffers_kept(keep)))
