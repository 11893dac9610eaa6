"""ShapeNetPart: part-labelled points of ``shapenetcore_partanno_segmentation_benchmark_v0_normal``.

The release (``<root>``, or the folder of that name under it): ``synsetoffset2category.txt`` (one
``<Category>\\t<synset>`` per line; the line order is the class index, the reference's one-hot order),
``<synset>/<model>.txt`` (one row per point, :mod:`pipeline.sources.part_files`) and
``train_test_split/shuffled_{train,val,test}_file_list.json`` (JSON lists of ``shape_data/<synset>/<model>``).
Our train split is the train list then the val list; test is the test list. Ids are ``<synset>/<model>``.

Part ids are the files' own global ids. The release's 16 categories own contiguous ranges of 50 ids
(:data:`RELEASE_PARTS`); a ``part_ids.json`` beside the category file, ``{"<Category>": {"<part>":
<id>, …}, …}``, gives the parts of other categories (the synthetic-parts set writes one).

Every point of an object is stored: P, the rows per object, is the largest object's point count (found
by counting the lines of every listed file at scan time), capped by ``prepare.points``. Nothing under the
root vanishes: a listed file that is missing, a list entry of an unknown synset and a file in no list are
recorded in the store's ``failures``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.errors import LayoutError
from pipeline.core.params import PrepareParams
from pipeline.sources.base import Catalog, Item, scan_failure
from pipeline.sources.part_files import count_rows
from pipeline.sources.textformats import read_text

RELEASE = "shapenetcore_partanno_segmentation_benchmark_v0_normal"
LAYOUT = "shapenetpart_normal"
LAYOUTS = {
    LAYOUT: f"<root>[/{RELEASE}]/synsetoffset2category.txt + <synset>/<model>.txt + "
    "train_test_split/shuffled_{train,val,test}_file_list.json"
}
CATEGORY_FILE = "synsetoffset2category.txt"
PARTS_FILE = "part_ids.json"
LISTS = (("train", "train"), ("val", "train"), ("test", "test"))  # list → our split; val is optional
# The release's categories and how many parts each owns, in the order of their global id ranges.
RELEASE_COUNTS = {
    "Airplane": 4, "Bag": 2, "Cap": 2, "Car": 4, "Chair": 4, "Earphone": 3, "Guitar": 3, "Knife": 2,
    "Lamp": 4, "Laptop": 2, "Motorbike": 6, "Mug": 2, "Pistol": 3, "Rocket": 3, "Skateboard": 3, "Table": 3,
}  # fmt: skip
_STARTS = [sum(list(RELEASE_COUNTS.values())[:k]) for k in range(len(RELEASE_COUNTS))]
RELEASE_PARTS = {  # category → its global part ids: Airplane 0-3, Bag 4-5, …, Table 47-49
    name: list(range(start, start + n))
    for (name, n), start in zip(RELEASE_COUNTS.items(), _STARTS, strict=True)
}


def release_dir(root: Path) -> Path | None:
    """The folder holding ``synsetoffset2category.txt``: the root, ``<root>/<RELEASE>``, or the one other
    sub-folder that holds it (an archive unpacked one level up)."""
    named = (root, root / RELEASE)
    for base in named:
        if (base / CATEGORY_FILE).is_file():
            return base
    others = sorted(p for p in root.iterdir() if p.is_dir() and (p / CATEGORY_FILE).is_file())
    if len(others) > 1:
        raise LayoutError(
            f"several ShapeNetPart releases under {root}: {', '.join(p.name for p in others)}",
            "pass the one to read as --root",
        )
    return others[0] if others else None


def detect(root: Path) -> list[str]:
    return [LAYOUT] if release_dir(root) is not None else []


def read_categories(base: Path) -> list[tuple[str, str]]:
    """``synsetoffset2category.txt`` → [(category, synset)] in file order; LayoutError when malformed."""
    path = base / CATEGORY_FILE
    lines = [(k + 1, ln.split()) for k, ln in enumerate(read_text(path).splitlines()) if ln.strip()]
    fix = f"use the {CATEGORY_FILE} of the {RELEASE} release"
    if not lines:
        raise LayoutError(f"{path} lists no category", fix)
    for number, words in lines:
        if len(words) != 2:
            raise LayoutError(
                f"{path}: line {number} is {' '.join(words)!r}, not '<Category><tab><synset>'", fix
            )
    for column in (0, 1):
        seen = [words[column] for _, words in lines]
        twice = next((w for w in seen if seen.count(w) > 1), None)
        if twice is not None:
            raise LayoutError(f"{path} names {twice!r} twice: every category and synset once", fix)
    return [(words[0], words[1]) for _, words in lines]


def part_table(base: Path, names: list[str]) -> tuple[dict[str, list[int]], list[str], str]:
    """(category → global part ids, name of every id, where they come from) for the categories ``names``."""
    path = base / PARTS_FILE
    if not path.is_file():
        unknown = [n for n in names if n not in RELEASE_PARTS]
        if unknown:
            raise LayoutError(
                f"category {unknown[0]!r} of {base / CATEGORY_FILE} has no known part ids (the release "
                f"has {', '.join(RELEASE_PARTS)})",
                f'name its parts in {path}: {{"{unknown[0]}": {{"<part name>": <global id>, ...}}, ...}}',
            )
        parts = {n: RELEASE_PARTS[n] for n in names}
        labels = {i: f"{n}/{k}" for n in names for k, i in enumerate(parts[n])}
        origin = "the release's part id ranges"
    else:
        declared = _read_parts_file(path)
        missing = [n for n in names if n not in declared]
        if missing:
            raise LayoutError(f"{path} names no parts of category {missing[0]!r}", f"add it to {path}")
        parts = {n: sorted(declared[n].values()) for n in names}
        labels = {i: f"{n}/{part}" for n in names for part, i in declared[n].items()}
        origin = PARTS_FILE
    n_parts = 1 + max(i for ids in parts.values() for i in ids)
    return parts, [labels.get(i, "") for i in range(n_parts)], origin


def _read_parts_file(path: Path) -> dict[str, dict[str, int]]:
    try:
        raw = json.loads(read_text(path))
    except ValueError as err:
        raise LayoutError(f"{path} is not valid JSON: {err}") from None
    ok = isinstance(raw, dict) and all(
        isinstance(v, dict)
        and v
        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v.values())
        for v in raw.values()
    )
    if not ok:
        raise LayoutError(f'{path} must map each category to {{"<part name>": <global id ≥ 0>, ...}}')
    owners: dict[int, str] = {}
    for category, named in raw.items():
        for i in named.values():
            if i in owners and owners[i] != category:
                raise LayoutError(f"{path}: part id {i} belongs to both {owners[i]} and {category}")
            owners[i] = category
    return raw


def read_lists(base: Path) -> dict[str, list[str]]:
    """``train_test_split/shuffled_<list>_file_list.json`` → list name → entries (train and test required)."""
    out = {}
    for name, _ in LISTS:
        path = base / "train_test_split" / f"shuffled_{name}_file_list.json"
        if not path.is_file():
            if name == "val":
                continue
            raise LayoutError(
                f"ShapeNetPart split list missing: expected {path} "
                "(a JSON list of 'shape_data/<synset>/<model>')",
                "copy train_test_split/ from the release archive",
            )
        try:
            entries = json.loads(read_text(path))
        except ValueError as err:
            raise LayoutError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise LayoutError(f"{path} must hold a JSON list of strings 'shape_data/<synset>/<model>'")
        out[name] = entries
    return out


def _items(
    base: Path, categories: list[tuple[str, str]], parts: dict[str, list[int]]
) -> tuple[dict, list, set]:
    """Items per split, scan failures, and the (synset, model) pairs the lists name."""
    label = {synset: (k, name) for k, (name, synset) in enumerate(categories)}
    splits: dict[str, list[Item]] = {"train": [], "test": []}
    failures: list[dict[str, Any]] = []
    listed: set[tuple[str, str]] = set()
    for name, entries in read_lists(base).items():
        split = dict(LISTS)[name]
        where = f"shuffled_{name}_file_list.json"
        for entry in entries:
            words = [w for w in entry.strip().replace("\\", "/").split("/") if w]
            if len(words) < 2 or words[-2] not in label:
                reason = f"{where} lists {entry!r}: " + (
                    "not 'shape_data/<synset>/<model>'"
                    if len(words) < 2
                    else f"synset {words[-2]} is not in {CATEGORY_FILE}"
                )
                failures.append(scan_failure(entry, base / "train_test_split" / where, reason, split))
                continue
            synset, model = words[-2], words[-1]
            listed.add((synset, model))
            path, (k, category) = base / synset / f"{model}.txt", label[synset]
            if not path.is_file():
                failures.append(
                    scan_failure(
                        f"{synset}/{model}", path, f"listed in {where}, but the file is missing", split
                    )
                )
                continue
            splits[split].append(
                Item(f"{synset}/{model}", str(path), k, "partseg", data=(category, tuple(parts[category])))
            )
    return splits, failures, listed


def scan(params: PrepareParams, root: Path, source: str = "shapenetpart", layout: str = LAYOUT) -> Catalog:
    """Catalog of a ShapeNetPart-layout folder: items per split (kind ``partseg``), the part table, and
    P (``handling["n_points"]``) = min(prepare.points, the largest listed file's line count)."""
    base = release_dir(root)
    if base is None:
        raise LayoutError(f"no {CATEGORY_FILE} under {root}; looked for {LAYOUTS[LAYOUT]}")
    categories = read_categories(base)
    parts, part_names, origin = part_table(base, [name for name, _ in categories])
    splits, failures, listed = _items(base, categories, parts)
    failures += [  # every file of a category folder is a candidate: one in no list is named
        scan_failure(
            f"{synset}/{p.stem}", p, "not read: listed in none of shuffled_{train,val,test}_file_list.json"
        )
        for _, synset in categories
        for p in sorted((base / synset).glob("*.txt"))
        if (synset, p.stem) not in listed
    ]
    most = max((count_rows(Path(it.path)) for items in splits.values() for it in items), default=1)
    handling = {
        "layout": layout,
        "points": "normalised",
        "point_order": "stored",
        "n_points": min(params.points, max(most, 1)),
        "points_cap": params.points,
        "most_rows_found": most,
        "rows": "every point of an object (a seeded subset above the cap), then its first point repeated; "
        "`count` says how many are real",
        "part_ids": origin,
    }
    return Catalog(
        source, layout, str(root), [n for n, _ in categories], splits, handling, failures, parts, part_names
    )
