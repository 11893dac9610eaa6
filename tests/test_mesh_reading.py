"""The fast paths of mesh reading give what the slow ones give: surface samples and binary PLY files."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from pipeline.sources import meshes, ply


def reference_samples(vertices, faces, count, rng):
    """Area-weighted sampling written the obvious way (rng.choice, per-sample edges)."""
    areas = meshes.triangle_areas(vertices, faces)
    face = rng.choice(len(faces), size=count, p=areas / areas.sum())
    u, v = rng.random((2, count, 1))
    flip = (u + v) > 1.0
    u, v = np.where(flip, 1.0 - u, u), np.where(flip, 1.0 - v, v)
    a, b, c = vertices[faces[face, 0]], vertices[faces[face, 1]], vertices[faces[face, 2]]
    return a + u * (b - a) + v * (c - a)


@pytest.mark.parametrize("count", [7, 4096])
def test_sample_surface_equals_the_reference_bit_for_bit(count):
    mesh = trimesh.util.concatenate(
        [
            trimesh.creation.box(extents=(3, 1, 0.01)),
            trimesh.creation.icosphere(2).apply_translation((4, 0, 0)),
        ]
    )
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64)
    faces = np.concatenate([faces, faces[:1, [0, 0, 1]]])  # a zero-area face is never drawn
    for seed in range(3):
        fast = meshes.sample_surface(vertices, faces, count, np.random.default_rng(seed))
        slow = reference_samples(vertices, faces, count, np.random.default_rng(seed))
        assert fast.dtype == slow.dtype and np.array_equal(fast, slow), seed


def test_search_right_equals_searchsorted():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 50, 700):
        cdf = np.cumsum(rng.random(n) ** 4)
        cdf /= cdf[-1]
        keys = np.concatenate([rng.random(20000), np.minimum(cdf, np.nextafter(1.0, 0.0)), [0.0]])
        assert np.array_equal(meshes._search_right(cdf, keys), cdf.searchsorted(keys, side="right")), n


def test_binary_ply_reader_equals_trimesh_and_leaves_the_rest_to_it(tmp_path):
    rng = np.random.default_rng(0)
    sphere = trimesh.creation.icosphere(1)
    sphere.visual.vertex_colors = rng.integers(0, 255, (len(sphere.vertices), 4), dtype=np.uint8)
    files = {
        "box.ply": trimesh.creation.box().export(file_type="ply"),
        "normals.ply": trimesh.creation.box().export(file_type="ply", vertex_normal=True),
        "colours.ply": sphere.export(file_type="ply"),
        "cloud.ply": trimesh.PointCloud(rng.random((50, 3))).export(file_type="ply"),
        "ascii.ply": trimesh.creation.box().export(file_type="ply", encoding="ascii"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        loaded = trimesh.load(tmp_path / name, process=False)
        fast = ply.read_simple_ply(tmp_path / name)
        assert (fast is None) == (name == "ascii.ply"), name
        vertices, faces = meshes.read_geometry(tmp_path / name)
        assert vertices.dtype == np.float64 and faces.dtype == np.int64
        assert np.array_equal(vertices, np.asarray(loaded.vertices, dtype=np.float64)), name
        expected = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
        assert np.array_equal(faces, expected), name
    cut = files["box.ply"][: len(files["box.ply"]) // 2]
    (tmp_path / "cut.ply").write_bytes(cut)
    assert ply.read_simple_ply(tmp_path / "cut.ply") is None  # trimesh reports the broken file
