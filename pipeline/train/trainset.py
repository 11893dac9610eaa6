"""The training dataset: points, views and features stores → one object's tensors per item.

Per item (docs/training.md, "Training from caches"; method §1.1): a random N of the object's stored points
(a permutation's first N, drawn from (seed, epoch, index), so the same epoch gives the same subsets
whatever the worker count or a resume), re-normalised into the unit sphere for the 3D input
(``xyz``), and the same points in the frame the views were projected from (``canonical``), with the
object's projection parameters and cached feature maps and saliency. The epoch's order stays a
uniform shuffle, as the paper's.

* No views store (3D-only training, or an online teacher, which projects ``xyz`` itself): ``xyz``
  and ``canonical`` (the stored frame) only.
* Of the features store only the arrays the run uses (``maps``, see :func:`maps_used`): saliency for
  2D-guided masking, the feature maps for 2D targets (≈ 99 % of the bytes of an item).
* Fixed views: ``canonical`` is the stored frame; the step augments ``xyz`` (method §1.6).
* Augmented views (``pipeline.render.draws``): a draw k of the object is picked from the same generator;
  ``xyz`` already carries that draw's scale and shift (the step must not augment again) and
  ``canonical`` is the same points in the draw's frame. With ``input_subset="draw"`` the points are
  the draw's own subset, so ``xyz`` equals the cloud its views were projected from.

Speed: objects are read straight from the stores' shard files (``pipeline.storage.fastread``), and
``batch_loader`` gives each DataLoader worker whole batches, read in place into shared-memory batch
tensors (no per-object tensors, no collate copy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.core.errors import StoreError
from pipeline.sources.base import normalise_unit_sphere


class CachedShapes(torch.utils.data.Dataset):
    """Map-style dataset over one split. ``set_epoch(e)`` changes the point subsets (and draws).

    An item: ``xyz``, ``canonical`` (N, 3) float32; with a views store ``proj`` (V, 5) float32 (augmented
    views: also ``draw`` (1,) int32, the draw's index); with a features store those of ``feature``
    (V, C, h, w) float16 and ``saliency`` (V, h, w) float32 that ``maps`` names (default both).
    ``augmented``: whether ``xyz`` is already augmented.
    Errors: StoreError for a missing split, too few stored points, or ``input_subset="draw"`` with
    N different from the draws' subset size; DamagedStore for a damaged store (missing or truncated
    files now, checksums and NaN points as items are read).
    """

    def __init__(
        self,
        points_path: str,
        views_path: str | None,
        features_path: str | None,
        split: str,
        n_points: int,
        seed: int,
        input_subset: str = "draw",
        maps: tuple[str, ...] = ("feature", "saliency"),
    ):
        import zarr

        from pipeline.storage.verify import quick_check

        unknown = set(maps) - {"feature", "saliency"}
        assert not unknown, (
            f"maps names arrays of the features store (feature, saliency), got {sorted(unknown)}"
        )
        self.maps = tuple(maps) if features_path else ()  # features-store arrays read, in this order
        self.paths = {
            "points": points_path,
            "views": views_path,
            "features": features_path if self.maps else None,
        }
        self.split, self.n_points, self.seed, self.input_subset = split, n_points, seed, input_subset
        self.epoch = 0
        for path in self.paths.values():  # missing or truncated files: found now, not at their first read
            if path:
                quick_check(path)
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
        views = zarr.open_group(views_path, mode="r") if views_path else None
        self.draws = int(views.attrs.get("draws", 0)) if views is not None else 0  # 0: fixed or no views
        self.augmented = self.draws > 0
        if self.augmented and input_subset == "draw":
            r = views[f"{split}/subset"].shape[-1]
            if r != n_points:
                raise StoreError(
                    f"train.input_subset=draw feeds each draw's own {r} points, but train.points={n_points}",
                    f"use --set train.points={r}, or input_subset=fresh",
                )
        self._readers: dict[str, Any] | None = None
        self._whole: dict[str, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _open(self) -> dict[str, Any]:
        """One reader per store (opened lazily, again in each worker process); the small per-object
        arrays (``proj``, a draw's augmentation) are read whole: ≈ 60 B per object and draw."""
        from pipeline.storage.fastread import ArrayReader

        if self._readers is None:
            readers = {k: ArrayReader(p, self.split) for k, p in self.paths.items() if p}
            if "views" in readers:
                small = ("proj", "scale", "shift", "centre", "radius") if self.augmented else ("proj",)
                self._whole = {name: readers["views"].whole(name) for name in small}
            self._readers = readers
        return self._readers

    def __getstate__(self) -> dict[str, Any]:  # spawned workers open their own readers
        return {**self.__dict__, "_readers": None, "_whole": {}}

    def _rows(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Each item field's (shape, dtype)."""
        r = self._open()
        f32, per_draw = np.dtype(np.float32), self.augmented
        rows = {"xyz": ((self.n_points, 3), f32), "canonical": ((self.n_points, 3), f32)}
        if "views" in r:
            rows["proj"] = (self._whole["proj"].shape[2 if per_draw else 1 :], f32)
            if per_draw:
                rows["draw"] = ((1,), np.dtype(np.int32))
        for name in self.maps:
            rows[name] = r["features"].row(name, per_draw)
        return rows

    def _fill(self, index: int, epoch: int, out: dict[str, np.ndarray]) -> None:
        """Write object ``index``'s fields in ``epoch`` into ``out`` (arrays of ``_rows``' shapes)."""
        r = self._open()
        stored = r["points"].get("points", index)  # (P, 3) float32, canonical frame
        rng = np.random.default_rng([self.seed, epoch, index])
        chosen = rng.permutation(self.stored_points)[: self.n_points]  # method §1.1: random, not FPS
        if self.augmented:
            self._fill_draw(index, int(rng.integers(self.draws)), stored, chosen, rng, out)
            return
        canonical = stored[chosen]
        out["xyz"][...] = normalise_unit_sphere(canonical)  # method §1.1 pc_norm, after subsampling
        out["canonical"][...] = canonical
        if "proj" in out:
            out["proj"][...] = self._whole["proj"][index]  # (V, 5)
        for name in self.maps:  # feature (V, C, h, w) float16, saliency (V, h, w) float32: read in place
            r["features"].get(name, index, out[name])

    def _fill_draw(
        self, index: int, k: int, stored: np.ndarray, chosen: np.ndarray, rng: Any, out: dict
    ) -> None:
        """Augmented views: the fields of draw k (``pipeline.render.draws``); ``rng`` the item's generator."""
        from pipeline.render.draws import frame

        r, w = self._open(), self._whole
        scale, shift = w["scale"][index, k], w["shift"][index, k]
        if self.input_subset == "draw":  # the draw's own cloud, exactly the input its views show, in a
            subset = r["views"].get("subset", index, draw=k)  # fresh random order (FPS starts at point 0)
            points = stored[subset[rng.permutation(len(subset))]]
            out["xyz"][...] = out["canonical"][...] = frame(
                points, w["centre"][index, k], w["radius"][index, k], scale, shift
            )
        else:  # a fresh subset, normalised as the paper's input; looked up in the draw's frame
            points = stored[chosen]
            out["xyz"][...] = normalise_unit_sphere(points) * scale + shift  # its own pc_norm (§1.1, §1.6)
            out["canonical"][...] = frame(points, w["centre"][index, k], w["radius"][index, k], scale, shift)
        out["proj"][...] = w["proj"][index, k]  # (V, 5)
        out["draw"][...] = k
        for name in self.maps:  # feature (V, C, h, w) float16, saliency (V, h, w) float32: in place
            r["features"].get(name, index, out[name], draw=k)

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


def maps_used(masking: str, targets: str) -> tuple[str, ...]:
    """The features-store arrays a run's step reads: the feature maps for 2D targets, the saliency for
    2D-guided masking; none for random masking and 3D targets (Point-M2AE's step)."""
    return (("feature",) if targets == "3d+2d" else ()) + (("saliency",) if masking == "2d-guided" else ())


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
    ``batch_size`` (the total over ranks, method §9.1), of which this rank takes its ``batch_size // world``
    consecutive slice; from a start batch on.

    The global batches, and so the steps per epoch and the objects of every step, do not depend on
    ``world``. drop_last as method §1.1: only full batches. ``start_batch`` skips batches already trained.
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
