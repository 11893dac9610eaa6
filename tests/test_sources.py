"""Data sources of `i2p prepare` on tiny fixtures written in each release's real format.

Every layout: classes, split sizes, ids, shapes, dtype, normalisation, determinism and per-object seeding.
Every bad input: its documented outcome (BadInput with a reason, or LayoutError naming path and expectation).
"""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import trimesh

from pipeline import sources
from pipeline.errors import BadInput, ConfigError, LayoutError
from pipeline.params import PrepareParams
from pipeline.sources import meshes, synthetic
from pipeline.sources.base import Item

P = 128  # points per mesh object in these tests


def params(source="folder", root=None, **kw) -> PrepareParams:
    base = dict(source=source, root=None if root is None else str(root), points=P, oversample=2)
    return PrepareParams(**{**base, **kw})


def load_all(catalog, p):
    return {split: [sources.load_points(it, p) for it in items] for split, items in catalog.splits.items()}


def assert_unit_sphere(points):
    assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == 3
    assert np.abs(points.mean(axis=0)).max() < 1e-5
    assert abs(float(np.linalg.norm(points, axis=1).max()) - 1.0) < 1e-5


CUBE = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]  # vertex index = 4x + 2y + z
QUADS = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def box_off(glued: bool, quads: bool = False) -> str:
    """A unit cube as OFF text: 6 quads or 12 triangles; the ModelNet40 defect "OFF8 12 0" when glued."""
    faces = list(QUADS) if quads else [t for a, b, c, d in QUADS for t in ((a, b, c), (a, c, d))]
    lines = [" ".join(map(str, v)) for v in CUBE] + [f"{len(f)} " + " ".join(map(str, f)) for f in faces]
    head = f"OFF8 {len(faces)} 0" if glued else f"OFF\n# a comment\n8 {len(faces)} 0"
    return head + "\n" + "\n".join(lines) + "\n"


# ---- meshes ------------------------------------------------------------------------------------------


def test_off_reader_accepts_glued_header_and_triangulates_polygons(tmp_path):
    (tmp_path / "glued.off").write_text(box_off(glued=True))
    (tmp_path / "quads.off").write_text(box_off(glued=False, quads=True))
    v1, f1 = meshes.read_off(tmp_path / "glued.off")
    v2, f2 = meshes.read_off(tmp_path / "quads.off")
    assert v1.shape == (8, 3) and f1.shape == (12, 3) and f2.shape == (12, 3)
    assert meshes.triangle_areas(v1, f1).sum() == pytest.approx(6.0)
    assert meshes.triangle_areas(v2, f2).sum() == pytest.approx(6.0)
    (tmp_path / "mixed.off").write_text(
        "OFF\n5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n4 0 1 2 3\n3 0 1 4 255 0 0\n"
    )
    np.testing.assert_array_equal(
        meshes.read_off(tmp_path / "mixed.off")[1], [[0, 1, 2], [0, 2, 3], [0, 1, 4]]
    )


def test_mesh_sampling_is_deterministic_seeded_by_id_and_in_the_unit_sphere(tmp_path):
    trimesh.creation.box(extents=(3, 1, 0.5)).apply_translation((5, 5, 5)).export(tmp_path / "a.ply")
    a = meshes.sample_mesh_file(tmp_path / "a.ply", P, 4, "bucket", 0, "x/a")
    assert a.shape == (P, 3)
    assert_unit_sphere(a)
    assert a.tobytes() == meshes.sample_mesh_file(tmp_path / "a.ply", P, 4, "bucket", 0, "x/a").tobytes()
    assert not np.array_equal(a, meshes.sample_mesh_file(tmp_path / "a.ply", P, 4, "bucket", 0, "x/b"))
    assert not np.array_equal(a, meshes.sample_mesh_file(tmp_path / "a.ply", P, 4, "bucket", 1, "x/a"))
    exact = meshes.sample_mesh_file(tmp_path / "a.ply", P, 4, "exact", 0, "x/a")
    assert_unit_sphere(exact)


def test_textured_obj_and_glb_scenes_load_as_one_mesh(tmp_path):
    image = pytest.importorskip("PIL.Image")
    uv = np.random.default_rng(0).random((42, 2))
    parts = [trimesh.creation.box(), trimesh.creation.icosphere(subdivisions=1).apply_translation((3, 0, 0))]
    for part, color in zip(parts, ("red", "blue"), strict=True):
        part.visual = trimesh.visual.TextureVisuals(
            uv=uv[: len(part.vertices)], image=image.new("RGB", (4, 4), color)
        )
    trimesh.Scene(parts).export(tmp_path / "two.obj")  # two materials: trimesh loads a Scene
    trimesh.Scene(parts).export(tmp_path / "two.glb")
    assert isinstance(trimesh.load(tmp_path / "two.obj"), trimesh.Scene)
    for name in ("two.obj", "two.glb"):
        vertices, faces = meshes.read_geometry(tmp_path / name)
        assert np.ptp(vertices[:, 0]) > 3.5 and len(faces) == 12 + 80  # both parts are there
        assert_unit_sphere(meshes.sample_mesh_file(tmp_path / name, P, 2, "bucket", 0, name))


def _bad_files(tmp_path):
    (tmp_path / "empty.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    (tmp_path / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\n")
    (tmp_path / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\nf 1 1 2\n")
    data = trimesh.creation.box().export(file_type="ply")
    (tmp_path / "truncated.ply").write_bytes(data[: len(data) // 2])
    (tmp_path / "truncated.off").write_text("\n".join(box_off(glued=True).splitlines()[:12]))
    (tmp_path / "noheader.off").write_text("8 12 0\n0 0 0\n")


@pytest.mark.parametrize(
    "name, reason",
    [
        ("empty.obj", "empty mesh: no faces"),
        ("nan.obj", "non-finite"),
        ("flat.obj", "total surface area"),
        ("truncated.ply", "unreadable .ply file"),
        ("truncated.off", "truncated OFF file"),
        ("noheader.off", "not an OFF file"),
        ("missing.obj", "file not found"),
    ],
)
def test_bad_meshes_raise_badinput_with_reason(tmp_path, name, reason):
    _bad_files(tmp_path)
    with pytest.raises(BadInput, match=reason):
        meshes.sample_mesh_file(tmp_path / name, P, 2, "bucket", 0, name)


def test_broken_point_files_raise_badinput(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((P, 3), np.float32))
    (tmp_path / "t.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:100])
    (tmp_path / "flat.npy").write_bytes((tmp_path / "a.npy").read_bytes())
    (tmp_path / "words.txt").write_text("x y z\n")
    for name, reason in (
        ("t.npy", "unreadable .npy"),
        ("flat.npy", "coincide"),
        ("words.txt", "unreadable .txt"),
    ):
        item = Item(f"c/{name}", str(tmp_path / name), 0, name.split(".")[1])
        with pytest.raises(BadInput, match=reason):
            sources.load_points(item, params())


def test_points_only_ply_is_a_point_file(tmp_path):
    rng = np.random.default_rng(0)
    trimesh.PointCloud(rng.random((P + 10, 3))).export(tmp_path / "many.ply")
    trimesh.PointCloud(rng.random((P - 1, 3))).export(tmp_path / "few.ply")
    assert_unit_sphere(meshes.sample_mesh_file(tmp_path / "many.ply", P, 2, "bucket", 0, "many"))
    with pytest.raises(BadInput, match=f"points-only file with {P - 1} .*needs >= {P}"):
        meshes.sample_mesh_file(tmp_path / "few.ply", P, 2, "bucket", 0, "few")


# ---- folder ------------------------------------------------------------------------------------------


def write_folder(root, split_dirs=True):
    """chair: two meshes (PLY, OBJ) per split; cup: an OFF mesh, an npy and a txt point file."""
    rng = np.random.default_rng(0)
    for split in ("train", "test") if split_dirs else ("",):
        d = root / "chair" / split
        d.mkdir(parents=True, exist_ok=True)
        trimesh.creation.box(extents=rng.uniform(0.5, 2, 3)).export(d / "c1.ply")
        trimesh.creation.cylinder(radius=0.3, height=1.0).export(d / "c2.obj")
        d = root / "cup" / split
        d.mkdir(parents=True, exist_ok=True)
        (d / "u1.off").write_text(box_off(glued=True))
        np.save(d / "u2.npy", rng.random((P * 2, 3)).astype(np.float32))
        np.savetxt(d / "u3.txt", rng.random((P * 2, 6)), delimiter=",")
        (d / "notes.md").write_text("ignored")
    (root / "empty_class").mkdir()
    return root


def test_folder_with_split_dirs(tmp_path):
    root = write_folder(tmp_path / "my data")
    p = params(root=root)
    catalog = sources.scan(p, tmp_path / "data")
    assert catalog.classes == ["chair", "cup"] and catalog.layout == "folder"
    assert {s: [it.id for it in items] for s, items in catalog.splits.items()} == {
        s: ["chair/c1", "chair/c2", "cup/u1", "cup/u2", "cup/u3"] for s in ("train", "test")
    }
    assert [it.label for it in catalog.splits["train"]] == [0, 0, 1, 1, 1]
    assert catalog.handling == {"layout": "folder", "points": "sampled", "point_order": "fps", "n_points": P}
    first = load_all(catalog, p)
    for points in first["train"] + first["test"]:
        assert points.shape == (P, 3)
        assert_unit_sphere(points)
    again = [sources.load_points(it, p) for it in reversed(catalog.splits["train"])][::-1]
    assert [a.tobytes() for a in again] == [a.tobytes() for a in first["train"]]  # order-independent
    assert sources.default_dataset_name(p) == "my-data"


def test_folder_hashed_split_depends_on_seed_and_id_only(tmp_path):
    root = tmp_path / "flat"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(40):
            (root / c / f"{i}.txt").write_text("0 0 0\n1 1 1\n")
    catalog = sources.scan(params(root=root, test_fraction=0.25), tmp_path)
    n_test = len(catalog.splits["test"])
    assert 5 <= n_test <= 35 and n_test + len(catalog.splits["train"]) == 80
    assert sources.scan(params(root=root, test_fraction=0.25), tmp_path).splits == catalog.splits
    assert len(sources.scan(params(root=root, test_fraction=0.0), tmp_path).splits) == 1  # train only
    with pytest.raises(BadInput, match="points-only file with 2 finite points"):
        sources.load_points(catalog.splits["train"][0], params(root=root))


# ---- shapenet ----------------------------------------------------------------------------------------


def write_shapenet55(base, n=4):
    """Point-BERT layout: shapenet_pc/<synset>-<model>.npy (n points) + ShapeNet-55/{train,test}.txt."""
    (base / "shapenet_pc").mkdir(parents=True)
    (base / "ShapeNet-55").mkdir()
    rng = np.random.default_rng(0)
    ids = [f"{s}-m{k}" for s in ("04379243", "02691156") for k in range(3)]
    for i in ids:
        np.save(base / "shapenet_pc" / f"{i}.npy", (rng.random((256, 3)) * 3 + 1).astype(np.float32))
    (base / "ShapeNet-55" / "train.txt").write_text("\n".join(f"{i}.npy" for i in ids[:2] + ids[3:5]) + "\n")
    (base / "ShapeNet-55" / "test.txt").write_text(f"{ids[2]}.npy\n{ids[5]}.npy\n02691156-gone.npy\n")
    return ids


@pytest.mark.parametrize("nested", [False, True])
def test_shapenet55_release(tmp_path, nested):
    base = tmp_path / "ShapeNet55-34" if nested else tmp_path
    ids = write_shapenet55(base)
    p = params("shapenet", tmp_path)
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
        sources.scan(params("shapenet", tmp_path), tmp_path)


def test_shapenetcore_meshes_all_train_or_following_lists(tmp_path):
    for synset, model in (("02691156", "a1"), ("02691156", "a2"), ("03001627", "c1")):
        d = tmp_path / synset / model / "models"
        d.mkdir(parents=True)
        trimesh.creation.box().export(d / "model_normalized.obj")
    p = params("shapenet", tmp_path)
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


def write_h5(path, n, n_points=2048, label_shape=(1,), keys=("data", "label"), seed=0):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f[keys[0]] = rng.uniform(-1, 1, (n, n_points, 3)).astype(np.float32)
        f[keys[1]] = rng.integers(0, 3, (n, *label_shape)).astype(np.uint8)


def test_modelnet40_h5_used_as_stored(tmp_path):
    base = tmp_path / "modelnet40_ply_hdf5_2048"
    base.mkdir()
    for k, name in enumerate(("ply_data_train10.h5", "ply_data_train2.h5", "ply_data_test0.h5")):
        write_h5(base / name, 3, n_points=64, seed=k)
    (base / "shape_names.txt").write_text("airplane\nbathtub\nbed\n")
    p = params("modelnet40", tmp_path)
    catalog = sources.scan(p, tmp_path / "data")
    assert catalog.layout == "modelnet40_ply_hdf5_2048" and catalog.classes == ["airplane", "bathtub", "bed"]
    assert [it.id for it in catalog.splits["train"]][:4] == ["ply_data_train2/0", "ply_data_train2/1", "ply_data_train2/2", "ply_data_train10/0"]  # fmt: skip
    assert len(catalog.splits["test"]) == 3
    assert catalog.handling == {"layout": "modelnet40_ply_hdf5_2048", "points": "as stored", "point_order": "stored", "n_points": 64}  # fmt: skip
    item = catalog.splits["train"][3]
    with h5py.File(base / "ply_data_train10.h5") as f:
        assert sources.load_points(item, p).tobytes() == f["data"][0].tobytes()
        assert item.label == int(f["label"][0, 0])
    assert sources.default_dataset_name(p) == "modelnet40"


def test_modelnet40_h5_wrong_keys_and_nan_rows(tmp_path):
    write_h5(tmp_path / "ply_data_train0.h5", 2, keys=("points", "label"))
    write_h5(tmp_path / "ply_data_test0.h5", 2)
    with pytest.raises(LayoutError, match=r"ply_data_train0\.h5: h5 keys found \['label', 'points'\], expected \['data', 'label'\]"):  # fmt: skip
        sources.scan(params("modelnet40", tmp_path), tmp_path)
    write_h5(tmp_path / "ply_data_train0.h5", 2)
    with h5py.File(tmp_path / "ply_data_train0.h5", "a") as f:
        f["data"][1, 5, 0] = np.nan
    catalog = sources.scan(params("modelnet40", tmp_path), tmp_path)
    with pytest.raises(BadInput, match="non-finite"):
        sources.load_points(catalog.splits["train"][1], params("modelnet40", tmp_path))


def write_resampled(base, n_per=3, n_lines=300):
    names = ["airplane", "night_stand"]
    rng = np.random.default_rng(0)
    (base).mkdir(parents=True)
    (base / "modelnet40_shape_names.txt").write_text("\n".join(names) + "\n")
    ids = {"train": [], "test": []}
    for c in names:
        (base / c).mkdir()
        for k in range(n_per):
            i = f"{c}_{k + 1:04d}"
            np.savetxt(base / c / f"{i}.txt", rng.uniform(-2, 3, (n_lines, 6)), fmt="%.6f", delimiter=",")
            ids["test" if k == n_per - 1 else "train"].append(i)
    for split, lst in ids.items():
        (base / f"modelnet40_{split}.txt").write_text("\n".join(lst) + "\n")
    return ids


def test_modelnet40_resampled_txt_is_fps_sampled(tmp_path):
    ids = write_resampled(tmp_path / "modelnet40_normal_resampled")
    p = params("modelnet40", tmp_path)
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
    p = params("modelnet40", tmp_path)
    catalog = sources.scan(p, tmp_path / "data")
    assert catalog.handling["n_points"] == 8192 and catalog.handling["point_order"] == "stored"
    points = sources.load_points(catalog.splits["test"][1], p)
    assert points.shape == (8192, 3)
    assert_unit_sphere(points)
    stored = pickle.loads((base / "modelnet40_test_8192pts_fps.dat").read_bytes())[0][1][:, :3].astype(
        np.float64
    )
    np.testing.assert_allclose(points, (stored - stored.mean(0)) / np.linalg.norm(stored - stored.mean(0), axis=1).max(), atol=1e-6)  # fmt: skip


def test_modelnet40_off_meshes(tmp_path):
    for c in ("bed", "chair"):
        for split in ("train", "test"):
            (tmp_path / "ModelNet40" / c / split).mkdir(parents=True)
            (tmp_path / "ModelNet40" / c / split / f"{c}_0001.off").write_text(box_off(glued=True))
    p = params("modelnet40", tmp_path)
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
    ],  # fmt: skip
)
@pytest.mark.parametrize("root_is_split_dir", [False, True])
def test_scanobjectnn_variants(tmp_path, variant, folder, suffix, root_is_split_dir):
    d = tmp_path / "ScanObjectNN" / folder
    d.mkdir(parents=True)
    write_h5(d / f"training_objectdataset{suffix}.h5", 4, label_shape=())
    write_h5(d / f"test_objectdataset{suffix}.h5", 2, label_shape=(), seed=1)
    p = params("scanobjectnn", d if root_is_split_dir else tmp_path / "ScanObjectNN", variant=variant)
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
        sources.scan(params("scanobjectnn", d, variant="obj-only"), tmp_path)


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
        sources.scan(params(source, tmp_path), tmp_path)
    with pytest.raises(LayoutError, match="does not exist"):
        sources.scan(params(source, tmp_path / "nowhere"), tmp_path)
    with pytest.raises(ConfigError, match="unknown layout"):
        sources.scan(params(source, tmp_path, layout="nope"), tmp_path)


# ---- synthetic ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def src_synthetic_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic-data")


def test_synthetic_default_set(src_synthetic_root):
    p = PrepareParams(points=P, oversample=2)
    catalog = sources.scan(p, src_synthetic_root)
    assert catalog.source == "synthetic" and len(catalog.classes) >= 12
    n = {s: len(v) for s, v in catalog.splits.items()}
    assert n == {"train": 24 * len(catalog.classes), "test": 6 * len(catalog.classes)}  # a few hundred
    assert catalog.splits["test"][0].id == f"{catalog.classes[0]}/{catalog.classes[0]}_0024"
    for item in catalog.splits["test"][::15]:
        assert_unit_sphere(sources.load_points(item, p))
    assert sources.default_dataset_name(p) == "synthetic"
    marker = next(src_synthetic_root.glob("sources/*/COMPLETE.json"))
    mesh = next(src_synthetic_root.glob("sources/*/*/train/*.ply"))
    stamps = marker.stat().st_mtime_ns, mesh.stat().st_mtime_ns
    assert sources.scan(p, src_synthetic_root).splits == catalog.splits
    assert (marker.stat().st_mtime_ns, mesh.stat().st_mtime_ns) == stamps  # not regenerated


def test_synthetic_same_seed_same_files(tmp_path):
    p = PrepareParams(synthetic_per_class=2, seed=3)
    a = synthetic.ensure_dataset(tmp_path / "a", 3, 2, 0.2)
    b = synthetic.ensure_dataset(tmp_path / "b", 3, 2, 0.2)
    files = sorted(f.relative_to(a) for f in a.rglob("*.ply"))
    assert len(files) == 2 * len(synthetic.CLASSES)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    c = synthetic.ensure_dataset(tmp_path / "c", 4, 2, 0.2)
    assert (a / files[0]).read_bytes() != (c / files[0]).read_bytes()
    assert sources.scan(p, tmp_path / "a").splits["test"][0].id.endswith("_0001")  # at least one test object


def test_synthetic_classes_are_not_separable_by_bounding_box_alone():
    """Nearest-centroid on sorted bounding-box extents, trained on seed 0 and tested on seed 1."""

    def features(seed):
        x = [np.sort(synthetic.make_object(c, seed, i).extents) for c in synthetic.CLASSES for i in range(12)]
        return np.log(np.array(x)), np.repeat(np.arange(len(synthetic.CLASSES)), 12)

    (x_train, y_train), (x_test, y_test) = features(0), features(1)
    centroids = np.stack([x_train[y_train == k].mean(axis=0) for k in range(len(synthetic.CLASSES))])
    pred = np.argmin(((x_test[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = float((pred == y_test).mean())
    assert 1.5 / len(synthetic.CLASSES) < accuracy < 0.6, accuracy  # above chance, far from trivial
