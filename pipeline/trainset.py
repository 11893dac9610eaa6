"""The training dataset: points, views and features stores → one object's tensors per item.

Per item (design.md "Training from caches", spec §1.1): a random N of the object's stored points
(a permutation's first N, drawn from (seed, epoch, index), so the same epoch gives the same subsets
whatever the worker count or a resume), re-normalised into the unit sphere for the 3D input
(``xyz``) and kept in the stored frame for 2D lookups (``canonical``); the object's projection
parameters; its cached feature maps and saliency (cached mode) or the rendered subset's points
(online-teacher mode). The epoch's order stays a uniform shuffle, as the paper's.

Speed: objects are read straight from the stores' shard files (``pipeline.fastread``), and
``batch_loader`` gives each DataLoader worker whole batches, read in place into shared-memory batch
tensors (no per-object tensors, no collate copy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.errors import StoreError


class CachedShapes(torch.utils.data.Dataset):
    """Map-style dataset over one split. ``set_epoch(e)`` changes the point subsets.

    An item: ``xyz``, ``canonical`` (N, 3) float32; with a views store ``proj`` (V, 5) float32 and,
    online, ``render_points`` (R, 3) float32; cached, ``feature`` (V, C, h, w) float16 and
    ``saliency`` (V, h, w) float32. Errors: StoreError for a missing split or too few stored points.
    """

    def __init__(
        self,
        points_path: str,
        views_path: str | None,
        features_path: str | None,
        split: str,
        n_points: int,
        seed: int,
        online: bool = False,
    ):
        import zarr

        self.paths = {"points": points_path, "views": views_path, "features": features_path}
        self.split, self.n_points, self.seed, self.online = split, n_points, seed, online
        self.epoch = 0
        group = zarr.open_group(points_path, mode="r")
        if split not in group.attrs.get("splits", []):
            raise StoreError(
                f"split {split!r} is not in {points_path}", f"splits: {group.attrs.get('splits')}"
            )
        self.length, self.stored_points = group[f"{split}/points"].shape[:2]
        if n_points > self.stored_points:
            raise StoreError(
                f"train.points={n_points} but {points_path} stores {self.stored_points} points per object",
                f"use --set train.points={self.stored_points} or prepare more points",
            )
        self._readers: dict[str, Any] | None = None
        self._proj: np.ndarray | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _open(self) -> dict[str, Any]:
        """One reader per store (opened lazily, again in each worker process); ``proj`` read whole."""
        from pipeline.fastread import ArrayReader

        if self._readers is None:
            readers = {k: ArrayReader(p, self.split) for k, p in self.paths.items() if p}
            if "views" in readers:  # (S, V, 5) float32: ≈ 60 B per object, read once per process
                self._proj = readers["views"].whole("proj")
            self._readers = readers
        return self._readers

    def __getstate__(self) -> dict[str, Any]:  # spawned workers open their own readers
        return {**self.__dict__, "_readers": None, "_proj": None}

    def _rows(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Each item field's (shape, dtype)."""
        r = self._open()
        f32 = np.dtype(np.float32)
        rows = {"xyz": ((self.n_points, 3), f32), "canonical": ((self.n_points, 3), f32)}
        if "views" in r:
            rows["proj"] = (self._proj.shape[1:], f32)
            if self.online:
                rows["render_points"] = ((r["views"].row("subset")[0][0], 3), f32)
        if "features" in r and not self.online:
            rows["feature"] = r["features"].row("feature")
            rows["saliency"] = r["features"].row("saliency")
        return rows

    def _fill(self, index: int, epoch: int, out: dict[str, np.ndarray]) -> None:
        """Write object ``index``'s fields in ``epoch`` into ``out`` (arrays of ``_rows``' shapes)."""
        r = self._open()
        stored = r["points"].get("points", index)  # (P, 3) float32, canonical frame
        rng = np.random.default_rng([self.seed, epoch, index])
        chosen = rng.permutation(self.stored_points)[: self.n_points]  # spec §1.1: random, not FPS
        canonical = stored[chosen]
        centred = canonical - canonical.mean(axis=0, keepdims=True)
        out["xyz"][...] = centred / np.sqrt((centred**2).sum(axis=1)).max()  # spec §1.1 pc_norm
        out["canonical"][...] = canonical
        if "proj" in out:
            out["proj"][...] = self._proj[index]  # (V, 5)
        if "render_points" in out:
            out["render_points"][...] = stored[r["views"].get("subset", index)]  # (R, 3)
        if "feature" in out:
            r["features"].get("feature", index, out["feature"])  # (V, C, h, w) float16, read in place
            r["features"].get("saliency", index, out["saliency"])  # (V, h, w) float32

    def __getitem__(self, index: int | tuple[int, list[int]]) -> dict[str, torch.Tensor]:
        """One item; or for ``(epoch, [indices])`` (``batch_loader``) the batch ``default_collate``
        would make of those items in that epoch, filled in place (in shared memory inside a
        DataLoader worker, so it is handed over without a copy)."""
        batch = isinstance(index, tuple)
        epoch, indices = index if batch else (self.epoch, [index])
        shared = batch and torch.utils.data.get_worker_info() is not None
        items = {}
        for key, (shape, dtype) in self._rows().items():
            t = torch.empty((len(indices), *shape) if batch else shape, dtype=_TORCH[dtype.name])
            items[key] = t.share_memory_() if shared else t
        views = {k: t.numpy() for k, t in items.items()}
        for k, i in enumerate(indices):
            self._fill(i, epoch, {key: v[k] for key, v in views.items()} if batch else views)
        return items


class _EpochBatches(torch.utils.data.Sampler):
    """(epoch, batch of indices) from an ``EpochSampler``: the epoch travels with the indices, so
    persistent DataLoader workers never use a stale one."""

    def __init__(self, sampler: EpochSampler):
        self.sampler = sampler

    def __iter__(self):
        size, epoch, batch = self.sampler.local, self.sampler.epoch, []  # this rank's share of a batch
        for i in self.sampler:
            batch.append(i)
            if len(batch) == size:
                yield epoch, batch
                batch = []

    def __len__(self) -> int:
        return len(self.sampler) // self.sampler.local


class EpochSampler(torch.utils.data.Sampler):
    """This rank's indices of one epoch: shuffled from (seed, epoch), cut into global batches of
    ``batch_size`` (the total over ranks, spec §9.1), of which this rank takes its ``batch_size // world``
    consecutive slice; from a start batch on.

    The global batches, and so the steps per epoch and the objects of every step, do not depend on
    ``world``. drop_last as spec §1.1: only full batches. ``start_batch`` skips batches already trained.
    """

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} does not split over {world} ranks")
        self.length, self.batch_size, self.seed, self.rank, self.world = length, batch_size, seed, rank, world
        self.local = batch_size // world  # objects per rank and step
        self.epoch, self.start_batch = 0, 0

    def batches_per_epoch(self) -> int:
        return self.length // self.batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=g)
        batches = order[: self.batches_per_epoch() * self.batch_size].view(-1, self.batch_size)
        mine = batches[self.start_batch :, self.rank * self.local : (self.rank + 1) * self.local]
        return iter(mine.reshape(-1).tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start_batch) * self.local


_TORCH = {"float16": torch.float16, "float32": torch.float32, "int32": torch.int32}


def batch_loader(dataset: CachedShapes, sampler: EpochSampler, **kwargs: Any) -> torch.utils.data.DataLoader:
    """A DataLoader of the sampler's batches, each read whole by one worker into its batch tensors
    (no per-object tensors to collate); workers persist across epochs. kwargs: num_workers,
    pin_memory, generator, ... as for ``torch.utils.data.DataLoader``."""
    kwargs.setdefault("persistent_workers", kwargs.get("num_workers", 0) > 0)
    return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=_EpochBatches(sampler), **kwargs)
