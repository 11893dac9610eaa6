"""The cache-features feed: the float16 table, batches across chunks, and stores equal to per-object forwards."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import zarr

from i2pmae.geometry import IMAGENET_MEAN, IMAGENET_STD, normalise_images
from pipeline.features.feed import ViewBatches, normalise_table, normalise_with, teacher_batches
from pipeline.features.teachers import load_teacher
from pipeline.runner.execute import build_store
from tests.builders import array_bytes, build_stage, toy_config

SETS = [
    "prepare.source=folder",
    "prepare.points=512",
    "prepare.chunk=4",
    "render.subset=256",
    "render.chunk=2",
    "render.views=fixed",  # 3 images per object; a draw store's feed: tests/test_draws.py
]
MEAN, STD = list(IMAGENET_MEAN), list(IMAGENET_STD)


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feed")
    config = toy_config(tmp, [*SETS, "cache-features.teacher=tiny-random"])
    return config, build_stage("render", config, tmp / "data", "toys")["render"]


def test_the_table_normalises_every_float16_value_as_normalise_images():
    every = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(torch.float16).view(1, 256, 256)
    finite = torch.isfinite(every.float())
    expected = normalise_images(every, MEAN, STD)  # (1, 3, 256, 256)
    got = torch.from_numpy(normalise_with(normalise_table(MEAN, STD), every.numpy()))
    assert torch.equal(got[:, :, finite[0]], expected[:, :, finite[0]])
    assert torch.isnan(got[:, :, ~finite[0] & torch.isnan(every[0].float())]).all()


def test_batches_span_chunks_in_order_and_both_paths_give_the_same_images(views):
    _, path = views
    image = zarr.open_array(f"{path}/train/image", mode="r")[:]  # (4, 3, 224, 224)
    chunks = [("train", 0, 0, 2), ("train", 1, 2, 4)]  # 6 + 6 images
    batches = list(teacher_batches(str(path), chunks, MEAN, STD, "cpu", 5, 0))
    assert [len(b.images) for b in batches] == [5, 5, 2]
    assert [b.parts for b in batches] == [[(0, 0, 5)], [(0, 5, 1), (1, 0, 4)], [(1, 4, 2)]]
    expected = normalise_images(torch.from_numpy(image).flatten(0, 1), MEAN, STD)
    assert torch.equal(torch.cat([b.images for b in batches]), expected)
    raw = ViewBatches(str(path), chunks, 3, 5)  # the CUDA path: float16 handed over, normalised after
    assert torch.equal(torch.cat([normalise_images(raw[b][1], MEAN, STD) for b in range(3)]), expected)


@pytest.mark.parametrize("workers", [0, 2])
def test_store_equals_one_forward_per_object_whatever_the_batches_and_workers(views, tmp_path, workers):
    config, path = views
    params = config.params("cache-features").model_copy(
        update={"chunk": 2, "batch_size": 5, "num_workers": workers, "device": "cpu"}
    )
    written = build_store("cache-features", params, path, tmp_path)
    store = zarr.open_group(str(written), mode="r")
    teacher = load_teacher("tiny-random", None, "cpu", "fp32", offline=True)
    image = zarr.open_array(f"{path}/train/image", mode="r")
    for o in range(image.shape[0]):  # today's stage forwarded each chunk's images: same bytes
        f, s = teacher(normalise_images(torch.from_numpy(image[o]), MEAN, STD))
        assert np.array_equal(store["train/feature"][o], f.numpy().astype(np.float16))
        assert np.array_equal(store["train/saliency"][o], s.numpy().astype(np.float32))
    if workers:  # and the batch size does not change the bytes (on CPU: the forward is per image)
        other = build_store(
            "cache-features", params.model_copy(update={"batch_size": 64}), path, tmp_path / "b"
        )
        assert array_bytes(other) == array_bytes(written)


@pytest.mark.slow
def test_torchrun_with_shard_auto_fills_one_store_equal_to_one_process(views, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    config, path = views
    params = config.params("cache-features").model_copy(
        update={"chunk": 1, "num_workers": 0, "device": "cpu"}
    )
    one = build_store("cache-features", params, path, tmp_path / "one")
    data = tmp_path / "two"
    (data / "views").mkdir(parents=True)
    (data / "views" / path.name).symlink_to(path)  # the rendered store; its points store is upstream
    points = Path(zarr.open_group(str(path), mode="r").attrs["upstream_paths"]["prepare"])
    (data / "points").mkdir()
    (data / "points" / points.name).symlink_to(points)
    sets = [*SETS, "cache-features.chunk=1", "cache-features.num_workers=0", "cache-features.device=cpu"]
    prepare_root = config.params("prepare").root
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    cmd += [str(Path(__file__).resolve().parents[1] / "cli.py"), "cache-features", "--dataset", "toys"]
    cmd += ["--teacher", "tiny-random", "--shard", "auto", "--data-root", str(data), "-q"]
    cmd += [a for s in [*sets, f"prepare.root={prepare_root}"] for a in ("--set", s)]
    done = subprocess.run(cmd, capture_output=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    two = data / "features" / one.name
    store = zarr.open_group(str(two), mode="r")
    assert store.attrs["complete"] and store.attrs["shards"] == 2  # filled by two ranks
    assert array_bytes(two) == array_bytes(one)
