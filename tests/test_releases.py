"""Dataset releases read by `i2p prepare`: ShapeNet, ModelNet40, ScanObjectNN, and unknown layouts."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import trimesh

from pipeline import sources
from pipeline.core.errors import BadInput, ConfigError, LayoutError
from tests.builders import SOURCE_POINTS as P
from tests.builders import (
    assert_unit_sphere,
    box_off,
    source_params,
    write_h5,
    write_resampled,
    write_shapenet55,
)

# ---- shapenet ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True])
def test_shapenet55_release(tmp_path, nested):
    base = tmp_path / "ShapeNet55-34" if nested else tmp_path
    ids = write_shapenet55(base)
    p = source_params("shapenet", tmp_path)
    catalog = sources.scan(p, tmp_path / "data")
    assert catalog.layout == "shapenet55_npy" and catalog.classes == ["02691156", "04379243"]
    assert [it.id for it in catalog.splits["train"]] == ids[:2] + ids[3:5]
    assert [it.label for it in catalog.splits["train"]] == [1, 1, 0, 0]
    assert catalog.handling["n_points"] == 256 and catalog.handling["point_order"] == "stored"
    points = sources.load_points(catalog.splits["train"][0], p)
    stored = np.load(base / "shapenet_pc" / f"{ids[0]}.npy").astype(np.float64)
    centred = stored - stored.mean(axis=0)
    np.testing.assert_allclose(
        points, centred / np.linalg.norm(centred, axis=1).max(), atol=1e-6
    )  # stored order
    assert_unit_sphere(points)
    with pytest.raises(BadInput, match="file not found"):
        sources.load_points(catalog.splits["test"][-1], p)
    assert sources.default_dataset_name(p) == "shapenet"


def test_shapenet55_missing_split_list_names_the_path(tmp_path):
    write_shapenet55(tmp_path)
    (tmp_path / "ShapeNet-55" / "test.txt").unlink()
    with pytest.raises(LayoutError, match=r"ShapeNet-55/test\.txt"):
        sources.scan(source_params("shapenet", tmp_path), tmp_path)


def test_shapenetcore_meshes_all_train_or_following_lists(tmp_path):
    for synset, model in (("02691156", "a1"), ("02691156", "a2"), ("03001627", "c1")):
        d = tmp_path / synset / model / "models"
        d.mkdir(parents=True)
        trimesh.creation.box().export(d / "model_normalized.obj")
    p = source_params("shapenet", tmp_path)
    catalog = sources.scan(p, tmp_path / "data")
    assert catalog.layout == "shapenetcore_v2" and list(catalog.splits) == ["train"]
    assert [it.id for it in catalog.splits["train"]] == ["02691156-a1", "02691156-a2", "03001627-c1"]
    assert_unit_sphere(sources.load_points(catalog.splits["train"][2], p))
    (tmp_path / "ShapeNet-55").mkdir()
    (tmp_path / "ShapeNet-55" / "train.txt").write_text("02691156-a1.npy\n03001627-c1.npy\n")
    (tmp_path / "ShapeNet-55" / "test.txt").write_text("02691156-a2.npy\n02691156-zz.npy\n")
    catalog = sources.scan(p, tmp_path / "data")
    assert [it.id for it in catalog.splits["test"]] == ["02691156-a2", "02691156-zz"]
    with pytest.raises(BadInput, match="file not found"):
        sources.load_points(catalog.splits["test"][1], p)


# ---- modelnet40 --------------------------------------------------------------------------------------


def test_modelnet40_h5_used_as_stored(tmp_path):
    base = tmp_path / "modelnet40_ply_hdf5_2048"
    base.mkdir()
    for k, name in enumerate(("ply_data_train10.h5", "ply_data_train2.h5", "ply_data_test0.h5")):
        write_h5(base / name, 3, n_points=64, seed=k)
    (base / "shape_names.txt").write_text("airplane\nbathtub\nbed\n")
    p = source_params("modelnet40", tmp_path)
    catalog = sources.scan(p, tmp_path / "data")
    assert catalog.layout == "modelnet40_ply_hdf5_2048" and catalog.classes == ["airplane", "bathtub", "bed"]
    assert [it.id for it in catalog.splits["train"]][:4] == [
        "ply_data_train2/0",
        "ply_data_train2/1",
        "ply_data_train2/2",
        "ply_data_train10/0",
    ]
    assert len(catalog.splits["test"]) == 3
    assert catalog.handling == {
        "layout": "modelnet40_ply_hdf5_2048",
        "points": "as stored",
        "point_order": "stored",
        "n_points": 64,
    }
    item = catalog.splits["train"][3]
    with h5py.File(base / "ply_data_train10.h5") as f:
        assert sources.load_points(item, p).tobytes() == f["data"][0].tobytes()
        assert item.label == int(f["label"][0, 0])
    assert sources.default_dataset_name(p) == "modelnet40"


def test_modelnet40_h5_wrong_keys_and_nan_rows(tmp_path):
    write_h5(tmp_path / "ply_data_train0.h5", 2, keys=("points", "label"))
    write_h5(tmp_path / "ply_data_test0.h5", 2)
    with pytest.raises(
        LayoutError,
        match=r"ply_data_train0\.h5: h5 keys found \['label', 'points'\], expected \['data', 'label'\]",
    ):
        sources.scan(source_params("modelnet40", tmp_path), tmp_path)
    write_h5(tmp_path / "ply_data_train0.h5", 2)
    with h5py.File(tmp_path / "ply_data_train0.h5", "a") as f:
        f["data"][1, 5, 0] = np.nan
    catalog = sources.scan(source_params("modelnet40", tmp_path), tmp_path)
    with pytest.raises(BadInput, match="non-finite"):
        sources.load_points(catalog.splits["train"][1], source_params("modelnet40", tmp_path))


def test_modelnet40_resampled_txt_is_fps_sampled(tmp_path):
    ids = write_resampled(tmp_path / "modelnet40_normal_resampled")
    p = source_params("modelnet40", tmp_path)
    catalog = sources.scan(p, tmp_path / "data")
    assert catalog.layout == "modelnet40_normal_resampled" and catalog.classes == ["airplane", "night_stand"]
    assert [it.id for it in catalog.splits["train"]] == ids["train"]
    assert [it.label for it in catalog.splits["test"]] == [0, 1]
    assert catalog.handling["point_order"] == "fps" and catalog.handling["n_points"] == P
    points = sources.load_points(catalog.splits["train"][0], p)
    assert points.shape == (P, 3)
    assert_unit_sphere(points)
    assert sources.default_dataset_name(p) == "modelnet40-resampled"
    (tmp_path / "modelnet40_normal_resampled" / "modelnet40_test.txt").unlink()
    with pytest.raises(LayoutError, match=r"modelnet40_test\.txt"):
        sources.scan(p, tmp_path / "data")


def test_modelnet40_resampled_uses_fps_caches(tmp_path):
    base = tmp_path / "modelnet40_normal_resampled"
    ids = write_resampled(base, n_lines=5)
    rng = np.random.default_rng(1)
    for split, lst in ids.items():
        pts = [rng.uniform(-3, 3, (8192, 6)).astype(np.float32) for _ in lst]
        labels = [np.array([0 if i.startswith("airplane") else 1], np.int32) for i in lst]
        with open(base / f"modelnet40_{split}_8192pts_fps.dat", "wb") as f:
            pickle.dump([pts, labels], f)
    p = source_params("modelnet40", tmp_path)
    catalog = sources.scan(p, tmp_path / "data")
    assert catalog.handling["n_points"] == 8192 and catalog.handling["point_order"] == "stored"
    points = sources.load_points(catalog.splits["test"][1], p)
    assert points.shape == (8192, 3)
    assert_unit_sphere(points)
    stored = pickle.loads((base / "modelnet40_test_8192pts_fps.dat").read_bytes())[0][1][:, :3].astype(
        np.float64
    )
    np.testing.assert_allclose(
        points, (stored - stored.mean(0)) / np.linalg.norm(stored - stored.mean(0), axis=1).max(), atol=1e-6
    )


def test_modelnet40_off_meshes(tmp_path):
    for c in ("bed", "chair"):
        for split in ("train", "test"):
            (tmp_path / "ModelNet40" / c / split).mkdir(parents=True)
            (tmp_path / "ModelNet40" / c / split / f"{c}_0001.off").write_text(box_off(glued=True))
    p = source_params("modelnet40", tmp_path)
    catalog = sources.scan(p, tmp_path / "data")
    assert catalog.layout == "modelnet40_off" and catalog.source == "modelnet40"
    assert [it.id for it in catalog.splits["test"]] == ["bed/bed_0001", "chair/chair_0001"]
    assert_unit_sphere(sources.load_points(catalog.splits["test"][1], p))
    assert sources.default_dataset_name(p) == "modelnet40-off"


# ---- scanobjectnn ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant, folder, suffix",
    [
        ("obj-bg", "main_split", ""),
        ("obj-only", "main_split_nobg", ""),
        ("pb-t50-rs", "main_split", "_augmentedrot_scale75"),
    ],
)
@pytest.mark.parametrize("root_is_split_dir", [False, True])
def test_scanobjectnn_variants(tmp_path, variant, folder, suffix, root_is_split_dir):
    d = tmp_path / "ScanObjectNN" / folder
    d.mkdir(parents=True)
    write_h5(d / f"training_objectdataset{suffix}.h5", 4, label_shape=())
    write_h5(d / f"test_objectdataset{suffix}.h5", 2, label_shape=(), seed=1)
    p = source_params("scanobjectnn", d if root_is_split_dir else tmp_path / "ScanObjectNN", variant=variant)
    catalog = sources.scan(p, tmp_path / "data")
    assert len(catalog.classes) == 15 and {s: len(v) for s, v in catalog.splits.items()} == {
        "train": 4,
        "test": 2,
    }
    assert catalog.handling["points"] == "as stored" and catalog.handling["n_points"] == 2048
    points = sources.load_points(catalog.splits["test"][1], p)
    with h5py.File(d / f"test_objectdataset{suffix}.h5") as f:
        assert points.dtype == np.float32 and points.tobytes() == f["data"][1].tobytes()
    assert sources.default_dataset_name(p) == f"scanobjectnn-{variant}"


def test_scanobjectnn_refuses_the_other_split_folder(tmp_path):
    d = tmp_path / "main_split"
    d.mkdir()
    write_h5(d / "training_objectdataset.h5", 2, label_shape=())
    with pytest.raises(LayoutError, match="obj-only reads main_split_nobg"):
        sources.scan(source_params("scanobjectnn", d, variant="obj-only"), tmp_path)


# ---- layouts that are not there ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, expected",
    [
        ("shapenet", "shapenet_pc/\\*.npy"),
        ("modelnet40", "ply_data_\\{train,test\\}\\*.h5"),
        ("scanobjectnn", "main_split/\\{training_objectdataset.h5 and test_objectdataset.h5\\}"),
        ("folder", "<root>/<class>/"),
    ],
)
def test_unknown_layout_lists_what_was_looked_for(tmp_path, source, expected):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "readme.md").write_text("nothing here")
    with pytest.raises(LayoutError, match=expected):
        sources.scan(source_params(source, tmp_path), tmp_path)
    with pytest.raises(LayoutError, match="does not exist"):
        sources.scan(source_params(source, tmp_path / "nowhere"), tmp_path)
    with pytest.raises(ConfigError, match="unknown layout"):
        sources.scan(source_params(source, tmp_path, layout="nope"), tmp_path)
