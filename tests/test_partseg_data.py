"""Part-segmentation data: ShapeNetPart releases written in the real layout, the synthetic-parts set, and
the reader the part-segmentation stage uses, all through the real prepare stage.

A tiny release: three categories (their lines not in alphabetical order), files of 40–61 points with
part ids written as floats or integers, CRLF lists, the archive unpacked one level up, a listed file that
is missing, a file with a part id of another category, and a file no list names.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from pipeline.core.errors import ConfigError, LayoutError
from pipeline.core.params import PrepareParams
from pipeline.prepare.points import prepare
from pipeline.sources import shapenetpart
from pipeline.sources.base import normalise_unit_sphere
from pipeline.sources.synthetic_part_shapes import global_ids
from pipeline.storage.partseg_store import load_partseg_split, partseg_layout
from pipeline.storage.store import read_state
from tests.builders import array_bytes, write_store

CATEGORIES = [("Chair", "03001627"), ("Airplane", "02691156"), ("Mug", "03797390")]  # line order = label
LISTS = {  # list → (category index, model) in list order; the val list joins the train split after train
    "train": [(1, "a1"), (0, "c1"), (2, "m1"), (1, "bad"), (0, "c2")],
    "val": [(2, "m2"), (1, "a2")],
    "test": [(0, "c3"), (2, "gone"), (1, "a3"), (2, "m3")],
}


def write_release(base, seed=0):
    """The release under ``base`` → {id: (xyz (N, 3) float64, part (N,) int)} of the objects that are good."""
    rng, objects = np.random.default_rng(seed), {}
    ranges = [shapenetpart.RELEASE_PARTS[name] for name, _ in CATEGORIES]
    for k, (_, synset) in enumerate(CATEGORIES):
        (base / synset).mkdir(parents=True)
        for model in sorted({m for entries in LISTS.values() for c, m in entries if c == k} - {"gone"}):
            n = int(rng.integers(40, 62))
            xyz = rng.integers(-64, 65, (n, 3)) / 64 + [3.0, -1.0, 0.5]  # exact in binary and in 6 decimals
            part = rng.choice(ranges[k], n)
            if model == "bad":
                part[5] = ranges[2][0]  # a Mug part on an Airplane
            rows = np.column_stack([xyz, rng.normal(size=(n, 3)), part])
            fmt = "%.6f" if k == 0 else ["%.6f"] * 6 + ["%d"]  # part ids as floats (Chair) or integers
            np.savetxt(base / synset / f"{model}.txt", rows, fmt=fmt)
            if model != "bad":
                objects[f"{synset}/{model}"] = (xyz, part)
    (base / CATEGORIES[2][1] / "stray.txt").write_text("0 0 0 0 0 1 36\n1 0 0 0 0 1 37\n")  # in no list
    crlf = "\r\n".join(f"{name}\t{synset}" for name, synset in CATEGORIES) + "\r\n"
    (base / "synsetoffset2category.txt").write_bytes(crlf.encode())
    (base / "train_test_split").mkdir()
    for name, entries in LISTS.items():
        text = json.dumps([f"shape_data/{CATEGORIES[c][1]}/{m}" for c, m in entries], indent=1)
        (base / "train_test_split" / f"shuffled_{name}_file_list.json").write_bytes(
            text.replace("\n", "\r\n").encode()
        )
    return objects


@pytest.fixture
def release(tmp_path):
    """(root one level above the release folder, the good objects)."""
    root = tmp_path / "download"
    return root, write_release(root / shapenetpart.RELEASE)


def split_ids(split, objects):
    lists = ("train", "val") if split == "train" else ("test",)
    found = [f"{CATEGORIES[c][1]}/{m}" for name in lists for c, m in LISTS[name]]
    return [i for i in found if i in objects]


def test_a_release_is_stored_point_for_point_with_its_parts(release, tmp_path):
    root, objects = release
    result = prepare(PrepareParams(source="shapenetpart", root=str(root), chunk=2), tmp_path / "data")
    assert result.dataset == "shapenetpart"
    group = zarr.open_group(str(result.path), mode="r")
    attrs = group.attrs
    assert attrs["classes"] == ["Chair", "Airplane", "Mug"] and attrs["task"] == "partseg"
    assert attrs["parts"] == {"Chair": [12, 13, 14, 15], "Airplane": [0, 1, 2, 3], "Mug": [36, 37]}
    assert attrs["n_parts"] == 38 and attrs["part_names"][36] == "Mug/0"
    bad = root / shapenetpart.RELEASE / "02691156/bad.txt"
    P = max([len(xyz) for xyz, _ in objects.values()] + [len(np.loadtxt(bad))])  # every listed file counts
    assert attrs["handling"]["n_points"] == P and group["train/points"].shape[1] == P
    failures = {f["id"]: f["reason"] for f in attrs["failures"]}
    assert set(failures) == {"03797390/gone", "02691156/bad", "03797390/stray"}, failures
    assert "missing" in failures["03797390/gone"] and "not read" in failures["03797390/stray"]
    assert "part ids [36] outside Airplane's part ids [0, 1, 2, 3]" in failures["02691156/bad"]
    assert bad.as_posix() in [f["path"] for f in attrs["failures"]]
    layout = partseg_layout(result.path)
    assert layout == (["Chair", "Airplane", "Mug"], attrs["parts"], 38)
    for split in ("train", "test"):
        data = load_partseg_split(result.path, split)
        assert data.ids == split_ids(split, objects)  # list order, val after train; bad rows compacted
        assert data.part.dtype == data.count.dtype == data.label.dtype == np.int64
        assert data.points.dtype == np.float32
        for row, object_id in enumerate(data.ids):
            xyz, part = objects[object_id]
            n = len(xyz)
            assert data.count[row] == n and data.label[row] == [s for _, s in CATEGORIES].index(object_id[:8])
            np.testing.assert_array_equal(data.points[row, :n], normalise_unit_sphere(xyz))
            np.testing.assert_array_equal(data.part[row, :n], part)
            assert (data.points[row, n:] == data.points[row, 0]).all() and (data.part[row, n:] == -1).all()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = xr.open_zarr(result.path, group=split)
        assert ds.part.dims == ("object", "point") and ds["count"].dims == ("object",)
        assert list(ds["id"].values) == data.ids


def test_the_release_folder_itself_and_one_level_up_read_the_same(release):
    root, _ = release
    up = shapenetpart.scan(PrepareParams(source="shapenetpart", root=str(root)), root)
    at = shapenetpart.scan(PrepareParams(source="shapenetpart", root=str(root)), root / shapenetpart.RELEASE)
    assert up.classes == at.classes and up.splits == at.splits and up.failures == at.failures


def test_the_points_cap_keeps_a_seeded_subset_in_file_order_whatever_the_chunking(release, tmp_path):
    root, objects = release
    stores = [
        prepare(
            PrepareParams(source="shapenetpart", root=str(root), points=32, chunk=c), tmp_path / f"d{c}"
        ).path
        for c in (1, 3)
    ]
    one, three = (load_partseg_split(p, "train") for p in stores)
    np.testing.assert_array_equal(one.points, three.points)
    np.testing.assert_array_equal(one.part, three.part)
    assert (one.count == 32).all() and one.points.shape[1] == 32
    for row, object_id in enumerate(one.ids):
        xyz, part = objects[object_id]
        full = normalise_unit_sphere(xyz)  # normalised over every point, then the subset is taken
        rows = [int(np.flatnonzero((full == p).all(axis=1))[0]) for p in one.points[row]]
        assert rows == sorted(rows) and len(set(rows)) == 32
        np.testing.assert_array_equal(one.part[row], part[rows])
    notes = zarr.open_group(str(stores[0]), mode="r").attrs["warnings"]
    assert len(notes) == len(objects) and "kept a random 32 of its" in notes[0]["warning"]


def test_an_interrupted_prepare_resumes_to_the_same_bytes(release, tmp_path):
    root, _ = release
    (root / shapenetpart.RELEASE / "02691156/bad.txt").unlink()  # no bad row: a crash comes before compaction
    params = PrepareParams(source="shapenetpart", root=str(root), chunk=2)
    reference = prepare(params, tmp_path / "ref")
    broken = prepare(params, tmp_path / "data")
    group = zarr.open_group(str(broken.path), mode="r+", use_consolidated=False)
    group.attrs.update({"complete": False})
    group["test/done"][0] = False
    group["test/part"][0:2] = 5
    group["test/count"][0:2] = 1
    resumed = prepare(params, tmp_path / "data")
    assert resumed.computed == 1 and read_state(resumed.path).complete
    assert array_bytes(resumed.path) == array_bytes(reference.path)


def test_synthetic_parts_are_generated_in_the_release_layout_and_read_by_its_reader(tmp_path):
    params = PrepareParams(source="synthetic-parts", synthetic_per_class=3)
    result = prepare(params, tmp_path / "data")
    assert result.dataset == "synthetic-parts"
    folder = tmp_path / "data" / "sources" / "synthetic-parts-0-3"
    assert (folder / "COMPLETE.json").is_file() and (folder / "synsetoffset2category.txt").is_file()
    assert len(json.loads((folder / "train_test_split" / "shuffled_test_file_list.json").read_text())) == 8
    classes, parts, n_parts = partseg_layout(result.path)
    ids = global_ids()
    assert classes == list(ids) and n_parts == 24
    assert parts == {c: sorted(named.values()) for c, named in ids.items()}
    group = zarr.open_group(str(result.path), mode="r")
    assert group.attrs["failures"] == [] and group.attrs["part_names"][:2] == [
        "airplane/fuselage",
        "airplane/wing",
    ]
    for split, n in (("train", 16), ("test", 8)):
        data = load_partseg_split(result.path, split)
        assert len(data.ids) == n and ((data.count >= 2048) & (data.count <= 2560)).all()
        for k, category in enumerate(classes):
            rows = np.flatnonzero(data.label == k)
            seen = {int(p) for r in rows for p in np.unique(data.part[r, : data.count[r]])}
            assert len(seen) >= 2 and seen <= set(parts[category]), (category, seen)
        norms = np.linalg.norm(data.points, axis=2)
        assert np.allclose(norms.max(axis=1), 1.0, atol=1e-6)
    again = prepare(params, tmp_path / "data")
    assert again.computed == 0 and again.path == result.path


def test_a_store_without_part_labels_is_refused_by_the_reader(tmp_path):
    path = write_store(tmp_path, "toys", {"train": 2, "test": 1})
    with pytest.raises(ConfigError, match="dataset toys has no part labels") as caught:
        load_partseg_split(path, "train")
    assert "synthetic-parts" in caught.value.hint
    with pytest.raises(ConfigError, match="no part labels"):
        partseg_layout(path)


def test_release_layout_errors_name_the_file_and_the_fix(release, tmp_path):
    root, _ = release
    base = root / shapenetpart.RELEASE
    params = PrepareParams(source="shapenetpart", root=str(root))
    (base / "synsetoffset2category.txt").write_text("Chair\t03001627\nTeapot\t99999999\n")
    with pytest.raises(LayoutError, match="'Teapot'") as caught:
        shapenetpart.scan(params, root)
    assert "part_ids.json" in caught.value.hint
    (base / "train_test_split" / "shuffled_test_file_list.json").unlink()
    (base / "synsetoffset2category.txt").write_text("Chair\t03001627\n")
    with pytest.raises(LayoutError, match="shuffled_test_file_list.json"):
        shapenetpart.scan(params, root)


def test_partseg_trains_and_reports_both_mious_on_a_release(release, tmp_path, tiny_encoder):
    """The release read by `i2p prepare shapenetpart`, then `i2p partseg --ckpt FILE -d shapenetpart`."""
    from dataclasses import asdict

    import torch
    from typer.testing import CliRunner

    from cli import app
    from i2pmae.model import I2PMAE

    root, _ = release
    data, ckpt = tmp_path / "data", tmp_path / "tiny.pt"
    torch.manual_seed(0)
    model = I2PMAE(tiny_encoder)
    torch.save({"model": model.state_dict(), "model_config": asdict(tiny_encoder), "epoch": 0}, ckpt)

    def cli(*args):
        return CliRunner().invoke(app, [*map(str, args), "--data-root", str(data)], catch_exceptions=False)

    assert cli("prepare", "shapenetpart", "--root", root).exit_code == 0
    sets = ["partseg.points=64", "partseg.batch_size=2", "partseg.epochs=2", "partseg.warmup_epochs=0"]
    out = cli(
        "partseg",
        "--ckpt",
        ckpt,
        "-d",
        "shapenetpart",
        "--max-steps",
        "4",
        *[x for s in sets for x in ("--set", s)],
    )
    assert out.exit_code == 0, out.output
    assert "part segmentation on shapenetpart: last epoch (1) instance mIoU" in out.stdout
    report = (data / "runs" / "tiny" / "report.md").read_text()
    assert "train 6, test 3 shapes, 3 categories" in report and "Chair" in report
    (metrics,) = (data / "runs" / "tiny").glob("partseg-shapenetpart-*.json")
    history = json.loads(metrics.read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1] and history[1]["lr"] == pytest.approx(2e-4)
    assert not (data / "runs" / "tiny" / ".finetune-resume").exists()  # removed once finished
