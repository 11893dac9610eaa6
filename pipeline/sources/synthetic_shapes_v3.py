"""The 15 classes of the version-3 synthetic dataset: version 1's structures with a surface relief per object.

Version 1 tells classes apart by structure (how boxes, cylinders and lathes connect); its patches are flat
or gently curved everywhere, so one constant pattern solves the 3D pretext task. Version 2 gives each
class its own local geometry: the pretext task then needs the encoder, but a randomly initialised encoder
already separates the classes (95.6 % linear SVM with re-estimated BatchNorm statistics against 82.2 % on
version 1), leaving a pre-training nothing to show.

Version 3 separates the two: the class lives in the global structure (version 1's builders, unchanged),
the local geometry in a relief drawn per object and independent of the class (ridges, bumps, grooves or
terraces of random direction, wavelength and depth, displaced along the surface normal). A masked patch
is then predictable only from its visible neighbours on the same object (the encoder is needed), and a
bag of local descriptors (what random weights give) says more about the relief than about the class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.sources.base import object_seed
from pipeline.sources.synthetic_shapes import BUILDERS, posed

if TYPE_CHECKING:
    import trimesh

CLASSES = sorted(BUILDERS)
RELIEFS = ("ridges", "bumps", "grooves", "terraces")
MAX_EDGE = 0.06  # subdivision before displacement: a quarter of the shortest wavelength (≈ 0.22)


def relief(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Displacement (n,) along the normal at ``points`` (n, 3): one relief kind, direction, wavelength, depth."""
    kind = RELIEFS[int(rng.integers(len(RELIEFS)))]
    d1, d2 = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 3)))
    freq, depth = rng.uniform(2.5, 4.5), rng.uniform(0.02, 0.045)  # cycles per unit length; unit-size objects
    p1, p2 = (2 * np.pi * freq * (points @ d) + rng.uniform(0, 2 * np.pi) for d in (d1, d2))
    wave = {
        "ridges": np.sin(p1),
        "bumps": np.sin(p1) * np.sin(p2),
        "grooves": 1.0 - 2.0 * np.abs(np.sin(p1)),
        "terraces": np.sign(np.sin(p1)) * np.abs(np.sin(p1)) ** 0.2,
    }[kind]
    return depth * wave


def make_object(name: str, seed: int, index: int) -> trimesh.Trimesh:
    """Object ``index`` of class ``name``: version 1's parts and pose, then a relief drawn for this object."""
    import trimesh

    rng = np.random.default_rng(object_seed(seed, f"synthetic-v3/{name}/{index}"))
    mesh = trimesh.util.concatenate(BUILDERS[name](rng))
    vertices, faces = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=MAX_EDGE)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    normals = np.asarray(mesh.vertex_normals)
    return posed(
        trimesh.Trimesh(vertices + normals * relief(vertices, rng)[:, None], faces, process=False), rng
    )
