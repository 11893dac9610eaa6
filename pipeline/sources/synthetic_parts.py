"""The embedded part-segmentation dataset: objects of named parts, written in the ShapeNetPart layout.

Eight categories (:mod:`pipeline.sources.synthetic_part_shapes`), 2–4 parts each, 24 global part ids.
Every object is seeded from (seed, category, index): random proportions and optional parts, then
2,048–2,560 points drawn on its parts' surfaces (area-weighted, at least 32 per part), each point
labelled with its part's global id, with the face normal, in shuffled order. They are written as the
release is laid out, under ``<data_root>/sources/synthetic-parts-<seed>-<per_class>[-test<f>]``:
``synsetoffset2category.txt`` (synsets ``9000000k``), ``<synset>/<category>_<nnnn>.txt`` (rows
``x y z nx ny nz part``), ``train_test_split/shuffled_{train,val,test}_file_list.json`` and
``part_ids.json`` (the part names), then read by the ShapeNetPart reader like a user's release.
Per category, the share ``test_fraction`` goes to the test list and one object (when five or more are
left) to the val list. The folder is generated once, atomically, with a ``COMPLETE.json`` marker.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.core.params import PrepareParams
from pipeline.sources import shapenetpart, synthetic
from pipeline.sources.base import Catalog, object_rng
from pipeline.sources.synthetic_part_shapes import CATEGORIES, global_ids, make_parts

VERSION = 1  # a change of what is generated gets a new number (the marker then differs)
POINTS = (2048, 2560)  # points per object, drawn uniformly from this range
MIN_PER_PART = 32


def synset(k: int) -> str:
    """The made-up synset of the k-th category: ``9000000k`` (no WordNet noun offset starts with 9)."""
    return f"{90000000 + k:08d}"


def dataset_dir(data_root: Path, seed: int, per_class: int, test_fraction: float) -> Path:
    """``<data_root>/sources/synthetic-parts-<seed>-<per_class>``; a non-default test share adds
    ``-test<f>``."""
    default = PrepareParams.model_fields["test_fraction"].default
    suffix = "" if test_fraction == default else f"-test{test_fraction:g}"
    return Path(data_root) / "sources" / f"synthetic-parts-{seed}-{per_class}{suffix}"


def split_sizes(per_class: int, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) objects per category: test as the synthetic set's, val one when ≥ 5 are left."""
    n_test = synthetic.n_test(per_class, test_fraction)
    n_val = 1 if per_class - n_test >= 5 else 0
    return per_class - n_test - n_val, n_val, n_test


def sample_object(category: str, seed: int, index: int) -> np.ndarray:
    """Object ``index`` of ``category`` → rows (N, 7) float64 ``x y z nx ny nz part``, N in :data:`POINTS`."""
    import trimesh

    rng = object_rng(seed, f"{category}/{index}")
    parts = make_parts(category, rng)
    ids = global_ids()[category]
    n = int(rng.integers(POINTS[0], POINTS[1] + 1))
    areas = np.array([mesh.area for mesh in parts.values()])
    spare = n - MIN_PER_PART * len(parts)
    counts = MIN_PER_PART + np.floor(spare * areas / areas.sum()).astype(int)
    counts[np.argmax(areas)] += n - counts.sum()  # the rounding remainder to the largest part
    rows = []
    for (name, mesh), k in zip(parts.items(), counts, strict=True):
        xyz, face = trimesh.sample.sample_surface(mesh, int(k), seed=rng)
        rows.append(np.column_stack([xyz, mesh.face_normals[face], np.full(int(k), ids[name])]))
    table = np.concatenate(rows)
    return table[rng.permutation(len(table))]


def _marker(seed: int, per_class: int, test_fraction: float) -> dict:
    return dict(
        version=VERSION, seed=seed, per_class=per_class, test_fraction=test_fraction, parts=global_ids()
    )


def generate(out_dir: Path, seed: int, per_class: int, test_fraction: float) -> None:
    """Write the whole set in the ShapeNetPart layout under out_dir, the marker last."""
    n_train, n_val, _ = split_sizes(per_class, test_fraction)
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    lines = []
    for k, category in enumerate(CATEGORIES):
        folder = out_dir / synset(k)
        folder.mkdir(parents=True, exist_ok=True)
        lines.append(f"{category}\t{synset(k)}")
        for index in range(per_class):
            model = f"{category}_{index:04d}"
            np.savetxt(folder / f"{model}.txt", sample_object(category, seed, index), fmt="%.6f")
            name = "train" if index < n_train else "val" if index < n_train + n_val else "test"
            lists[name].append(f"shape_data/{synset(k)}/{model}")
    (out_dir / shapenetpart.CATEGORY_FILE).write_text("\n".join(lines) + "\n")
    (out_dir / "train_test_split").mkdir()
    shuffle = object_rng(seed, "synthetic-parts lists")
    for name, entries in lists.items():  # shuffled across categories, as the release's lists are
        order = [entries[i] for i in shuffle.permutation(len(entries))]
        (out_dir / "train_test_split" / f"shuffled_{name}_file_list.json").write_text(json.dumps(order))
    (out_dir / shapenetpart.PARTS_FILE).write_text(json.dumps(global_ids(), indent=1))
    (out_dir / synthetic.MARKER).write_text(json.dumps(_marker(seed, per_class, test_fraction), indent=1))


def ensure_dataset(data_root: Path, seed: int, per_class: int, test_fraction: float) -> Path:
    """The generated set's folder, generating it (into a temporary folder, then renamed) unless complete."""
    final = dataset_dir(data_root, seed, per_class, test_fraction)
    marker = _marker(seed, per_class, test_fraction)
    return synthetic.ensure_generated(
        final, marker, lambda out: generate(out, seed, per_class, test_fraction)
    )


def scan(params: PrepareParams, data_root: Path) -> Catalog:
    """Generate the set if needed (``prepare.seed``, ``synthetic_per_class``, ``test_fraction``), then
    read it with the ShapeNetPart reader (ids ``<synset>/<category>_<nnnn>``)."""
    root = ensure_dataset(data_root, params.seed, params.synthetic_per_class, params.test_fraction)
    catalog = shapenetpart.scan(params, root, source="synthetic-parts", layout="synthetic-parts")
    catalog.handling["generator_version"] = VERSION
    return catalog
