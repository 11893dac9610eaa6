"""The render and cache-features stages on a tiny real dataset: schema, skip, resume, shards, new stores."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from cli import app
from pipeline.core.config import load_config
from pipeline.core.errors import TeacherError
from pipeline.features.cache import cache_features
from pipeline.runner.plan import Context, plan
from tests.builders import STAGE_SETS, array_bytes, build_stage, toy_config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stages")
    config = toy_config(tmp, STAGE_SETS)
    return config, tmp / "data", build_stage("cache-features", config, tmp / "data", "toys")


def test_views_store_schema(built):
    _, _, done = built
    views = zarr.open_group(str(done["render"]), mode="r")
    assert views.attrs["complete"] and views.attrs["stage"] == "render"
    assert views.attrs["upstream"] == {
        "prepare": zarr.open_group(str(done["prepare"]), mode="r").attrs["fingerprint"]
    }
    for split, n in (("train", 4), ("test", 2)):
        image, proj, subset = views[f"{split}/image"], views[f"{split}/proj"], views[f"{split}/subset"]
        assert image.shape == (n, 3, 224, 224) and image.dtype == np.float16
        assert proj.shape == (n, 3, 5) and proj.dtype == np.float32
        assert subset.shape == (n, 256) and subset.dtype == np.int32
        assert image.metadata.dimension_names == ("object", "view", "row", "col")
        values = image[:].astype(np.float32)
        assert values.min() >= 0 and values.max() <= 1
        assert (values == np.float16(0.5)).mean() > 0.5  # background is sigmoid(0)
        assert (np.diff(subset[:], axis=1) > 0).all()  # distinct sorted indices into the stored points


def test_features_store_schema_and_teacher_record(built):
    _, _, done = built
    feats = zarr.open_group(str(done["cache-features"]), mode="r")
    teacher = feats.attrs["teacher"]
    assert teacher["name"] == "tiny-random" and teacher["random_weights"] is True
    assert teacher["weights_sha256"] is None and teacher["normalisation"]["kind"] == "imagenet"
    assert feats.attrs["params"]["precision"] == "fp32"
    assert feats["train/feature"].shape == (4, 3, 512, 14, 14) and feats["train/feature"].dtype == np.float16
    assert feats["train/saliency"].shape == (4, 3, 14, 14) and feats["train/saliency"].dtype == np.float32
    sal = feats["train/saliency"][:]
    assert (sal > 0).all() and (sal.sum(axis=(2, 3)) < 1).all()  # CLS→patch probabilities (CLS→CLS excluded)


def test_rerun_is_up_to_date_and_resume_rebuilds_only_missing_chunks(built, tmp_path):
    config, data_root, done = built
    before = array_bytes(done["cache-features"])
    group = zarr.open_group(str(done["cache-features"]), mode="r+")
    group["train/done"][1] = False  # what a crash after chunk 0 leaves
    group["train/feature"][2:4] = 0
    group.attrs["complete"] = False
    again = build_stage("cache-features", config, data_root, "toys")["cache-features"]
    assert again == done["cache-features"]
    assert array_bytes(again) == before
    t0 = time.perf_counter()
    assert build_stage("cache-features", config, data_root, "toys")["cache-features"] == again
    assert time.perf_counter() - t0 < 10


def test_other_render_params_or_teacher_make_new_stores_and_keep_the_old(built):
    config, data_root, done = built
    other = load_config(
        overrides=[*STAGE_SETS, "render.subset=128", f"prepare.root={config.params('prepare').root}"]
    )
    new_views = build_stage("render", other, data_root, "toys")["render"]
    assert new_views != done["render"] and done["render"].exists()
    normalised = load_config(
        overrides=[
            *STAGE_SETS,
            "cache-features.normalisation=teacher",
            f"prepare.root={config.params('prepare').root}",
        ]
    )
    new_features = build_stage("cache-features", normalised, data_root, "toys")["cache-features"]
    assert new_features != done["cache-features"] and done["cache-features"].exists()


def test_two_shards_fill_the_same_store_as_one_process(built, tmp_path):
    config, data_root, done = built
    cli = Path(__file__).resolve().parents[1] / "cli.py"
    data = tmp_path / "two"
    cmd = [
        sys.executable,
        str(cli),
        "cache-features",
        "--dataset",
        "toys",
        "--teacher",
        "tiny-random",
        "--data-root",
        str(data),
        "-q",
        *[a for s in [*STAGE_SETS, f"prepare.root={config.params('prepare').root}"] for a in ("--set", s)],
    ]
    # both shards read the views store of the fixture: copy its data root layout by linking the stores
    for kind in ("points", "views"):
        (data / kind).mkdir(parents=True)
        for store in (done["prepare"] if kind == "points" else done["render"]).parent.glob("*.zarr"):
            (data / kind / store.name).symlink_to(store)
    p = plan("cache-features", Context(config, data, "toys"))  # what the shard processes will plan
    one = cache_features(
        p.params, p.identity, done["render"], p.fingerprint, tmp_path / "one" / p.out.name, True
    )
    two = data / "features" / one.name
    first = subprocess.run([*cmd, "--shard", "0/2"], capture_output=True, timeout=300)
    assert first.returncode == 0, first.stderr.decode()
    state = zarr.open_group(str(two), mode="r")
    assert not state.attrs["complete"]
    train_done = state["train/done"][:]
    assert (train_done == (np.arange(len(train_done)) % 2 == 0)).all()  # shard 0 filled exactly its chunks
    wrong = subprocess.run([*cmd, "--shard", "0/3"], capture_output=True, timeout=300)
    assert wrong.returncode == 2 and b"2 shard(s)" in wrong.stderr  # a different split is refused
    procs = [subprocess.Popen([*cmd, "--shard", f"{i}/2"], stderr=subprocess.PIPE) for i in range(2)]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]  # both together: 1 fills the rest
    assert all(p.returncode == 0 for p in procs), errors
    assert zarr.open_group(str(two), mode="r").attrs["complete"]
    assert array_bytes(two) == array_bytes(one)


def test_missing_weights_offline_fail_fast_with_the_documented_hint(tmp_path):
    from pipeline.features.teachers import load_teacher

    t0 = time.perf_counter()
    with pytest.raises(TeacherError) as err:
        load_teacher("clip-vit-b16", offline=True, cache_dir=str(tmp_path))
    assert time.perf_counter() - t0 < 5
    assert "--weights" in str(err.value)


def test_show_writes_a_png_of_the_views(built, tmp_path):
    config, data_root, done = built
    ident = str(zarr.open_group(str(done["prepare"]), mode="r")["train/id"][0])
    out = tmp_path / "obj.png"
    sets = [a for s in [*STAGE_SETS, f"prepare.root={config.params('prepare').root}"] for a in ("--set", s)]
    result = CliRunner().invoke(
        app,
        [
            "show",
            ident,
            "--dataset",
            "toys",
            "--teacher",
            "tiny-random",
            "--out",
            str(out),
            "--data-root",
            str(data_root),
            *sets,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
