"""Room for a run's checkpoints, checked before its first step: a run that cannot save would train for
hours, then lose it all when ``ckpt-last.pt`` fails to write.

One checkpoint (:func:`pipeline.storage.train_state.save_checkpoint`) holds the model's state dict and
AdamW's two moments of every trained parameter (``exp_avg``, ``exp_avg_sq``: the parameter's size each),
so it takes at least ``state_dict bytes + 2 × trained parameter bytes`` (212 MB for the paper's model); the
zip container, the config and the RNG states add a few kilobytes. The files this invocation will write:
``ckpt-last.pt`` (a new file, or its temporary copy while it is replaced), ``ckpt-best.pt`` when a monitor
runs and none exists yet, and every ``ckpt-epoch-XXX.pt`` of an epoch it will finish on the kept cadence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.storage import rundir
from pipeline.storage.space import check_space, size


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """The least bytes of one checkpoint of ``model`` (unwrapped from DDP) trained with AdamW."""
    core = getattr(model, "module", model)
    state = sum(t.numel() * t.element_size() for t in core.state_dict().values())
    moments = 2 * sum(p.numel() * p.element_size() for p in core.parameters() if p.requires_grad)
    return state + moments


def kept_epochs(params: Any, first: int, last: int) -> range:
    """The epochs in ``first … last`` that keep a ckpt-epoch-XXX.pt (``keep_every``, ``keep_from``: as
    :func:`pipeline.evaluate.monitor.is_kept`), as a range: a run of a million epochs costs one division."""
    every, start = params.keep_every, max(first, params.keep_from)
    if every <= 0:
        return range(0)
    return range(-(-start // every) * every, last + 1, every)  # from the first multiple of every ≥ start


def files_to_write(
    params: Any, run: Path, position: dict[str, int], per_epoch: int, monitored: bool
) -> tuple[int, str]:
    """(how many checkpoint files a fit from ``position`` writes, their names for a message); ``per_epoch``:
    steps in an epoch. Kept epochs from the position on were never written (ckpt-last.pt is the newest)."""
    last = params.epochs - 1  # the last epoch that ends in this invocation
    if params.max_steps is not None:
        last = min(last, params.max_steps // max(per_epoch, 1) - 1)
    names = ["ckpt-last.pt"]
    if monitored and not rundir.checkpoint(run, "best").exists():
        names.append("ckpt-best.pt")
    kept = kept_epochs(params, position["epoch"], last)
    more = f" and {len(kept) - 3:,} more" if len(kept) > 3 else ""
    return len(names) + len(kept), ", ".join(names + [f"ckpt-epoch-{e:03d}.pt" for e in kept[:3]]) + more


def check_room(s: Any, monitored: bool) -> None:
    """ResourceError, before the first step, when the checkpoints of the set-up run ``s``
    (:class:`pipeline.train.setup.Setup`) cannot fit on its disk."""
    one = checkpoint_bytes(s.model)
    n, names = files_to_write(s.params, s.run, s.position, s.sampler.batches_per_epoch(), monitored)
    fewer = "; --set train.keep_every=0 keeps no ckpt-epoch-XXX.pt" if "ckpt-epoch-" in names else ""
    check_space(
        s.run / "ckpt-last.pt",
        one * n,
        f"run {s.run.name}'s checkpoints ({n:,} × {size(one)}: {names})",
        "free space (`i2p gc` lists stores and optimizer states nothing uses), or train under a --data-root "
        f"on a larger disk{fewer}",
        kept="nothing was trained",
    )
