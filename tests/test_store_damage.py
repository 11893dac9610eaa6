"""Damaged stores are found before they train anything: per-chunk checksums that our shard reader and zarr
both check, missing files of written chunks, cut metadata, NaN points; each is one DamagedStore naming the
store, split, array and object with "rebuild: …", and `i2p verify` reports every store.

The stores are tiny and real (StoreWriter, the real array specs of the points, views and features stores),
damaged for real on disk: a flipped byte inside an inner chunk, a deleted or truncated shard, a cut
zarr.json.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import zarr
from typer.testing import CliRunner

from cli import app
from pipeline.core.errors import DamagedStore
from pipeline.storage import shards
from pipeline.storage.checked import open_group
from pipeline.storage.fastread import ArrayReader
from pipeline.storage.store import ArraySpec, StoreWriter, per_object, read_state
from pipeline.storage.verify import verify_store
from tests.builders import invoke

N, P, K, CHUNK = 8, 32, 2, 4  # objects, points, draws, objects per work chunk (two shards per array)
IDS = [f"box/b{i}" for i in range(N)]


def write(path, stage, specs, values, upstream=None, finish=True):
    """A store through StoreWriter in the real schema: split "train", chunk by chunk, then finished."""
    attrs = {"fingerprint": stage * 8, "stage": stage, "params": {}, "upstream": {}, "dataset": "toys"}
    writer = StoreWriter(
        path, {**attrs, **({"upstream_paths": {"prepare": str(upstream)}} if upstream else {})}
    )
    writer.create({"train": (N // CHUNK, specs)})
    for i, start in enumerate(range(0, N, CHUNK)):
        for name, x in values.items():
            writer.write("train", name, start, x[start : start + CHUNK])
        writer.mark_done("train", i)
    if finish:
        writer.finish()
    return path


POINTS_SPECS = [
    per_object("points", (N, P, 3), CHUNK, "float32", ("object", "point", "xyz")),
    ArraySpec("label", (N,), (CHUNK,), "int32", ("object",), -1),
    ArraySpec("id", (N,), (CHUNK,), str, ("object",), ""),
]


def points_values(rng):
    points = rng.normal(size=(N, P, 3)).astype(np.float32)
    return {"points": points, "label": np.arange(N) % 2, "id": np.array(IDS)}


def build(root):
    """points/, views/ and features/ stores of N objects under ``root``: zstd, uncompressed, per-draw,
    unsharded and string arrays."""
    rng = np.random.default_rng(0)
    points = write(root / "points" / "toys-aaaaaaaa.zarr", "prepare", POINTS_SPECS, points_values(rng))
    views = write(
        root / "views" / "toys-bbbbbbbb.zarr",
        "render",
        [
            per_object("image", (N, K, 3, 8, 8), CHUNK, "float16", ("object", "draw", "view", "row", "col")),
            per_object("subset", (N, K, 16), CHUNK, "int32", ("object", "draw", "point"), per_draw=True),
            ArraySpec("proj", (N, K, 3, 5), (CHUNK, K, 3, 5), "float32", ("object", "draw", "view", "param")),
        ],
        {
            "image": rng.random((N, K, 3, 8, 8)).astype(np.float16),
            "subset": np.argsort(rng.random((N, K, P)), axis=2)[..., :16].astype(np.int32),
            "proj": rng.random((N, K, 3, 5)).astype(np.float32) + 0.1,
        },
        upstream=points,
    )
    features = write(
        root / "features" / "toys-tiny-random-cccccccc.zarr",
        "cache-features",
        [
            per_object(
                "feature",
                (N, K, 3, 4, 2, 2),
                CHUNK,
                "float16",
                ("object", "draw", "view", "channel", "row", "col"),
                False,
                True,
            ),
            per_object(
                "saliency",
                (N, K, 3, 2, 2),
                CHUNK,
                "float32",
                ("object", "draw", "view", "row", "col"),
                per_draw=True,
            ),
        ],
        {
            "feature": rng.normal(size=(N, K, 3, 4, 2, 2)).astype(np.float16),
            "saliency": rng.random((N, K, 3, 2, 2)).astype(np.float32) + 0.1,
        },
        upstream=points,
    )
    return {"points": points, "views": views, "features": features}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return tmp_path_factory.mktemp("pristine")


@pytest.fixture(scope="module")
def built(pristine):
    return build(pristine)


@pytest.fixture
def root(built, pristine, tmp_path):
    """A fresh copy of the pristine data root, to damage."""
    shutil.copytree(pristine, tmp_path / "data")
    return tmp_path / "data"


def store(root, kind):
    return next((root / kind).glob("*.zarr"))


def shard_file(path, array, shard=0):
    meta = json.loads((path / "train" / array / "zarr.json").read_text())
    return shards.ShardLayout(path / "train" / array, meta).path(shard)


def flip_chunk(path, array, k):
    """Flip one byte in the middle of inner chunk k (C order over (object, draw)) of shard 0 of train."""
    flip_chunk_of(path, "train", array, k)


def flip_chunk_of(path, split, array, k):
    meta = json.loads((path / split / array / "zarr.json").read_text())
    layout = shards.ShardLayout(path / split / array, meta)
    f = layout.path(0)
    data = bytearray(f.read_bytes())
    offset, nbytes = np.frombuffer(bytes(data[-layout.index_bytes : -4]), "<u8").reshape(-1, 2)[k]
    data[int(offset) + int(nbytes) // 2] ^= 0xFF
    f.write_bytes(bytes(data))


def raised(fn):
    with pytest.raises(DamagedStore) as err:
        fn()
    return err.value


def verify(root, *stores):
    return CliRunner().invoke(app, ["verify", "--data-root", str(root), *map(str, stores)])


def test_new_stores_checksum_every_inner_chunk_and_read_back_unchanged(built):
    for path in built.values():
        verdict = verify_store(path)
        assert verdict.state == "ok" and verdict.arrays >= 4, verdict.text()
    codecs = json.loads((built["points"] / "train" / "points" / "zarr.json").read_text())["codecs"][0]
    assert [c["name"] for c in codecs["configuration"]["codecs"]] == ["bytes", "zstd", "crc32c"]
    reader, group = ArrayReader(built["features"], "train"), zarr.open_group(str(built["features"]), mode="r")
    assert type(reader._array("feature")).__name__ == "_Sharded"
    assert all(
        np.array_equal(reader.get("feature", i, draw=1), group["train/feature"][i, 1]) for i in range(N)
    )


def test_a_compacted_points_store_keeps_its_checksums_and_verifies_ok(tmp_path):
    from pipeline.prepare.compaction import compact

    path = tmp_path / "points" / "toys-dddddddd.zarr"
    write(path, "prepare", POINTS_SPECS, points_values(np.random.default_rng(0)), finish=False)
    writer = StoreWriter(path, {"fingerprint": "prepare" * 8})
    assert compact(writer, {"train/0": [{"row": 1}]}, CHUNK, ("points", "label", "id")) == {"train": N - 1}
    writer.finish()
    codecs = json.loads((path / "train" / "points" / "zarr.json").read_text())["codecs"][0]
    assert [c["name"] for c in codecs["configuration"]["codecs"]] == ["bytes", "zstd", "crc32c"]
    verdict = verify_store(path)  # the arrays compaction recreated, with the codecs they had
    assert verdict.state == "ok" and verdict.arrays == 4, verdict.text()


def test_a_flipped_byte_is_one_error_naming_the_object_in_both_readers(root):
    points = store(root, "points")
    flip_chunk(points, "points", 3)
    fast = raised(lambda: ArrayReader(points, "train").get("points", 3))
    assert f"damaged store {points}: train/points object 3 (box/b3): shard file c/0/0/0:" in fast.message
    assert "checksum mismatch" in fast.message
    assert fast.hint.startswith(f"rebuild: remove {points} and rerun i2p prepare -d toys")
    through_zarr = raised(lambda: open_group(points)["train/points"][0:N])  # what eval and render read
    assert through_zarr.message == fast.message
    with pytest.raises(ValueError, match="checksum"):  # zarr itself checks the crc32c too
        zarr.open_group(str(points), mode="r")["train/points"][3]
    assert ArrayReader(points, "train").get("points", 2).shape == (P, 3)  # its neighbours are intact


def test_uncompressed_features_and_unsharded_arrays_are_checked_too(root):
    features, views = store(root, "features"), store(root, "views")
    flip_chunk(features, "feature", 2 * K + 1)  # object 2, draw 1
    err = raised(lambda: ArrayReader(features, "train").get("feature", 2, draw=1))
    assert "train/feature object 2 (box/b2), draw 1: shard file" in err.message
    assert "rerun i2p cache-features -d toys" in err.hint
    proj = next(p for p in (views / "train" / "proj" / "c").rglob("*") if p.is_file())
    data = bytearray(proj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    proj.write_bytes(bytes(data))
    err = raised(lambda: ArrayReader(views, "train").whole("proj"))
    assert "train/proj objects 0–3 (box/b0 … box/b3): chunk file c/0/0/0/0 fails its check" in err.message


def test_a_deleted_shard_of_written_objects_is_an_error_not_zeros(root):
    views = store(root, "views")
    shard_file(views, "subset", 1).unlink()
    err = raised(lambda: ArrayReader(views, "train").get("subset", 5, draw=0))
    assert (
        "train/subset objects 4–7 (box/b4 … box/b7): shard file c/1/0/0 of written objects is missing"
        in err.message
    )
    assert "rerun i2p render -d toys" in err.hint
    assert "is missing" in raised(lambda: open_group(views)["train/subset"][5]).message


def test_training_finds_missing_and_truncated_files_before_its_first_step(root):
    from pipeline.train.trainset import CachedShapes

    points = store(root, "points")
    CachedShapes(str(points), None, None, "train", 16, seed=0)  # intact: nothing raised
    f = shard_file(points, "points", 1)
    f.write_bytes(f.read_bytes()[:-40])  # the index's tail: nothing reads object 4–7 yet
    err = raised(lambda: CachedShapes(str(points), None, None, "train", 16, seed=0))
    assert (
        "train/points objects 4–7 (box/b4 … box/b7): shard file c/1/0/0: shard index checksum" in err.message
    )
    f.unlink()
    err = raised(lambda: CachedShapes(str(points), None, None, "train", 16, seed=0))
    assert "shard file c/1/0/0 of written objects is missing" in err.message


def test_truncated_shards_and_cut_metadata_are_one_line_each(root):
    points = store(root, "points")
    f = shard_file(points, "points", 1)
    f.write_bytes(f.read_bytes()[:-100])
    err = raised(lambda: ArrayReader(points, "train").get("points", 5))
    assert "train/points object 5 (box/b5): shard file c/1/0/0: shard index checksum mismatch" in err.message
    f.write_bytes(f.read_bytes()[:10])
    assert "shorter than its" in raised(lambda: ArrayReader(points, "train").get("points", 6)).message
    assert "shorter than its" in raised(lambda: open_group(points)["train/points"][4:8]).message
    meta = points / "train" / "points" / "zarr.json"
    meta.write_text(meta.read_text()[:100])
    err = raised(lambda: ArrayReader(points, "train").get("points", 0))
    assert err.message.startswith(f"damaged store {points}: train/points: zarr.json cannot be read")
    root_meta = points / "zarr.json"
    root_meta.write_text(root_meta.read_text()[:100])
    err = raised(lambda: read_state(points))  # what status and every stage's plan read first
    assert err.message.startswith(f"damaged store {points}: zarr.json cannot be read")
    assert err.hint.startswith(f"rebuild: remove {points} and rerun i2p prepare")  # stage from the folder


def test_a_damaged_store_raised_in_a_dataloader_worker_arrives_as_the_same_error(root):
    points = store(root, "points")
    flip_chunk(points, "points", 1)
    expected = raised(lambda: ArrayReader(points, "train").get("points", 1))

    class Objects(torch.utils.data.Dataset):
        def __len__(self):
            return N

        def __getitem__(self, i):
            return ArrayReader(points, "train").get("points", i)

    loader = torch.utils.data.DataLoader(Objects(), batch_size=2, num_workers=1)
    with pytest.raises(DamagedStore) as err:
        list(loader)
    assert (err.value.message, err.value.hint) == (expected.message, expected.hint)


def test_verify_reports_every_damaged_store_and_exits_non_zero(root):
    assert verify(root).exit_code == 0
    flip_chunk(store(root, "points"), "points", 3)
    shard_file(store(root, "features"), "saliency", 1).unlink()
    out = verify(root)
    assert out.exit_code == 1, out.output
    lines = {line.split(": ", 1)[0]: line for line in out.output.splitlines()}
    assert len(lines) == 3, out.output
    points, views, features = (lines[f"{k}/{store(root, k).name}"] for k in ("points", "views", "features"))
    assert "damaged: train/points object 3 (box/b3): shard file c/0/0/0: inner chunk checksum" in points
    assert "rebuild: remove" in points and "i2p prepare -d toys" in points
    assert (
        "train/saliency objects 4–7 (box/b4 … box/b7): shard file c/1/0/0/0/0 of written objects" in features
    )
    assert views.endswith("ok (6 arrays, every chunk checked)")
    only = verify(root, store(root, "views"))
    assert only.exit_code == 0 and len(only.output.splitlines()) == 1


def test_verify_finds_cut_metadata_and_a_complete_store_with_unset_done_bits(root):
    views = store(root, "views")
    (views / "train" / "image" / "zarr.json").write_text("{")
    (views / "train" / "done" / "c" / "1").unlink()  # done[1] reads False in a complete store
    verdict = verify_store(views)
    assert verdict.state == "damaged"
    assert any(p.startswith("train/image: zarr.json cannot be read") for p in verdict.problems)
    assert any("marked complete but work chunks [1] are not done" in p for p in verdict.problems)


def old_codecs(compress):
    """The chains stores were written with before checksums: zstd, or nothing."""
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=0, checksum=False)] if compress else []


def test_old_stores_without_checksums_stay_readable_and_cannot_be_checked(tmp_path, monkeypatch):
    import pipeline.storage.store as store_module

    monkeypatch.setattr(store_module, "checksummed_codecs", old_codecs)
    monkeypatch.setattr(shards, "checksummed_codecs", old_codecs)
    old = build(tmp_path)
    monkeypatch.undo()
    inner = json.loads((old["features"] / "train" / "feature" / "zarr.json").read_text())["codecs"][0]
    assert [c["name"] for c in inner["configuration"]["codecs"]] == ["bytes"]
    group = zarr.open_group(str(old["features"]), mode="r")
    reader = ArrayReader(old["features"], "train")
    assert type(reader._array("feature")).__name__ == "_Sharded"
    assert np.array_equal(reader.get("feature", 6, draw=1), group["train/feature"][6, 1])
    assert np.array_equal(
        ArrayReader(old["points"], "train").get("points", 6), open_group(old["points"])["train/points"][6]
    )
    out = verify(tmp_path)
    assert out.exit_code == 0 and out.output.count("cannot be checked: no checksums (old store)") == 3, (
        out.output
    )
    shard_file(old["points"], "points", 0).unlink()  # what an old store still shows: missing files
    assert "damaged: train/points objects 0–3" in verify(tmp_path, old["points"]).output


def test_nan_points_are_the_input_stores_fault_not_the_encoders(tmp_path, monkeypatch, tiny_encoder):
    import pipeline.storage.store as store_module
    from i2pmae.errors import InputError
    from i2pmae.evaluate import extract_features
    from i2pmae.model import I2PMAE

    monkeypatch.setattr(store_module, "checksummed_codecs", old_codecs)  # an old store: no checksum sees it
    monkeypatch.setattr(shards, "checksummed_codecs", old_codecs)
    points = build(tmp_path)["points"]
    array = zarr.open_group(str(points), mode="r+", use_consolidated=False)["train/points"]
    array[5, 7] = np.nan
    err = raised(lambda: ArrayReader(points, "train").get("points", 5))
    assert "train/points object 5 (box/b5): non-finite values (NaN/inf)" in err.message
    assert "object 5 (box/b5)" in raised(lambda: open_group(points)["train/points"][4:8]).message
    assert "NaN" in verify_store(points).text()
    with pytest.raises(InputError, match="object 5 of the input points .* not the encoder"):
        extract_features(I2PMAE(tiny_encoder), array[:], n_points=16)  # raw arrays: the method's own check


def test_eval_on_a_damaged_points_store_stops_with_one_line_naming_it(tiny_eval_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_eval_root, root)
    points = store(root, "points")
    flip_chunk_of(points, "test", "points", 5)
    out = invoke("eval", "svm", "--run", "fresh", "-d", "blobs", "--c", "0.5", "--data-root", root)
    assert out.exit_code == 2, out.output
    text = " ".join(out.output.split())
    assert f"error: damaged store {points}: test/points object 5 (" in text and "checksum mismatch" in text
    assert f"hint: rebuild: remove {points} and rerun i2p prepare -d blobs" in text
    assert "Traceback" not in out.output and "non-finite" not in out.output
