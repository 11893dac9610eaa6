"""Data sources of `i2p prepare` on tiny fixtures written in each release's real format.

Every layout: classes, split sizes, ids, shapes, dtype, normalisation, determinism and per-object seeding.
Every bad input: its documented outcome (BadInput with a reason, or LayoutError naming path and expectation).
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from pipeline import sources
from pipeline.core.errors import BadInput
from pipeline.core.params import PrepareParams
from pipeline.sources import meshes, synthetic, synthetic_shapes
from pipeline.sources.base import Item
from tests.builders import SOURCE_POINTS as P
from tests.builders import assert_unit_sphere, box_off, source_params


def load_all(catalog, p):
    return {split: [sources.load_points(it, p) for it in items] for split, items in catalog.splits.items()}


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
    from PIL import Image as image  # pillow comes with matplotlib: no skip

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
        ("empty.obj", "points-only file with 3 finite points"),  # only v lines: a (too small) point file
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
        ("words.txt", "no row of at least 3 numbers"),
    ):
        item = Item(f"c/{name}", str(tmp_path / name), 0, name.split(".")[1])
        with pytest.raises(BadInput, match=reason):
            sources.load_points(item, source_params())


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
    p = source_params(root=root)
    catalog = sources.scan(p, tmp_path / "data")
    assert catalog.classes == ["chair", "cup"] and catalog.layout == "folder"
    assert {s: [it.id for it in items] for s, items in catalog.splits.items()} == {
        s: ["chair/c1", "chair/c2", "cup/u1", "cup/u2", "cup/u3"] for s in ("train", "test")
    }
    assert [it.label for it in catalog.splits["train"]] == [0, 0, 1, 1, 1]
    assert catalog.handling == {
        "layout": "folder",
        "points": "sampled",
        "point_order": "fps",
        "n_points": P,
        "ignored_companion_files": {".md": 2},
    }
    assert catalog.failures == []
    first = load_all(catalog, p)
    for points in first["train"] + first["test"]:
        assert points.shape == (P, 3)
        assert_unit_sphere(points)
    again = [sources.load_points(it, p) for it in reversed(catalog.splits["train"])][::-1]
    assert [a.tobytes() for a in again] == [a.tobytes() for a in first["train"]]  # order-independent
    assert sources.default_dataset_name(p) == "my-data"


def test_folder_split_is_stratified_and_seeded(tmp_path):
    root = tmp_path / "flat"
    sizes = {"one": 1, "pair": 2, "six": 6, "ten": 10}
    for c, n in sizes.items():
        (root / c).mkdir(parents=True)
        for i in range(n):
            (root / c / f"{i}.txt").write_text("0 0 0\n1 1 1\n")
    catalog = sources.scan(source_params(root=root, test_fraction=0.2), tmp_path)
    tests = [it.id.split("/")[0] for it in catalog.splits["test"]]
    assert {c: tests.count(c) for c in sizes} == {"one": 0, "pair": 1, "six": 1, "ten": 2}
    assert len(catalog.splits["train"]) == 19 - 4
    again = sources.scan(source_params(root=root, test_fraction=0.2), tmp_path)
    assert again.splits == catalog.splits  # same seed: same split
    other = {
        sources.scan(source_params(root=root, test_fraction=0.2, seed=s), tmp_path).splits["test"][-1].id
        for s in range(6)
    }
    assert len(other) > 1  # the seed chooses which objects


def test_folder_hashed_split_depends_on_seed_and_id_only(tmp_path):
    root = tmp_path / "flat"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(40):
            (root / c / f"{i}.txt").write_text("0 0 0\n1 1 1\n")
    catalog = sources.scan(source_params(root=root, test_fraction=0.25), tmp_path)
    n_test = len(catalog.splits["test"])
    assert n_test == 20 and n_test + len(catalog.splits["train"]) == 80  # 10 of each class
    assert sources.scan(source_params(root=root, test_fraction=0.25), tmp_path).splits == catalog.splits
    assert len(sources.scan(source_params(root=root, test_fraction=0.0), tmp_path).splits) == 1  # train only
    with pytest.raises(BadInput, match="points-only file with 2 finite points"):
        sources.load_points(catalog.splits["train"][0], source_params(root=root))


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
    assert len(files) == 2 * len(synthetic.shapes(synthetic.VERSION).CLASSES)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    c = synthetic.ensure_dataset(tmp_path / "c", 4, 2, 0.2)
    assert (a / files[0]).read_bytes() != (c / files[0]).read_bytes()
    assert sources.scan(p, tmp_path / "a").splits["test"][0].id.endswith("_0001")  # at least one test object


def test_synthetic_classes_are_not_separable_by_bounding_box_alone():
    """Nearest-centroid on sorted bounding-box extents, trained on seed 0 and tested on seed 1."""

    def features(seed):
        x = [
            np.sort(synthetic_shapes.make_object(c, seed, i).extents)
            for c in synthetic_shapes.CLASSES
            for i in range(12)
        ]
        return np.log(np.array(x)), np.repeat(np.arange(len(synthetic_shapes.CLASSES)), 12)

    (x_train, y_train), (x_test, y_test) = features(0), features(1)
    centroids = np.stack([x_train[y_train == k].mean(axis=0) for k in range(len(synthetic_shapes.CLASSES))])
    pred = np.argmin(((x_test[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = float((pred == y_test).mean())
    assert 1.5 / len(synthetic_shapes.CLASSES) < accuracy < 0.6, accuracy  # above chance, far from trivial
