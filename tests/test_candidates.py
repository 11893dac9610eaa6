"""Nothing vanishes and releases are found as people unpack them; far-off coordinates
are warned about and readable names kept.

For every source, every candidate under the root (a file under a class folder, a model folder, a
listed or present release file, an h5 row) ends in the store or in its ``failures`` attr: each test
counts the candidates it wrote and checks that stored rows + failures add up.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import trimesh
import zarr

from pipeline import sources
from pipeline.core.errors import LayoutError
from pipeline.prepare.points import prepare
from tests.builders import source_params, write_h5, write_resampled, write_shapenet55

OCTA = "".join(
    f"v {x} {y} {z}\n" for x, y, z in [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
)
OCTA += "f 1 3 5\nf 3 2 5\nf 2 4 5\nf 4 1 5\nf 3 1 6\nf 2 3 6\nf 4 2 6\nf 1 4 6\n"


def stored(result) -> tuple[int, list[dict], dict]:
    """(rows in the store over all splits, failures, attrs) of a prepare result."""
    attrs = dict(zarr.open_group(str(result.path), mode="r").attrs)
    return sum(attrs["counts"].values()), attrs["failures"], attrs


def reasons(failures) -> dict[str, str]:
    return {f["id"]: f["reason"] for f in failures}


def test_folder_every_file_under_a_class_folder_is_stored_or_recorded(tmp_path):
    root = tmp_path / "user"
    rng = np.random.default_rng(0)
    (root / "cup").mkdir(parents=True)
    (root / "cup" / "a.obj").write_text(OCTA)
    (root / "cup" / "a.mtl").write_text("newmtl x\n")  # a companion: counted, not a candidate
    (root / "cup" / "texture.png").write_bytes(b"\x89PNG")
    (root / "cup" / "b.xyz").write_text("".join(f"{x} {y} {z}\n" for x, y, z in rng.normal(size=(300, 3))))
    (root / "cup" / "c.dae").write_text("<COLLADA/>")  # no reader takes .dae
    (root / "cup" / "d.off").write_text(OCTA.replace("v", "x"))  # unreadable
    (root / "cup" / "old").mkdir()
    (root / "cup" / "old" / "e.obj").write_text(OCTA)  # a folder no rule reads
    (root / "lamp" / "train").mkdir(parents=True)
    np.save(root / "lamp" / "train" / "f.npy", rng.normal(size=(300, 3)).astype(np.float32))
    (root / "lamp" / "train" / "g.npy").write_bytes(b"not an npy file")
    (root / "lamp" / "h.ply").write_bytes(trimesh.creation.box().export(file_type="ply"))  # beside train/
    (root / "empty").mkdir()
    (root / "README.md").write_text("my scans")
    candidates = 8  # every file under a class folder but the .mtl and the .png
    result = prepare(source_params(root=root, test_fraction=0.0), tmp_path / "data")
    rows, failures, attrs = stored(result)
    assert rows == 3 and len(failures) == 5 and rows + len(failures) == candidates
    why = reasons(failures)
    assert "no reader takes the extension '.dae'" in why["cup/c.dae"]
    assert "lies in cup/old/" in why["cup/old/e.obj"] and "lies in lamp/" in why["lamp/h.ply"]
    assert why["lamp/g"] == "not an .npy file (bad magic: it does not start with \\x93NUMPY)"
    assert "OFF" in why["cup/d"]
    assert attrs["handling"]["ignored_companion_files"] == {".mtl": 1, ".png": 1}
    assert attrs["classes"] == ["cup", "lamp"]


def shapenet_core(root):
    """<synset>/<model>/models/model_normalized.obj; two car models without models/, one empty OBJ."""
    for k in range(4):
        m = root / "02958343" / f"{k:032x}"
        if k in (1, 2):
            (m / "images").mkdir(parents=True)
            continue
        (m / "models").mkdir(parents=True)
        (m / "models" / "model_normalized.obj").write_text("mtllib model_normalized.mtl\n" + OCTA)
    for k in range(3):
        m = root / "03001627" / f"{k + 50:032x}" / "models"
        m.mkdir(parents=True)
        (m / "model_normalized.obj").write_text(OCTA if k else "")
    return 7  # model folders


def test_shapenetcore_models_without_a_mesh_are_recorded(tmp_path):
    candidates = shapenet_core(tmp_path / "core")
    result = prepare(source_params("shapenet", tmp_path / "core", test_fraction=0.0), tmp_path / "data")
    rows, failures, _ = stored(result)
    assert rows == 4 and rows + len(failures) == candidates
    why = reasons(failures)
    assert (
        "no models/model_normalized.obj in the model folder (it holds: images/)" in why[f"02958343-{1:032x}"]
    )
    assert f"02958343-{2:032x}" in why and f"03001627-{50:032x}" in why  # the empty OBJ


def test_shapenet55_release_one_level_down_with_unlisted_and_missing_files(tmp_path):
    base = tmp_path / "download" / "ShapeNet55"  # the archive's own top folder
    ids = write_shapenet55(base)  # 6 files; the test list also names one that is absent
    np.save(base / "shapenet_pc" / "02691156-extra.npy", np.zeros((256, 3), np.float32))
    result = prepare(source_params("shapenet", tmp_path / "download"), tmp_path / "data")
    rows, failures, _ = stored(result)
    assert rows == len(ids) and rows + len(failures) == len(ids) + 2
    why = reasons(failures)
    assert (
        why["02691156-extra"].startswith("not read: listed in neither")
        and "file not found" in why["02691156-gone"]
    )


def test_modelnet40_resampled_and_h5_rows_add_up(tmp_path):
    ids = write_resampled(tmp_path / "rs" / "modelnet40_normal_resampled")
    np.savetxt(
        tmp_path / "rs" / "modelnet40_normal_resampled" / "airplane" / "airplane_0099.txt", np.ones((300, 6))
    )
    result = prepare(source_params("modelnet40", tmp_path / "rs"), tmp_path / "data")
    rows, failures, _ = stored(result)
    assert rows == sum(map(len, ids.values())) and reasons(failures).keys() == {"airplane_0099"}
    base = tmp_path / "h5" / "modelnet40_ply_hdf5_2048"
    base.mkdir(parents=True)
    write_h5(base / "ply_data_train0.h5", 5)
    write_h5(base / "ply_data_test0.h5", 3, seed=1)
    with h5py.File(base / "ply_data_train0.h5", "r+") as f:
        f["data"][2, 0, 0] = np.nan
    rows, failures, _ = stored(prepare(source_params("modelnet40", tmp_path / "h5"), tmp_path / "data"))
    assert rows == 7 and len(failures) == 1 and rows + len(failures) == 8


def scanobjectnn(split_dir, suffix="", n=(6, 3)):
    split_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, k in ((f"training_objectdataset{suffix}.h5", n[0]), (f"test_objectdataset{suffix}.h5", n[1])):
        with h5py.File(split_dir / name, "w") as f:
            f["data"] = rng.normal(size=(k, 64, 3)).astype(np.float32)
            f["label"] = rng.integers(0, 15, k)


@pytest.mark.parametrize(
    "variant, folder, suffix",
    [
        ("obj-bg", "main_split", ""),
        ("obj-only", "main_split_nobg", ""),
        ("pb-t50-rs", "main_split", "_augmentedrot_scale75"),
    ],
)
def test_scanobjectnn_as_the_official_archive_unpacks(tmp_path, variant, folder, suffix):
    scanobjectnn(tmp_path / "ScanObjectNN" / "h5_files" / folder, suffix)
    p = source_params("scanobjectnn", tmp_path / "ScanObjectNN", variant=variant)
    rows, failures, attrs = stored(prepare(p, tmp_path / "data"))
    assert rows == 9 and failures == [] and attrs["handling"]["variant"] == variant


def test_a_missing_variant_says_which_h5_files_were_found(tmp_path):
    scanobjectnn(tmp_path / "ScanObjectNN" / "h5_files" / "main_split")
    with pytest.raises(LayoutError) as err:
        sources.scan(source_params("scanobjectnn", tmp_path / "ScanObjectNN", variant="obj-only"), tmp_path)
    assert "h5_files/main_split_nobg" in err.value.message
    assert "h5 files found: h5_files/main_split/test_objectdataset.h5" in err.value.message


def test_resampled_with_only_the_dat_caches_says_what_is_missing(tmp_path):
    base = tmp_path / "modelnet40_normal_resampled"
    base.mkdir()
    for split in ("train", "test"):
        (base / f"modelnet40_{split}_8192pts_fps.dat").write_bytes(b"")
    with pytest.raises(LayoutError) as err:
        sources.scan(source_params("modelnet40", tmp_path), tmp_path)
    text = err.value.message
    assert "found modelnet40_test_8192pts_fps.dat, modelnet40_train_8192pts_fps.dat" in text
    assert "missing modelnet40_shape_names.txt, modelnet40_train.txt, modelnet40_test.txt" in text


def test_missing_shapenet55_lists_point_at_the_point_bert_repository(tmp_path):
    (tmp_path / "ShapeNet55" / "shapenet_pc").mkdir(parents=True)
    np.save(tmp_path / "ShapeNet55" / "shapenet_pc" / "02691156-a.npy", np.zeros((8, 3), np.float32))
    with pytest.raises(LayoutError) as err:
        sources.scan(source_params("shapenet", tmp_path), tmp_path)
    assert "ShapeNet55/ShapeNet-55/train.txt" in err.value.message
    assert "do not contain the lists" in err.value.hint and "Point-BERT repository" in err.value.hint
    assert "data/ShapeNet55-34/ShapeNet-55/" in err.value.hint


# ---- coordinates far from the origin and readable names ----------------------------------------------------


def test_single_precision_far_from_the_origin_is_warned_and_recorded(tmp_path):
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(400, 3)) * 0.5
    (tmp_path / "far" / "scan").mkdir(parents=True)
    np.save(tmp_path / "far" / "scan" / "utm32.npy", (cloud + [4.5e5, 5.4e6, 300.0]).astype(np.float32))
    np.save(tmp_path / "far" / "scan" / "utm64.npy", cloud + [4.5e5, 5.4e6, 300.0])  # float64: fine
    np.save(tmp_path / "far" / "scan" / "near32.npy", cloud.astype(np.float32))
    far_box = trimesh.creation.box().apply_translation((2e6, 0, 0))
    (tmp_path / "far" / "scan" / "far.stl").write_bytes(far_box.export(file_type="stl"))  # binary: float32
    _, failures, attrs = stored(
        prepare(source_params(root=tmp_path / "far", test_fraction=0.0), tmp_path / "data")
    )
    assert failures == []
    warned = {w["id"]: w["warning"] for w in attrs["warnings"]}
    assert warned.keys() == {"scan/utm32", "scan/far"}
    assert "single precision at magnitude 5.4e+06 has steps of 0.5" in warned["scan/utm32"]


def test_default_names_stay_readable_and_distinct_for_non_latin_folders(tmp_path):
    names = [
        sources.default_dataset_name(source_params(root=tmp_path / n))
        for n in ("数据集", "データ", "Café (v2)")
    ]
    assert names == ["数据集", "データ", "Café-v2"]
    nfd = "Cafe\u0301"  # macOS spells é as e + combining accent
    assert sources.default_dataset_name(source_params(root=tmp_path / nfd)) == "Café"
    assert sources.default_dataset_name(source_params(root=tmp_path / "!!!")) == "folder"


def test_synthetic_every_generated_mesh_is_stored_or_recorded(tmp_path):
    p = source_params("synthetic", synthetic_per_class=2)
    rows, failures, _ = stored(prepare(p, tmp_path / "data"))
    generated = list((tmp_path / "data" / "sources").rglob("*.ply"))
    assert len(generated) > 0 and rows + len(failures) == len(generated)
