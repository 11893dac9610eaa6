"""ScanObjectNN h5 splits (method §1.4): points used as stored (2048, not normalised), 15 classes.

variant → files: ``obj-bg`` main_split/{training,test}_objectdataset.h5, ``obj-only``
main_split_nobg/{training,test}_objectdataset.h5, ``pb-t50-rs``
main_split/{training,test}_objectdataset_augmentedrot_scale75.h5. The root may be the ScanObjectNN
folder, its ``h5_files/`` (where the official archive unpacks) or the split folder itself. Keys
``data (n, 2048, 3)`` and ``label (n,)``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import LayoutError
from pipeline.core.params import PrepareParams
from pipeline.sources.base import Catalog
from pipeline.sources.modelnet40 import h5_items, scan_h5

# The class order of the ScanObjectNN release (its shape_names.txt).
CLASSES = [
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
]  # fmt: skip
VARIANTS = {  # variant → (split folder, file suffix)
    "obj-bg": ("main_split", ""),
    "obj-only": ("main_split_nobg", ""),
    "pb-t50-rs": ("main_split", "_augmentedrot_scale75"),
}
FILES = {"train": "training_objectdataset{}.h5", "test": "test_objectdataset{}.h5"}
LAYOUTS = {
    "scanobjectnn_h5": "<root>[/h5_files][/main_split|/main_split_nobg]/"
    "{training,test}_objectdataset[_augmentedrot_scale75].h5"
}


def split_dir(root: Path, variant: str) -> Path | None:
    """The folder holding the variant's files, or None. A root named after the other split folder is refused."""
    folder, suffix = VARIANTS[variant]
    for base in (root, root / "h5_files"):  # the official archive unpacks to h5_files/main_split...
        if (base / folder / FILES["train"].format(suffix)).is_file():
            return base / folder
    if (root / FILES["train"].format(suffix)).is_file():
        other = {"main_split", "main_split_nobg"} - {folder}
        if root.name in other:
            raise LayoutError(
                f"variant {variant} reads {folder}/, but the root {root} is {root.name}/",
                f"pass the ScanObjectNN folder (the parent of {folder}/) as --root",
            )
        return root
    return None


def expected_files(root: Path, variant: str) -> str:
    """The files the variant needs, for error messages."""
    folder, suffix = VARIANTS[variant]
    names = " and ".join(name.format(suffix) for name in FILES.values())
    found = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.h5") if len(p.relative_to(root).parts) <= 3
    )
    return (
        f"{root / folder}/{{{names}}} (or in {root / 'h5_files' / folder}/, or in the root itself) "
        f"for variant {variant}; h5 files found: {', '.join(found[:6]) or 'none'}"
    )


def detect(root: Path, variant: str) -> list[str]:
    return ["scanobjectnn_h5"] if split_dir(root, variant) is not None else []


def scan(params: PrepareParams, root: Path, layout: str) -> Catalog:
    """Both splits of the chosen variant, one Item per h5 row (id ``<file stem>/<row>``)."""
    base = split_dir(root, params.variant)
    folder, suffix = VARIANTS[params.variant]
    if base is None:
        raise LayoutError(
            f"ScanObjectNN {params.variant}: expected {root / folder / FILES['train'].format(suffix)}"
        )
    splits, shapes = {}, set()
    for split, name in FILES.items():
        path = base / name.format(suffix)
        if not path.is_file():
            raise LayoutError(f"ScanObjectNN {params.variant} {split} file missing: expected {path}")
        labels, shape = scan_h5(path)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
            raise LayoutError(
                f"{path}: labels span {labels.min()}..{labels.max()}, expected 0..{len(CLASSES) - 1}"
            )
        shapes.add(shape)
        splits[split] = h5_items(path, labels)
    if len(shapes) != 1:
        raise LayoutError(f"{base}: train and test rows differ in shape {sorted(shapes)}")
    handling = {"layout": layout, "variant": params.variant, "points": "as stored", "point_order": "stored"}
    handling["n_points"] = shapes.pop()[0]
    return Catalog("scanobjectnn", layout, str(root), list(CLASSES), splits, handling)
