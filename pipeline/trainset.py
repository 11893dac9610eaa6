"""The training dataset: points, views and features stores → one object's tensors per item.

Per item (design.md "Training from caches", spec §1.1): a random N of the object's stored points
(a permutation's first N, drawn from (seed, epoch, index), so the same epoch gives the same subsets
whatever the worker count or a resume), re-normalised into the unit sphere for the 3D input
(``xyz``) and kept in the stored frame for 2D lookups (``canonical``); the object's projection
parameters; its cached feature maps and saliency (cached mode) or the rendered subset's points
(online-teacher mode). Stores are opened lazily in each DataLoader worker.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.errors import StoreError


class CachedShapes(torch.utils.data.Dataset):
    """Map-style dataset over one split. ``set_epoch(e)`` changes the point subsets."""

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
        self._groups: dict[str, Any] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _open(self) -> dict[str, Any]:
        import zarr

        if self._groups is None:
            self._groups = {k: zarr.open_group(p, mode="r")[self.split] for k, p in self.paths.items() if p}
        return self._groups

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = self._open()
        stored = g["points"]["points"][index]  # (P, 3) float32, canonical frame
        rng = np.random.default_rng([self.seed, self.epoch, index])
        chosen = rng.permutation(self.stored_points)[: self.n_points]  # spec §1.1: random, not FPS
        canonical = stored[chosen]
        centred = canonical - canonical.mean(axis=0, keepdims=True)
        xyz = centred / np.sqrt((centred**2).sum(axis=1)).max()  # spec §1.1 pc_norm after subsampling
        item = {"xyz": torch.from_numpy(xyz.astype(np.float32)), "canonical": torch.from_numpy(canonical)}
        if "views" in g:
            item["proj"] = torch.from_numpy(g["views"]["proj"][index])  # (V, 5)
            if self.online:
                subset = g["views"]["subset"][index]
                item["render_points"] = torch.from_numpy(stored[subset])  # (R, 3)
        if "features" in g and not self.online:
            item["feature"] = torch.from_numpy(g["features"]["feature"][index])  # (V, C, h, w) float16
            item["saliency"] = torch.from_numpy(g["features"]["saliency"][index])  # (V, h, w)
        return item


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
