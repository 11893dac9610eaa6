"""A user's own data: ``<root>/<class>/*.<ext>``, one sub-folder per class.

Mesh files (obj, ply, off, stl, glb) are sampled like every mesh (meshes.py); point files (npy, txt,
xyz, pts, csv, asc, ...) are reduced to P points by farthest point sampling. Every other file under a
class folder is listed in the catalog's failures with the reason it is not read (material files and
textures are only counted), so nothing vanishes in silence. A class folder holding ``train/`` and/or
``test/`` sub-folders uses them as the split; otherwise its files are split per class (stratified):
the share ``test_fraction`` of each class, at least one object of every class of two or more, chosen
by a hash of (seed, id), so the split never depends on file order or on the machine. Ids are
``<class>/<file stem>``; classes are sorted
and their index is the label. A class folder that is a symlink leading out of the root is not read (one
failure) unless ``prepare.follow_links``, and is never walked for files it cannot read
(:mod:`pipeline.sources.links`).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from pipeline.core.errors import LayoutError
from pipeline.core.params import PrepareParams
from pipeline.sources import links
from pipeline.sources.base import Catalog, Item, object_seed, scan_failure
from pipeline.sources.meshes import MESH_EXTS, POINT_EXTS

log = logging.getLogger("i2p")

SPLITS = ("train", "test")
# files that sit beside meshes and are not objects: counted, not recorded as failures
COMPANIONS = ("mtl", "png", "jpg", "jpeg", "bmp", "tga", "tif", "tiff", "gif", "webp", "dds", "json", "md")
PATTERN = "<root>/<class>/[train|test/]*.{" + ",".join(MESH_EXTS + POINT_EXTS) + "}"


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _data_files(path: Path) -> list[Path]:
    """Mesh and point files directly in ``path``, sorted by name."""
    exts = {f".{e}" for e in MESH_EXTS + POINT_EXTS}
    return sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")
    )


def make_item(path: Path, class_name: str, label: int) -> Item:
    """One file → Item with id ``<class>/<stem>``; kind "mesh", "npy" or "txt" (ASCII point files)."""
    ext = path.suffix.lower()[1:]
    kind = "mesh" if ext in MESH_EXTS else "npy" if ext == "npy" else "txt"
    return Item(id=f"{class_name}/{path.stem}", path=str(path), label=label, kind=kind)


def n_test(n: int, test_fraction: float) -> int:
    """Test objects of a class of ``n``: the share ``test_fraction`` rounded, at least one when the class
    has two or more objects (and test_fraction > 0), and never the whole class."""
    if n < 2 or test_fraction <= 0:
        return 0
    return int(min(n - 1, max(1, round(n * test_fraction))))


def stratified_split(items: list[Item], seed: int, test_fraction: float) -> dict[str, list[Item]]:
    """One class's items per split: the ``n_test`` items ranked first by a hash of (seed, id) are "test".

    Seeded and independent of file order and machine; every class of ≥ 2 objects gets a test object
    (a per-object hash alone left a class of six without one)."""
    ranked = sorted(items, key=lambda it: (object_seed(seed, "split:" + it.id), it.id))
    test = {it.id for it in ranked[: n_test(len(items), test_fraction)]}
    return {"train": [it for it in items if it.id not in test], "test": [it for it in items if it.id in test]}


def class_items(class_dir: Path, label: int, seed: int, test_fraction: float) -> dict[str, list[Item]]:
    """Items of one class folder per split ("train", "test")."""
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    split_dirs = [class_dir / s for s in SPLITS if (class_dir / s).is_dir()]
    if split_dirs:
        for split_dir in split_dirs:
            out[split_dir.name] += [make_item(p, class_dir.name, label) for p in _data_files(split_dir)]
        return out
    return stratified_split(
        [make_item(p, class_dir.name, label) for p in _data_files(class_dir)], seed, test_fraction
    )


def unread_files(class_dir: Path, taken: set[str], ignored: Counter) -> list[dict]:
    """Files under a class folder that no item reads, as failures (companions such as .mtl or textures
    are only counted in ``ignored``): nothing under a class folder is left out in silence."""
    failures = []
    for path in sorted(class_dir.rglob("*")):
        rel = path.relative_to(class_dir.parent)
        if str(path) in taken or any(p.startswith(".") for p in rel.parts) or not path.is_file():
            continue
        ext = path.suffix.lower()[1:]
        if ext in MESH_EXTS + POINT_EXTS:
            reason = (
                f"not read: lies in {rel.parent}/, but only <class>/ and <class>/{{train,test}}/ are read"
                f" (and <class>/ itself only when it has no train/ or test/ sub-folder)"
            )
        elif ext in COMPANIONS:
            ignored[f".{ext}"] += 1
            continue
        else:
            reason = (
                f"not read: no reader takes the extension '{path.suffix or '(none)'}' (meshes: "
                f"{', '.join(MESH_EXTS)}; point files: {', '.join(POINT_EXTS)})"
            )
        failures.append(scan_failure(f"{rel.parent}/{path.name}", path, reason))
    return failures


def looks_like_folder(root: Path) -> bool:
    """True when some sub-folder of root (or its train/test) holds a mesh or point file."""
    for class_dir in _visible_dirs(root):
        if _data_files(class_dir) or any(
            (class_dir / s).is_dir() and _data_files(class_dir / s) for s in SPLITS
        ):
            return True
    return False


def scan(params: PrepareParams, root: Path, source: str = "folder", layout: str = "folder") -> Catalog:
    """Catalog of ``<root>/<class>/...``; LayoutError when no class folder holds a usable file."""
    if not root.is_dir():
        raise LayoutError(f"dataset root {root} does not exist or is not a directory", "pass --root PATH")
    splits: dict[str, list[Item]] = {s: [] for s in SPLITS}
    classes: list[str] = []
    failures: list[dict] = []
    ignored: Counter = Counter()
    inside, refused = links.Inside(root), []
    for class_dir in _visible_dirs(root):
        target = inside.outside(class_dir)
        if target is not None and not params.follow_links:
            refused.append(links.refusal(class_dir, target, root, f"{class_dir.name}/"))
            continue
        found = class_items(class_dir, len(classes), params.seed, params.test_fraction)
        if target is None:
            failures += unread_files(class_dir, {it.path for v in found.values() for it in v}, ignored)
        else:  # followed: read as a class, never walked (it may be a whole disk)
            log.info(
                "%s: class folder %s/ leads to %s (followed; not walked for unread files)",
                source,
                class_dir.name,
                target,
            )
        if not any(found.values()):
            log.warning("%s: class folder %s/ holds no readable file; left out", source, class_dir.name)
            continue
        classes.append(class_dir.name)
        for split in SPLITS:
            splits[split] += found[split]
    if not classes:
        away = (
            f" ({len(refused)} lead outside it through symlinks, e.g. {refused[0]['path']})"
            if refused
            else ""
        )
        raise LayoutError(
            f"no class folders with mesh or point files under {root}{away}: expected {PATTERN}",
            f"pass {links.OPTION} to read the linked ones"
            if refused
            else "put one sub-folder per class, each holding mesh or point files",
        )
    splits = {k: v for k, v in splits.items() if v}  # a split with no files is left out, not empty
    handling = {"layout": layout, "points": "sampled", "point_order": "fps", "n_points": params.points}
    if failures:
        by_ext = Counter(Path(f["path"]).suffix.lower() or "(none)" for f in failures)
        log.warning(
            "%s: %d files under class folders are not read (%s); see the store's failures",
            source,
            len(failures),
            ", ".join(f"{ext} {n}" for ext, n in sorted(by_ext.items())),
        )
    if ignored:
        handling["ignored_companion_files"] = dict(sorted(ignored.items()))
        log.info(
            "%s: not read, as companions of meshes: %s",
            source,
            ", ".join(f"{n} {ext}" for ext, n in sorted(ignored.items())),
        )
    return Catalog(source, layout, str(root), classes, splits, handling, refused + failures)
