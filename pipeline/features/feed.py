"""The cache-features feed: views store → normalised teacher batches on the device (method §5.2, §6).

DataLoader workers read the depth images of one teacher batch each, ``(B, 224, 224) float16``,
straight from the views store's shard files (``pipeline.storage.fastread``); a batch may span chunks. For a
CUDA device they hand them over as they are (100 KiB per image, not the 600 KiB of a normalised
float32 one): here they go to the device (pinned, non-blocking), and are
normalised there with :func:`i2pmae.geometry.normalise_images`. For the CPU the workers normalise,
in parallel, through a per-channel table of ``normalise_images`` over all 65,536 float16 values
(a gather instead of a conversion, a subtraction and a division: ≈ 2× faster, equal value for
value), into shared memory. Either way the teacher sees exactly the values it saw before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def normalise_table(mean: list[float], std: list[float]) -> np.ndarray:
    """(3, 65536) float32: ``normalise_images`` of every float16 bit pattern (index = the uint16 bits)."""
    import torch

    from i2pmae.geometry import normalise_images

    every = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(torch.float16).view(1, -1)
    return normalise_images(every, mean, std)[:, 0].numpy()  # (1, 65536) → (3, 1, 65536) → (3, 65536)


def normalise_with(table: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Grey float16 images (B, H, W) → (B, 3, H, W) float32, equal to ``normalise_images`` (§5.2)."""
    bits = images.view(np.uint16)
    out = np.empty((len(images), 3, *images.shape[1:]), np.float32)
    for c in range(3):
        np.take(table[c], bits, out=out[:, c], mode="clip")  # every uint16 is a valid index
    return out


class ViewBatches:
    """A map-style dataset: item b → (b, the images of teacher batch b), batches over every chunk.

    Images are numbered through the chunks in order, object-major (object o's view v is image
    o·V + v of its chunk); batch b holds images [b·B, (b+1)·B), so it may span chunks. An item is
    (m, H, W) float16 as stored, or with ``table`` (m, 3, H, W) float32 normalised, allocated in
    shared memory inside a DataLoader worker (handed over without a copy).
    chunks: [(split, chunk index, start, stop)], objects [start, stop) of the split.
    """

    def __init__(self, views_path: str, chunks: list, n_views: int, batch_size: int, table: Any = None):
        self.views_path, self.n_views, self.batch_size, self.table = views_path, n_views, batch_size, table
        self.objects = [(split, o) for split, _, start, stop in chunks for o in range(start, stop)]
        self.total = len(self.objects) * n_views
        self._readers: dict[str, Any] = {}  # per split, opened in each worker

    def __len__(self) -> int:
        return -(-self.total // self.batch_size)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_readers": {}}

    def __getitem__(self, b: int) -> tuple[int, Any]:
        import torch

        from pipeline.storage.fastread import ArrayReader

        lo, hi = b * self.batch_size, min(self.total, (b + 1) * self.batch_size)
        out = None
        for o in range(lo // self.n_views, -(-hi // self.n_views)):
            split, index = self.objects[o]
            if split not in self._readers:
                self._readers[split] = ArrayReader(self.views_path, split)
            views = self._readers[split].get("image", index)  # (V, H, W) or, augmented, (K, V, H, W) float16
            views = views.reshape(-1, *views.shape[-2:])  # draw-major: image k·V + v
            if out is None:
                shape = (hi - lo, *views.shape[1:]) if self.table is None else (hi - lo, 3, *views.shape[1:])
                dtype = torch.float16 if self.table is None else torch.float32
                out = torch.empty(shape, dtype=dtype)
                if torch.utils.data.get_worker_info() is not None:
                    out.share_memory_()  # filled in place, sent to the main process as it is
            first, last = max(lo, o * self.n_views), min(hi, (o + 1) * self.n_views)
            part = views[first - o * self.n_views : last - o * self.n_views]
            target = out.numpy()[first - lo : last - lo]
            if self.table is None:
                target[...] = part
            else:
                for c in range(3):
                    np.take(self.table[c], part.view(np.uint16), out=target[:, c], mode="clip")
        return b, out


@dataclass
class Batch:
    """A teacher batch: images (B, 3, H, W) float32 normalised, on the device, and where they came
    from: ``parts`` [(chunk k, first image of the chunk in this batch, count)] in order."""

    images: Any
    parts: list[tuple[int, int, int]] = field(default_factory=list)


def teacher_batches(
    views_path: str,
    chunks: list[tuple[str, int, int, int]],
    mean: list[float],
    std: list[float],
    device: str,
    batch_size: int,
    num_workers: int,
    n_views: int = 3,
) -> Iterator[Batch]:
    """Batches of ``batch_size`` images (the last may be smaller) over every chunk, in chunk order.

    Chunk k's images are its objects' views flattened object-major, (n·V) images.
    """
    import torch

    from i2pmae.geometry import normalise_images

    cuda = device.startswith("cuda")
    table = None if cuda else normalise_table(mean, std)
    data = ViewBatches(views_path, chunks, n_views, batch_size, table)
    loader = torch.utils.data.DataLoader(
        data, batch_size=None, num_workers=num_workers if chunks else 0, pin_memory=cuda
    )
    ends = np.cumsum([(stop - start) * n_views for *_, start, stop in chunks])  # image after each chunk
    for b, images in loader:
        lo, hi = b * batch_size, b * batch_size + len(images)
        parts, at = [], lo
        for k in range(int(np.searchsorted(ends, lo, side="right")), len(ends)):
            if at >= hi:
                break
            begin = int(ends[k - 1]) if k else 0
            take = min(hi, int(ends[k])) - at
            parts.append((k, at - begin, take))
            at += take
        images = images.to(device, non_blocking=cuda)
        yield Batch(images if table is not None else normalise_images(images, mean, std), parts)
