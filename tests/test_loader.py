"""The training loader's shard reads: same bytes as zarr, same items whatever the workers, resume, ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from pipeline.core.errors import DamagedStore
from pipeline.storage.fastread import ArrayReader
from pipeline.storage.store import ArraySpec, StoreWriter, per_object
from pipeline.train.trainset import CachedShapes, EpochSampler, batch_loader

N, P, V, C, H = 11, 64, 3, 8, 2  # objects, stored points, views, channels, patch grid side


def write_store(path, stage, arrays, specs, chunk=4, skip_chunk=None):
    """A real store through StoreWriter: one split "train", chunk by chunk, one chunk optionally left out."""
    writer = StoreWriter(path, {"fingerprint": stage, "stage": stage})
    writer.create({"train": (-(-N // chunk), specs)})
    for i, start in enumerate(range(0, N, chunk)):
        if i == skip_chunk:
            continue
        for name, values in arrays.items():
            writer.write("train", name, start, values[start : start + chunk])
        writer.mark_done("train", i)
    return str(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loader")
    rng = np.random.default_rng(0)
    points = rng.normal(size=(N, P, 3)).astype(np.float32)
    feature = rng.normal(size=(N, V, C, H, H)).astype(np.float16)
    saliency = rng.random((N, V, H, H)).astype(np.float32)
    proj = rng.random((N, V, 5)).astype(np.float32)
    pts = write_store(
        tmp / "points.zarr",
        "prepare",
        {"points": points},
        [per_object("points", (N, P, 3), 4, "float32", ("object", "point", "xyz"))],
    )
    views = write_store(
        tmp / "views.zarr",
        "render",
        {"proj": proj},
        [ArraySpec("proj", (N, V, 5), (4, V, 5), "float32", ("object", "view", "param"))],
    )
    feats = write_store(
        tmp / "features.zarr",
        "cache-features",
        {"feature": feature, "saliency": saliency},
        [
            per_object("feature", (N, V, C, H, H), 4, "float16", ("o", "v", "c", "r", "q"), compress=False),
            per_object("saliency", (N, V, H, H), 4, "float32", ("o", "v", "r", "q")),
        ],
        skip_chunk=1,  # objects 4..7 never written: zarr reads them as the fill value
    )
    return pts, views, feats


@pytest.mark.parametrize("name", ["feature", "saliency"])
def test_shard_reads_equal_zarr_reads_for_every_object(stores, name):
    reader, array = ArrayReader(stores[2], "train"), zarr.open_array(f"{stores[2]}/train/{name}", mode="r")
    assert type(reader._array(name)).__name__ == "_Sharded"  # the fast path, not the zarr fallback
    for i in range(N):
        got = reader.get(name, i)
        assert got.dtype == array.dtype and got.flags.writeable
        assert np.array_equal(got, array[i])
    assert not reader.get(name, 5).any()  # an unwritten chunk reads as the fill value 0


def test_compressed_points_and_other_layouts_read_like_zarr(stores):
    reader = ArrayReader(stores[0], "train")
    array = zarr.open_array(f"{stores[0]}/train/points", mode="r")
    assert all(np.array_equal(reader.get("points", i), array[i]) for i in range(N))
    views = ArrayReader(stores[1], "train")  # proj: plain chunks, not sharded → read through zarr
    proj = zarr.open_array(f"{stores[1]}/train/proj", mode="r")
    assert np.array_equal(views.get("proj", 6), proj[6]) and type(views._array("proj")).__name__ == "Array"


def test_a_corrupt_shard_index_is_an_error_not_wrong_data(stores, tmp_path):
    import shutil

    copy = tmp_path / "features.zarr"
    shutil.copytree(stores[2], copy)
    shard = copy / "train" / "feature" / "c" / "0" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # a byte of the index: its crc32c no longer matches
    shard.write_bytes(bytes(data))
    with pytest.raises(
        DamagedStore, match="train/feature object 1: shard file c/0/0/0/0/0: shard index checksum"
    ):
        ArrayReader(str(copy), "train").get("feature", 1)


def batches(stores, workers, epoch=1, start=0, rank=0, world=1):
    """Every batch of an epoch through batch_loader (whole batches per worker, as i2p train reads)."""
    data = CachedShapes(*stores, "train", 16, seed=3)
    sampler = EpochSampler(len(data), 2, seed=3, rank=rank, world=world)
    sampler.set_epoch(epoch, start)
    return list(batch_loader(data, sampler, num_workers=workers))


def collated(stores, epoch=1, start=0):
    """The same epoch as default_collate of single items through a plain DataLoader."""
    data = CachedShapes(*stores, "train", 16, seed=3)
    sampler = EpochSampler(len(data), 2, seed=3)
    sampler.set_epoch(epoch, start)
    data.set_epoch(epoch)
    return list(torch.utils.data.DataLoader(data, batch_size=2, sampler=sampler))


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b, strict=True)
    )


def test_same_items_whatever_the_worker_count_and_after_a_mid_epoch_resume(stores):
    serial = batches(stores, 0)
    assert same(serial, collated(stores))  # whole-batch reads equal collated single items
    assert same(serial, batches(stores, 2))  # forked workers after this process read the same stores
    assert same(serial[2:], batches(stores, 0, start=2))  # resume at batch 2 of the epoch
    assert not same(serial, batches(stores, 0, epoch=2))  # another epoch: another order and subsets
    zarr_feature = zarr.open_array(f"{stores[2]}/train/feature", mode="r")
    first = EpochSampler(N, 2, seed=3)
    first.set_epoch(1)
    assert torch.equal(serial[0]["feature"][0], torch.from_numpy(zarr_feature[next(iter(first))]))


def test_ranks_get_disjoint_slices_of_the_epoch(stores):
    seen = [EpochSampler(N, 2, seed=3, rank=r, world=2) for r in range(2)]  # global batch 2: one object each
    for s in seen:
        s.set_epoch(4)
    a, b = (list(s) for s in seen)
    assert len(a) == len(b) == N // 2 and not set(a) & set(b)
    assert same(batches(stores, 0, epoch=4, rank=1, world=2), batches(stores, 2, epoch=4, rank=1, world=2))


def test_persistent_workers_follow_the_epoch_of_the_sampler(stores):
    data = CachedShapes(*stores, "train", 16, seed=3)
    sampler = EpochSampler(len(data), 2, seed=3)
    loader = batch_loader(data, sampler, num_workers=2)  # workers persist across epochs
    for epoch in (1, 2, 1):
        sampler.set_epoch(epoch)
        assert same(list(loader), collated(stores, epoch))
