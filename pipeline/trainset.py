"""The training dataset: points, views and features stores → one object's tensors per item.

Per item (design.md "Training from caches", spec §1.1): a random N of the object's stored points
(a permutation's first N, drawn from (seed, epoch, index), so the same epoch gives the same subsets
whatever the worker count or a resume), re-normalised into the unit sphere for the 3D input
(``xyz``) and kept in the stored frame for 2D lookups (``canonical``); the object's projection
parameters; its cached feature maps and saliency (cached mode) or the rendered subset's points
(online-teacher mode). Stores are opened lazily in each DataLoader worker and read one object at a
time straight from the shard files (``pipeline.fastread``): the order stays a uniform shuffle, as the paper's.
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

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        r = self._open()
        cached = "features" in r and not self.online
        stored = r["points"].get("points", index)  # (P, 3) float32, canonical frame
        rng = np.random.default_rng([self.seed, self.epoch, index])
        chosen = rng.permutation(self.stored_points)[: self.n_points]  # spec §1.1: random, not FPS
        canonical = stored[chosen]
        centred = canonical - canonical.mean(axis=0, keepdims=True)
        xyz = centred / np.sqrt((centred**2).sum(axis=1)).max()  # spec §1.1 pc_norm after subsampling
        item = {"xyz": torch.from_numpy(xyz.astype(np.float32)), "canonical": torch.from_numpy(canonical)}
        if "views" in r:
            item["proj"] = torch.from_numpy(self._proj[index].copy())  # (V, 5)
            if self.online:
                subset = r["views"].get("subset", index)
                item["render_points"] = torch.from_numpy(stored[subset])  # (R, 3)
        if cached:
            item["feature"] = torch.from_numpy(r["features"].get("feature", index))  # (V, C, h, w) float16
            item["saliency"] = torch.from_numpy(r["features"].get("saliency", index))  # (V, h, w) float32
        return item


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled indices of one epoch from (seed, epoch), sliced for this rank, from a start offset.

    drop_last as spec §1.1: only full batches. ``start_batch`` skips batches already trained (resume).
    """

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.length, self.batch_size, self.seed, self.rank, self.world = length, batch_size, seed, rank, world
        self.epoch, self.start_batch = 0, 0

    def batches_per_epoch(self) -> int:
        return self.length // (self.batch_size * self.world)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=g)
        per_rank = self.batches_per_epoch() * self.batch_size
        mine = order[self.rank :: self.world][:per_rank]
        return iter(mine[self.start_batch * self.batch_size :].tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start_batch) * self.batch_size
