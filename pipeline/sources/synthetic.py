"""The embedded default dataset: procedural meshes of 15 classes built from trimesh primitives.

Classes differ by structure (parts and how they connect), not by size: every object gets a random
overall scale and wide random proportions, optional parts and part counts, and a small random pose,
all seeded from (seed, class, index). Some pairs are deliberately close (chair/stool/bench, table/desk,
mug/vase/bottle, shelf/tower). Meshes are written as PLY under
``<data_root>/sources/synthetic-<seed>-<per_class>/<class>/{train,test}/<class>_<nnnn>.ply`` and then read
by the same folder reader as users' data, so sampling takes the ordinary mesh code path.

trimesh is imported by the functions that build meshes, so scanning a set that is already generated
(every ``i2p prepare`` that finds its store up to date) does not import it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from pipeline.core.params import PrepareParams
from pipeline.sources import folder
from pipeline.sources.base import Catalog
from pipeline.sources.synthetic_shapes import CLASSES, make_object

VERSION = 1  # bump when the generator changes: existing sets are then regenerated
MARKER = "COMPLETE.json"


def n_test(per_class: int, test_fraction: float) -> int:
    """Test objects per class: the share test_fraction, at least one, leaving at least one for training."""
    return int(min(per_class - 1, max(1, round(per_class * test_fraction))))


def dataset_dir(data_root: Path, seed: int, per_class: int, test_fraction: float) -> Path:
    """``<data_root>/sources/synthetic-<seed>-<per_class>``; a non-default test share adds ``-test<f>``."""
    default = PrepareParams.model_fields["test_fraction"].default
    suffix = "" if test_fraction == default else f"-test{test_fraction:g}"
    return Path(data_root) / "sources" / f"synthetic-{seed}-{per_class}{suffix}"


def _marker(seed: int, per_class: int, test_fraction: float) -> dict:
    return dict(version=VERSION, seed=seed, per_class=per_class, test_fraction=test_fraction, classes=CLASSES)


def _is_complete(path: Path, marker: dict) -> bool:
    try:
        return json.loads((path / MARKER).read_text()) == marker
    except (OSError, ValueError):
        return False


def generate(out_dir: Path, seed: int, per_class: int, test_fraction: float) -> None:
    """Write every object as ``<class>/{train,test}/<class>_<nnnn>.ply`` under out_dir, the marker last."""
    n_train = per_class - n_test(per_class, test_fraction)
    for name in CLASSES:
        for split in ("train", "test"):
            (out_dir / name / split).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            split = "train" if index < n_train else "test"
            make_object(name, seed, index).export(out_dir / name / split / f"{name}_{index:04d}.ply")
    (out_dir / MARKER).write_text(json.dumps(_marker(seed, per_class, test_fraction), indent=1))


def ensure_dataset(data_root: Path, seed: int, per_class: int, test_fraction: float) -> Path:
    """The generated set's folder, generating it (into a temporary folder, then renamed) unless complete."""
    final = dataset_dir(data_root, seed, per_class, test_fraction)
    marker = _marker(seed, per_class, test_fraction)
    if _is_complete(final, marker):
        return final
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        generate(tmp, seed, per_class, test_fraction)
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


def scan(params: PrepareParams, data_root: Path) -> Catalog:
    """Generate the set if needed, then read it with the folder reader (ids ``<class>/<class>_<nnnn>``)."""
    root = ensure_dataset(data_root, params.seed, params.synthetic_per_class, params.test_fraction)
    catalog = folder.scan(params, root, source="synthetic", layout="synthetic")
    catalog.handling["generator_version"] = VERSION
    return catalog
