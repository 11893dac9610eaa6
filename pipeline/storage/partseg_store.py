"""Reading a part-labelled points store (``points/<dataset>-<fp8>.zarr`` of shapenetpart or synthetic-parts).

Such a store (written by :mod:`pipeline.prepare.parts`; docs/pipeline.md, "Stores") keeps every point of
every object, P rows per object: per split ``points (S, P, 3) float32`` (in the unit sphere),
``part (S, P) int16`` (global part ids, −1 on padding), ``count (S,)`` (the real rows; rows from
``count`` on repeat row 0 and are never to be read), ``label (S,)`` (category index) and ``id (S,)``; its
group attrs hold ``task: "partseg"``, ``classes``, ``parts`` (category → global part ids), ``n_parts``
and ``part_names``. A reader draws its points from the first ``count[i]`` rows of object i.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError, StoreError
from pipeline.storage.remote import location

TASK = "partseg"  # the ``task`` attr of a part-labelled points store


@dataclass(frozen=True)
class PartsegSplit:
    """One split of a part store, S objects of P stored rows.

    points: (S, P, 3) float32, each object normalised into the unit sphere over all its points.
    part:   (S, P) int64 global part ids (−1 on padding rows).
    count:  (S,) int64 real rows per object, 1 ≤ count ≤ P; rows ≥ count are padding.
    label:  (S,) int64 category index into the store's ``classes``.
    ids:    the S object ids (``<synset>/<model>``).
    """

    points: np.ndarray
    part: np.ndarray
    count: np.ndarray
    label: np.ndarray
    ids: list[str]


def _open(store_path: Path | str) -> Any:
    """The store's root group, checked: it exists, is complete and holds part labels; its reads raise
    DamagedStore for damaged chunks (:mod:`pipeline.storage.checked`)."""
    from pipeline.storage.checked import open_group

    path = location(store_path)
    if not (path / "zarr.json").exists():
        raise StoreError(
            f"no store at {path}", "prepare the dataset first: `i2p prepare shapenetpart --root PATH`"
        )
    group = open_group(path)
    attrs = dict(group.attrs)
    dataset = attrs.get("dataset", path.name)
    if attrs.get("stage") != "prepare":
        raise StoreError(f"{path} is a {attrs.get('stage')} store, not a points store (prepare)")
    if attrs.get("task") != TASK or "parts" not in attrs:
        raise ConfigError(
            f"dataset {dataset} has no part labels (its points store {path.name} comes from source "
            f"{attrs.get('source')})",
            "prepare shapenetpart or synthetic-parts: `i2p prepare shapenetpart --root PATH` or "
            "`i2p prepare synthetic-parts`",
        )
    if not attrs.get("complete"):
        raise StoreError(
            f"the points store {path} of dataset {dataset} is not complete",
            "rerun `i2p prepare` for it: it resumes where it stopped",
        )
    return group


def partseg_layout(store_path: Path | str) -> tuple[list[str], dict[str, list[int]], int]:
    """(classes, parts, n_parts) of a part store: category names in label order, category → its global
    part ids, and the number of global part ids (50 for the full ShapeNetPart release).

    Raises StoreError (no store, another stage's, incomplete) or ConfigError (a store without part labels).
    """
    attrs = dict(_open(store_path).attrs)
    parts = {name: [int(i) for i in ids] for name, ids in attrs["parts"].items()}
    return list(attrs["classes"]), parts, int(attrs["n_parts"])


def load_partseg_split(store_path: Path | str, split: str) -> PartsegSplit:
    """Read split ``split`` ("train" or "test") of a part store into memory (:class:`PartsegSplit`).

    Raises StoreError (no store, incomplete, no such split) or ConfigError (a store without part labels).
    """
    group = _open(store_path)
    splits = list(group.attrs.get("splits", []))
    if split not in splits:
        raise StoreError(
            f"{location(store_path)} has no split {split!r}; it has {', '.join(splits) or 'none'}"
        )
    sub = group[split]
    out = PartsegSplit(
        points=np.asarray(sub["points"][:], np.float32),
        part=np.asarray(sub["part"][:], np.int64),
        count=np.asarray(sub["count"][:], np.int64),
        label=np.asarray(sub["label"][:], np.int64),
        ids=[str(i) for i in sub["id"][:]],
    )
    S, P = out.part.shape
    assert out.points.shape == (S, P, 3) and out.count.shape == out.label.shape == (S,), (out.points.shape, S)
    assert S == 0 or (out.count.min() >= 1 and out.count.max() <= P), (out.count.min(), out.count.max(), P)
    return out
