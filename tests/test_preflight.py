"""Checks made when a command starts, before any work (docs/pipeline.md, "Checked before work"):
render.subset above the points a store holds is refused in one line; a store or a run's checkpoints that
cannot fit in the free space of their filesystem are refused before their first file, through the same
estimate the stages use, against the real free space of the test's filesystem; the estimates are lower
bounds of what real stores and checkpoints take."""

from __future__ import annotations

import os
import shutil
import signal
import threading

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.core.errors import ResourceError
from pipeline.storage.space import array_bytes, least_image_ratio
from pipeline.storage.store import ArraySpec, store_bytes
from pipeline.train.disk import checkpoint_bytes
from pipeline.train.engine import fit
from pipeline.train.setup import setup
from tests.builders import STAGE_SETS, TINY_ENCODER, build_stage, toy_config

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _clouds(root, per_class=3):
    rng = np.random.default_rng(0)
    for cls in ("chair", "table"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            np.save(root / cls / f"{cls}_{i}.npy", rng.normal(size=(300, 3)).astype(np.float32))
    return root


def test_render_subset_above_the_stored_points_is_refused_before_any_views_store(tmp_path):
    root, data = _clouds(tmp_path / "root"), tmp_path / "data"
    small = ["--set", "prepare.points=32", "--set", "prepare.oversample=2"]
    assert invoke("prepare", "folder", "--root", root, "--data-root", data, *small).exit_code == 0
    out = invoke("render", "--data-root", data, "--set", "render.subset=33", "--set", "render.views=fixed")
    assert out.exit_code == 2, out.output
    text = " ".join(out.output.split())
    assert "render.subset=33 (from --set render.subset=33)" in text and "holds: 32" in text, text
    assert "--set render.subset=32 or fewer" in text and "Traceback" not in text
    assert not (data / "views").exists()  # refused before its store (or lock) was made


def test_a_prepare_too_big_for_its_disk_is_refused_before_any_file_is_written(tmp_path):
    root, data = _clouds(tmp_path / "root"), tmp_path / "data"
    points = shutil.disk_usage(tmp_path).free // 6  # 6 objects × 12 bytes a point: > 10 × the free space
    out = invoke(
        "prepare", "folder", "--root", root, "--data-root", data, "--set", f"prepare.points={points}"
    )
    assert out.exit_code == 2, out.output
    text = " ".join(out.output.split())
    assert (
        "points store root-" in text and "cannot fit: at least" in text and "free on its filesystem" in text
    )
    assert "nothing was written" in text and "--store-root" in text and "Traceback" not in text
    assert not data.exists() or not any(p.is_file() for p in data.rglob("*"))  # no store, lock or record


def _spec(name, array):
    """The ArraySpec a stage would have created for an array found in a store."""
    from zarr.codecs import ZstdCodec

    compressed = any(isinstance(c, ZstdCodec) for c in array.compressors)
    return ArraySpec(name, array.shape, array.chunks, array.dtype, (), compress=compressed)


def test_store_estimates_are_lower_bounds_of_what_real_stores_take(tmp_path):
    import zarr

    stores = build_stage("cache-features", toy_config(tmp_path, STAGE_SETS), tmp_path / "data", "toys")
    ratios = {"image": least_image_ratio(256)}  # STAGE_SETS render 256 points
    checked = set()
    for stage, path in stores.items():
        group = zarr.open_group(str(path), mode="r")
        for split in group.attrs["splits"]:
            for name, array in group[split].arrays():
                written = (
                    store_bytes(path / split / name) - (path / split / name / "zarr.json").stat().st_size
                )
                least = array_bytes(_spec(name, array), ratios)
                assert least <= written, (stage, split, name, least, written)
                if name in ("points", "image", "feature"):
                    assert least >= written / 4, (stage, name, least, written)  # a useful bound, not 0
                checked.add(name)
    assert {"points", "image", "subset", "feature", "saliency"} <= checked


# ---- a run's checkpoints ---------------------------------------------------------------------------

POINTS_ONLY = [  # random masking, 3D targets: the points store alone; a tiny model
    "prepare.source=folder",
    "prepare.points=512",
    "prepare.oversample=2",
    "train.points=512",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.masking=random",
    "train.targets=3d",
    "train.monitor_dataset=null",
]
ARCH = {k: v for k, v in TINY_ENCODER.items() if k not in ("targets", "drop_path")}


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    from pipeline.runner.plan import Context, plan
    from pipeline.train.stage import train_inputs

    tmp = tmp_path_factory.mktemp("room")
    config = toy_config(tmp, POINTS_ONLY)
    build_stage("prepare", config, tmp / "data", "toys")
    return config, train_inputs(plan("train", Context(config, tmp / "data", "toys")))


def test_checkpoint_estimate_is_a_lower_bound_of_the_file(points, tmp_path):
    config, inputs = points
    s = setup(
        config.params("train").model_copy(update={"max_steps": 1}), inputs, tmp_path / "r", "cpu", arch=ARCH
    )
    written = fit(s).stat().st_size
    assert 0.9 * written <= checkpoint_bytes(s.model) <= written


def test_a_run_whose_checkpoints_cannot_fit_is_refused_before_its_first_step(points, tmp_path):
    config, inputs = points
    s = setup(config.params("train"), inputs, tmp_path / "big", "cpu", arch=ARCH)
    kept = shutil.disk_usage(tmp_path).free // checkpoint_bytes(s.model) + 10  # one ckpt-epoch-XXX.pt each
    s.params = s.params.model_copy(update={"epochs": int(kept), "keep_every": 1, "keep_from": 0})
    started, done = tmp_path / "big" / "metrics.jsonl", threading.Event()

    def stop_if_it_trains() -> None:  # were the check gone, SIGTERM ends the run after one step
        while not done.wait(0.05):
            if started.is_file() and started.stat().st_size:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=stop_if_it_trains, daemon=True).start()
    try:
        with pytest.raises(ResourceError) as err:
            fit(s)
    finally:
        done.set()
    message = err.value.message
    assert f"run big's checkpoints ({kept + 1:,} × " in message, message
    assert "ckpt-last.pt, ckpt-epoch-000.pt, ckpt-epoch-001.pt, ckpt-epoch-002.pt and " in message, message
    assert "nothing was trained" in message and "train.keep_every=0" in err.value.hint
    assert not (tmp_path / "big" / "metrics.jsonl").exists() and not list(tmp_path.glob("big/ckpt-*"))
