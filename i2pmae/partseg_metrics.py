"""Part-segmentation metrics (method §14.4), on NumPy arrays.

* prediction: argmax over the parts of the shape's own category only (other categories' logits ignored);
* part IoU: |pred ∩ gt| / |pred ∪ gt| over the shape's points; a part absent from both counts as 1;
* shape IoU: mean of its category's part IoUs;
* instance mIoU: mean over shapes; class mIoU: mean over categories of their shapes' mean (categories
  with no shape in the evaluated set are left out, not counted as 0 or NaN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


def predict_parts(logits: np.ndarray, category: np.ndarray, parts: Sequence[Sequence[int]]) -> np.ndarray:
    """logits (S, N, n_parts), category (S,) indices into ``parts`` (the global part ids of each category)
    -> predicted global part ids (S, N) int64, each chosen among its shape's category's parts."""
    out = np.empty(logits.shape[:2], np.int64)
    for i, cat in enumerate(np.asarray(category)):
        ids = np.asarray(parts[int(cat)], np.int64)
        out[i] = ids[np.argmax(logits[i][:, ids], axis=1)]
    return out


def shape_iou(pred: np.ndarray, target: np.ndarray, part_ids: Sequence[int]) -> float:
    """Mean part IoU of one shape: pred, target (N,) global part ids; ``part_ids`` its category's parts."""
    ious = []
    for part in part_ids:
        p, t = pred == part, target == part
        union = np.logical_or(p, t).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(p, t).sum()) / float(union))
    return float(np.mean(ious))


@dataclass(frozen=True)
class PartsegScores:
    """One evaluation of a test split: mIoUs in [0, 1] and the per-shape IoUs they come from."""

    instance_miou: float  # mean over shapes
    class_miou: float  # mean over categories present of the mean over their shapes
    accuracy: float  # share of points whose predicted part is right
    per_category: dict[str, float] = field(default_factory=dict)  # category name → mean shape IoU
    shape_ious: list[float] = field(default_factory=list)  # per shape, in input order


def score(
    pred: Sequence[np.ndarray],
    target: Sequence[np.ndarray],
    category: Sequence[int],
    parts: Sequence[Sequence[int]],
    names: Sequence[str] | None = None,
) -> PartsegScores:
    """pred, target: per shape (N_i,) global part ids (an (S, N) array works too); category (S,) indices
    into ``parts`` -> :class:`PartsegScores`. Raises ValueError on an empty set or mismatched lengths."""
    category = np.asarray(category)
    if len(pred) == 0 or len(pred) != len(target) or len(category) != len(pred):
        raise ValueError(f"{len(pred)} predictions, {len(target)} targets, {len(category)} categories")
    if any(np.shape(p) != np.shape(t) for p, t in zip(pred, target, strict=True)):
        raise ValueError("a prediction and its target differ in length")
    ious = [
        shape_iou(np.asarray(p), np.asarray(t), parts[int(c)])
        for p, t, c in zip(pred, target, category, strict=True)
    ]
    by_cat: dict[int, list[float]] = {}
    for iou, c in zip(ious, category, strict=True):
        by_cat.setdefault(int(c), []).append(iou)
    names = list(names) if names is not None else [str(i) for i in range(len(parts))]
    per_category = {names[c]: float(np.mean(v)) for c, v in sorted(by_cat.items())}
    right = sum(int((np.asarray(p) == np.asarray(t)).sum()) for p, t in zip(pred, target, strict=True))
    return PartsegScores(
        instance_miou=float(np.mean(ious)),
        class_miou=float(np.mean(list(per_category.values()))),
        accuracy=right / max(sum(len(t) for t in target), 1),
        per_category=per_category,
        shape_ious=ious,
    )


def parts_by_index(classes: Sequence[str], parts: Mapping[str, Sequence[int]]) -> list[list[int]]:
    """The part ids of each category in ``classes`` order (a store's ``parts`` attr is keyed by name)."""
    return [list(parts[c]) for c in classes]
