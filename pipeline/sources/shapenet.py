"""ShapeNet: the Point-BERT ShapeNet-55 release (method §1.1) or ShapeNetCore.v2 meshes.

``shapenet55_npy``: ``shapenet_pc/<synset>-<model>.npy`` (8192×3) listed by ``ShapeNet-55/{train,test}.txt``;
points are kept in their stored order and normalised (centroid, max norm). ``shapenetcore_v2``:
``<synset>/<model>/models/model_normalized.obj``, sampled like every mesh; all objects are "train"
unless ShapeNet-55 split lists lie in the root, which are then followed. Labels index the sorted
taxonomy ids (the part of an id before the first '-'); ids are ``<synset>-<model>``, as in the lists.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np

from pipeline.core.errors import LayoutError
from pipeline.core.params import PrepareParams
from pipeline.sources.base import Catalog, Item, scan_failure

LAYOUTS = {
    "shapenet55_npy": "<root>[/ShapeNet55-34|/ShapeNet55]/shapenet_pc/*.npy + ShapeNet-55/{train,test}.txt",
    "shapenetcore_v2": "<root>/<synset>/<model>/models/model_normalized.obj",
}
MESH_PATH = ("models", "model_normalized.obj")
SPLITS = ("train", "test")


def _release_dir(root: Path) -> Path | None:
    """The folder holding ``shapenet_pc/``: the root, ``ShapeNet55-34/`` (Point-BERT's DATASET.md),
    ``ShapeNet55/`` (the archive's own top folder), or any other single sub-folder level."""
    named = (root, root / "ShapeNet55-34", root / "ShapeNet55")
    others = sorted(p for p in root.iterdir() if p.is_dir() and p not in named) if root.is_dir() else []
    for base in (*named, *others):
        if (base / "shapenet_pc").is_dir():
            return base
    return None


def _synset_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def detect(root: Path) -> list[str]:
    """The layouts found under root (cheap: directory names and one model per synset)."""
    found = []
    if _release_dir(root) is not None:
        found.append("shapenet55_npy")
    for synset in _synset_dirs(root):
        models = islice((m for m in sorted(synset.iterdir()) if m.is_dir()), 20)
        if any(m.joinpath(*MESH_PATH).is_file() for m in models):
            found.append("shapenetcore_v2")
            break
    return found


def read_split_lists(base: Path) -> dict[str, list[str]]:
    """``ShapeNet-55/{train,test}.txt`` → split → ids (file stems); LayoutError naming a missing list."""
    out = {}
    for split in SPLITS:
        path = base / "ShapeNet-55" / f"{split}.txt"
        if not path.is_file():
            raise LayoutError(
                f"ShapeNet-55 split list missing: expected {path} (one '<synset>-<model>.npy' per line)",
                "the point archives (Drive/Baidu) do not contain the lists: take ShapeNet-55/{train,test}.txt "
                "from the Point-BERT repository (github.com/lulutang0608/Point-BERT, folder "
                f"data/ShapeNet55-34/ShapeNet-55/) and put them in {base}/ShapeNet-55/",
            )
        out[split] = [Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()]
    return out


def _catalog(
    layout: str, root: Path, lists: dict[str, list[str]], make_path, handling: dict, failures: list
) -> Catalog:
    """Items from split → ids; ``make_path(id)`` gives each file (a missing one fails at load time)."""
    classes = sorted({i.split("-", 1)[0] for ids in lists.values() for i in ids})
    label = {c: k for k, c in enumerate(classes)}
    kind = "mesh" if layout == "shapenetcore_v2" else "npy"
    data = None if kind == "mesh" else ("stored", handling["n_points"])
    splits = {
        split: [Item(i, str(make_path(i)), label[i.split("-", 1)[0]], kind, data=data) for i in ids]
        for split, ids in lists.items()
        if ids
    }
    return Catalog("shapenet", layout, str(root), classes, splits, {"layout": layout, **handling}, failures)


def scan_release(root: Path) -> Catalog:
    """The Point-BERT npy release: stored order, normalised, P from the first listed file."""
    base = _release_dir(root)
    assert base is not None
    lists = read_split_lists(base)
    pc_dir = base / "shapenet_pc"
    first = next(
        (pc_dir / f"{i}.npy" for ids in lists.values() for i in ids if (pc_dir / f"{i}.npy").is_file()), None
    )
    if first is None:
        raise LayoutError(f"none of the files listed in {base / 'ShapeNet-55'} exist in {pc_dir}")
    n_points = int(np.load(first, mmap_mode="r").shape[0])
    handling = {"points": "normalised", "point_order": "stored", "n_points": n_points}
    listed = {i for ids in lists.values() for i in ids}
    failures = [
        scan_failure(p.stem, p, "not read: listed in neither ShapeNet-55/train.txt nor test.txt")
        for p in sorted(pc_dir.glob("*.npy"))
        if p.stem not in listed
    ]
    return _catalog("shapenet55_npy", root, lists, lambda i: pc_dir / f"{i}.npy", handling, failures)


def scan_meshes(root: Path, n_points: int) -> Catalog:
    """ShapeNetCore.v2 meshes: every model in "train", or the ShapeNet-55 lists when present."""
    models = sorted(m for s in _synset_dirs(root) for m in s.iterdir() if m.is_dir())
    with_mesh = [m for m in models if m.joinpath(*MESH_PATH).is_file()]
    if (root / "ShapeNet-55").is_dir():
        lists = read_split_lists(root)
        listed = {i for ids in lists.values() for i in ids}
        failures = [  # a listed model without a mesh fails when read ("file not found")
            scan_failure(f"{m.parent.name}-{m.name}", m, "not read: listed in neither ShapeNet-55 list")
            for m in with_mesh
            if f"{m.parent.name}-{m.name}" not in listed
        ]
    else:
        lists = {"train": [f"{m.parent.name}-{m.name}" for m in with_mesh]}
        failures = [
            scan_failure(f"{m.parent.name}-{m.name}", m, _no_mesh_reason(m), "train")
            for m in models
            if not m.joinpath(*MESH_PATH).is_file()
        ]

    def mesh_path(object_id: str) -> Path:
        synset, _, model = object_id.partition("-")
        return root.joinpath(synset, model, *MESH_PATH)

    handling = {"points": "sampled", "point_order": "fps", "n_points": n_points}
    return _catalog("shapenetcore_v2", root, lists, mesh_path, handling, failures)


def _no_mesh_reason(model: Path) -> str:
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in model.iterdir())[:5]
    return (
        f"no {'/'.join(MESH_PATH)} in the model folder (it holds: {', '.join(found) or 'nothing'}); "
        "ShapeNetCore.v2 ships some models without it"
    )


def scan(params: PrepareParams, root: Path, layout: str) -> Catalog:
    """Dispatch on the detected (or requested) layout."""
    return scan_release(root) if layout == "shapenet55_npy" else scan_meshes(root, params.points)
