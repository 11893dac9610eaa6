"""The version-3 synthetic generator: version 1's structures with a relief drawn per object."""

from __future__ import annotations

import numpy as np

from pipeline.sources import synthetic, synthetic_shapes, synthetic_shapes_v3

V3 = synthetic_shapes_v3


def test_v3_has_version_1_classes_and_its_own_folder(tmp_path):
    assert synthetic.shapes(3) is V3 and V3.CLASSES == synthetic_shapes.CLASSES
    assert synthetic.dataset_dir(tmp_path, 1, 30, 0.2, generator=3).name == "synthetic-v3-1-30"


def test_objects_are_deterministic_and_their_relief_is_drawn_per_object():
    a, b, c = V3.make_object("chair", 3, 1), V3.make_object("chair", 3, 1), V3.make_object("chair", 3, 2)
    assert len(a.faces) > 0 and np.isfinite(a.vertices).all() and a.area > 0
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    assert a.vertices.shape != c.vertices.shape or not np.allclose(a.vertices, c.vertices)


def test_the_relief_moves_the_surface_by_its_depth_and_no_more():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, 0.5, size=(4096, 3))
    depths = [np.abs(V3.relief(points, np.random.default_rng(seed))) for seed in range(8)]
    assert all(d.max() <= 0.045 + 1e-9 for d in depths)  # depth ≤ the largest drawn (0.045)
    assert all(d.std() > 1e-3 for d in depths)  # not flat: the surface varies locally
    assert len({round(float(d.mean()), 6) for d in depths}) == 8  # each object draws its own relief
