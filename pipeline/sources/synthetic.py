"""The embedded default dataset: procedural meshes of 15 classes, in three generator versions.

Version 2 (the default, synthetic_shapes_v2.py) gives every class its own LOCAL geometry at the scale
of a pre-training target (thin sheets and strands of class-specific orientation and spacing, teeth,
holes, slats, spikes, flutes, twist), so the 3D pretext task is not solved by a constant pattern.
Version 1 (synthetic_shapes.py: furniture, vessels and vehicles from boxes, cylinders and lathes;
classes differ by structure, not by size) stays available: ``generator=1``. Every object gets a
random overall scale, proportions, optional parts and a small random pose, all seeded from
(seed, class, index). Meshes are written as PLY under
``<data_root>/sources/<name>/<class>/{train,test}/<class>_<nnnn>.ply``, <name> being
``synthetic-<seed>-<per_class>`` for version 1 and ``synthetic-v<k>-<seed>-<per_class>`` for version k ≥ 2
(version 3, synthetic_shapes_v3.py: version 1's structures with a relief drawn per object), and
then read by the same folder reader as users' data, so sampling takes the ordinary mesh code path.

trimesh is imported by the functions that build meshes, so scanning a set that is already generated
(every ``i2p prepare`` that finds its store up to date) does not import it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from pipeline.core.errors import ConfigError
from pipeline.core.params import PrepareParams
from pipeline.sources import folder, synthetic_shapes, synthetic_shapes_v2, synthetic_shapes_v3
from pipeline.sources.base import Catalog

VERSION = 2  # the default generator; a new one gets a new number, module and folder name
GENERATORS = {
    1: synthetic_shapes,
    2: synthetic_shapes_v2,
    3: synthetic_shapes_v3,
}  # version → module with CLASSES, make_object
MARKER = "COMPLETE.json"


def shapes(generator: int):
    """The module of generator version ``generator`` (its ``CLASSES`` and ``make_object``)."""
    if generator not in GENERATORS:
        raise ConfigError(
            f"synthetic generator version {generator!r} does not exist; choose one of {sorted(GENERATORS)}"
        )
    return GENERATORS[generator]


def n_test(per_class: int, test_fraction: float) -> int:
    """Test objects per class: the share test_fraction, at least one, leaving at least one for training."""
    return int(min(per_class - 1, max(1, round(per_class * test_fraction))))


def dataset_dir(
    data_root: Path, seed: int, per_class: int, test_fraction: float, generator: int = VERSION
) -> Path:
    """``<data_root>/sources/synthetic-<seed>-<per_class>`` (version 1) or ``synthetic-v<g>-<seed>-<per_class>``
    (version g ≥ 2, so sets of different generators never share a folder); a non-default test share
    adds ``-test<f>``."""
    default = PrepareParams.model_fields["test_fraction"].default
    suffix = "" if test_fraction == default else f"-test{test_fraction:g}"
    version = "" if generator == 1 else f"v{generator}-"
    return Path(data_root) / "sources" / f"synthetic-{version}{seed}-{per_class}{suffix}"


def _marker(seed: int, per_class: int, test_fraction: float, generator: int) -> dict:
    classes = shapes(generator).CLASSES
    return dict(
        version=generator, seed=seed, per_class=per_class, test_fraction=test_fraction, classes=classes
    )


def _is_complete(path: Path, marker: dict) -> bool:
    try:
        return json.loads((path / MARKER).read_text()) == marker
    except (OSError, ValueError):
        return False


def generate(
    out_dir: Path, seed: int, per_class: int, test_fraction: float, generator: int = VERSION
) -> None:
    """Write every object as ``<class>/{train,test}/<class>_<nnnn>.ply`` under out_dir, the marker last."""
    module = shapes(generator)
    n_train = per_class - n_test(per_class, test_fraction)
    for name in module.CLASSES:
        for split in ("train", "test"):
            (out_dir / name / split).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            split = "train" if index < n_train else "test"
            mesh = module.make_object(name, seed, index)
            mesh.export(out_dir / name / split / f"{name}_{index:04d}.ply")
    (out_dir / MARKER).write_text(json.dumps(_marker(seed, per_class, test_fraction, generator), indent=1))


def ensure_dataset(
    data_root: Path, seed: int, per_class: int, test_fraction: float, generator: int = VERSION
) -> Path:
    """The generated set's folder, generating it (into a temporary folder, then renamed) unless complete.

    ``generator``: the version of the class builders (2, the default, or 1 for the original set)."""
    final = dataset_dir(data_root, seed, per_class, test_fraction, generator)
    marker = _marker(seed, per_class, test_fraction, generator)
    return ensure_generated(
        final, marker, lambda out: generate(out, seed, per_class, test_fraction, generator)
    )


def ensure_generated(final: Path, marker: dict, write: Callable[[Path], None]) -> Path:
    """``final`` when its ``COMPLETE.json`` equals ``marker``; else ``write(folder)`` fills a temporary
    sibling folder (writing that marker last), which is then renamed to ``final``. Concurrent generators
    are safe: the first rename wins, the others check that the winner's copy is complete."""
    if _is_complete(final, marker):
        return final
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        if final.exists() and not _is_complete(final, marker):  # stale (older generator): set it aside
            stale = final.with_name(f".{final.name}.stale-{uuid.uuid4().hex[:8]}")
            final.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.rename(final)
        except OSError:  # another process renamed its copy first: fine if that one is complete
            if not _is_complete(final, marker):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # left over when another process finished first
    return final


def scan(params: PrepareParams, data_root: Path, generator: int = VERSION) -> Catalog:
    """Generate the set if needed, then read it with the folder reader (ids ``<class>/<class>_<nnnn>``).

    ``generator`` picks the builders' version (a ``prepare.synthetic_version`` param is to pass it)."""
    root = ensure_dataset(data_root, params.seed, params.synthetic_per_class, params.test_fraction, generator)
    catalog = folder.scan(params, root, source="synthetic", layout="synthetic")
    catalog.handling["generator_version"] = generator
    return catalog
