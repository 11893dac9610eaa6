"""The version-2 synthetic generator: deterministic, non-empty meshes, class-specific local geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i2pmae.tokenizer import group_multiscale
from pipeline.core.errors import ConfigError
from pipeline.sources import synthetic, synthetic_shapes, synthetic_shapes_v2
from pipeline.sources.base import object_rng
from pipeline.sources.meshes import farthest_points, sample_surface, unit_sphere

V2 = synthetic_shapes_v2


def test_v2_is_the_default_and_v1_stays_reachable(tmp_path):
    assert synthetic.VERSION == 2 and synthetic.shapes(2) is V2 and synthetic.shapes(1) is synthetic_shapes
    assert synthetic.dataset_dir(tmp_path, 1, 30, 0.2).name == "synthetic-v2-1-30"
    assert synthetic.dataset_dir(tmp_path, 1, 30, 0.2, generator=1).name == "synthetic-1-30"  # as before
    with pytest.raises(ConfigError, match="choose one of"):
        synthetic.shapes(7)


def test_v1_and_v2_sets_live_side_by_side(tmp_path):
    old = synthetic.ensure_dataset(tmp_path, 5, 2, 0.2, generator=1)
    new = synthetic.ensure_dataset(tmp_path, 5, 2, 0.2)
    assert old != new and {p.name for p in old.iterdir()} >= set(synthetic_shapes.CLASSES)
    assert {p.name for p in new.iterdir()} >= set(V2.CLASSES)
    assert synthetic.ensure_dataset(tmp_path, 5, 2, 0.2, generator=1) == old  # still complete


@pytest.mark.parametrize("name", V2.CLASSES)
def test_every_class_is_deterministic_and_non_empty(name):
    a, b, c = V2.make_object(name, 3, 1), V2.make_object(name, 3, 1), V2.make_object(name, 3, 2)
    assert len(a.faces) > 0 and np.isfinite(a.vertices).all() and a.area > 0
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    assert a.vertices.shape != c.vertices.shape or not np.allclose(a.vertices, c.vertices)


def _patches(name: str, index: int) -> torch.Tensor:
    """Scale-1 pre-training targets (256, 8, 3) of one object, sampled as the mesh reader does."""
    mesh = V2.make_object(name, 0, index)
    surface = sample_surface(np.asarray(mesh.vertices), np.asarray(mesh.faces), 4096, object_rng(0, name))
    xyz = torch.from_numpy(unit_sphere(surface[farthest_points(surface, 2048, "bucket")]))[None]
    return group_multiscale(xyz, (512, 256, 64), (16, 8, 8)).neighborhoods[1][0]


def _chamfer(a: torch.Tensor, b: torch.Tensor) -> float:
    d2 = ((a[:, :, None] - b[:, None]) ** 2).sum(-1)
    return float((d2.min(2).values.mean(1) + d2.min(1).values.mean(1)).mean())


def test_patches_of_different_classes_are_further_apart_than_patches_of_one_object():
    """A cheap measure (a) of benchmarks/synthetic_fairness.py on four objects of four classes."""
    names = ["gear", "harp", "fins", "crystal"]
    patches = {n: _patches(n, 0)[:128] for n in names}
    same = np.mean([_chamfer(p[:64], p[64:]) for p in patches.values()])
    other = np.mean([_chamfer(patches[a][:64], patches[b][64:]) for a in names for b in names if a != b])
    assert other > 1.5 * same, (other, same)
