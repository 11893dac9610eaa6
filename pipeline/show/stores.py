"""``i2p show OBJECT``: a PNG of an object's three depth views and the teacher's saliency on them.

So a person can check that the views look like the shape and see where the teacher looks. OBJECT is
an id from the points store (e.g. ``chair/chair_0003``) or a row index in the split. Beside each PNG
a JSON file names its panels, colour bars, teacher and object (what the tests check, and a record
of what the picture shows). The helpers here are shared with ``i2p show --run`` (run_picture.py).
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.storage.store import atomic_write_bytes

VIEW_NAMES = ("view 1: rows x, cols y", "view 2: rows z, cols x", "view 3: rows y, cols z")  # method §5.1
SALIENCY_LABEL = "teacher saliency (CLS→patch attention)"
DEPTH_LABEL = "depth image (sigmoid of summed depth)"


def locate(points: Any, split: str, obj: str) -> int:
    """Row of ``obj`` (an id, or a row index) in ``split`` of a points store group.

    ConfigError when the split is unknown, or when the object is not in it: the hint names the split
    that holds it (``--split test``), else ids that contain the text."""
    splits = list(points.attrs.get("splits", []))
    if split not in splits:
        raise ConfigError(f"split {split!r} is not in {points.store}", f"splits: {', '.join(splits)}")
    ids = points[f"{split}/id"][:]
    matches = np.flatnonzero(ids == obj)
    if len(matches):
        return int(matches[0])
    if obj.isdigit() and int(obj) < len(ids):
        return int(obj)
    for other in (s for s in splits if s != split):
        if (points[f"{other}/id"][:] == obj).any():
            raise ConfigError(
                f"object {obj!r} is not in the {split} split; it is in the {other} split",
                f"pass --split {other}",
            )
    every = [str(i) for s in splits for i in points[f"{s}/id"][:]]
    close = [i for i in every if obj in i][:5] or difflib.get_close_matches(obj, every, n=5, cutoff=0.6)
    raise ConfigError(
        f"object {obj!r} is not in the {split} split ({len(ids)} objects) nor in any other",
        f"similar ids: {', '.join(close)}" if close else "pass an id or a row index",
    )


def picture_name(dataset: str, split: str, obj: str, teacher: str | None, run: str | None = None) -> str:
    """``<dataset>-<split>-<object>-<teacher>[-run-<run>].png`` with path-unsafe characters as ``_``."""
    parts = [dataset, split, obj, teacher or "no-teacher", *([f"run-{run}"] if run else [])]
    return "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", p) for p in parts) + ".png"


def object_title(points: Any, split: str, row: int) -> str:
    """``"<dataset> <split> #<row>: <id> (<class>)"``."""
    name, label = points[f"{split}/id"][row], int(points[f"{split}/label"][row])
    classes = points.attrs.get("classes", [])
    cls = classes[label] if 0 <= label < len(classes) else label
    return f"{points.attrs.get('dataset', '?')} {split} #{row}: {name} ({cls})"


def draw_views(fig: Any, axes: Any, images: np.ndarray, saliency: np.ndarray | None) -> None:
    """Depth views (V, 224, 224) on ``axes`` (one per view), saliency (V, h, w) over them when given,
    with one colour bar for the row (saliency's, else depth's)."""
    vmax = float(saliency.max()) if saliency is not None else None
    for v, ax in enumerate(axes):
        shown = ax.imshow(
            images[v], cmap="gray", vmin=float(images.min()), vmax=max(float(images.max()), 0.5001)
        )
        ax.set_title(VIEW_NAMES[v], fontsize=9)
        if saliency is not None:
            shown = ax.imshow(
                saliency[v],
                cmap="inferno",
                alpha=0.55,
                extent=(0, 224, 224, 0),
                interpolation="bicubic",
                vmin=0.0,
                vmax=vmax,
            )
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(shown, ax=list(axes), shrink=0.85, pad=0.02)
    bar.set_label(SALIENCY_LABEL if saliency is not None else DEPTH_LABEL, fontsize=8)


def save_figure(fig: Any, out: Path, record: dict[str, Any]) -> Path:
    """Write the PNG and ``<out>.json`` (suptitle, panel titles, colour-bar labels, ``record``)."""
    import matplotlib.pyplot as plt

    panels = [ax.get_title() for ax in fig.axes if ax.get_title()]
    bars = [ax.get_ylabel() for ax in fig.axes if not ax.get_title() and ax.get_ylabel()]
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    sidecar = {"title": title, "panels": panels, "colorbars": bars, **record}
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(sidecar, indent=1).encode())
    return out


def show_object(
    views_path: Path, features_path: Path | None, split: str, obj: str, out_dir: Path, out: Path | None = None
) -> Path:
    """Write ``out`` (default ``out_dir/<dataset>-<split>-<object>-<teacher>.png``): the 3 depth views,
    then (with a features store) the teacher's saliency over them, each row with its colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import zarr

    views = zarr.open_group(str(views_path), mode="r")
    points = zarr.open_group(views.attrs["upstream_paths"]["prepare"], mode="r")
    row = locate(points, split, obj)
    images = views[f"{split}/image"][row].astype(np.float32)  # (V, 224, 224); augmented views (K, V, …)
    feats = zarr.open_group(str(features_path), mode="r") if features_path else None
    saliency = feats[f"{split}/saliency"][row] if feats is not None else None  # (V, h, w) or (K, V, h, w)
    draws = images.shape[0] if images.ndim == 4 else None
    if draws:  # augmented views: draw 0 of K, as the teacher saw it
        images, saliency = images[0], None if saliency is None else saliency[0]
    teacher = dict(feats.attrs["teacher"]) if feats is not None else {}
    random = " — RANDOM weights" if teacher.get("random_weights") else ""
    random += f" — {teacher['note']}" if teacher.get("note") else ""  # what a teacher trained by i2p knows
    n_rows = 1 if saliency is None else 2
    fig, axes = plt.subplots(n_rows, 3, figsize=(10, 3.3 * n_rows + 0.6), squeeze=False, layout="constrained")
    who = f"teacher {teacher['name']}{random}" if teacher else "no teacher"
    drawn = f"; augmented views, draw 0 of {draws}" if draws else ""
    fig.suptitle(f"{object_title(points, split, row)}\n{who}{drawn}", fontsize=10)
    draw_views(fig, axes[0], images, None)
    if saliency is not None:
        draw_views(fig, axes[1], images, saliency)
        for v, ax in enumerate(axes[1]):
            ax.set_title(f"{VIEW_NAMES[v].split(':')[0]}: saliency, max {saliency[v].max():.3f}", fontsize=9)
    name = picture_name(views.attrs["dataset"], split, str(points[f"{split}/id"][row]), teacher.get("name"))
    record = {
        "object": str(points[f"{split}/id"][row]),
        "row": row,
        "split": split,
        "teacher": teacher or None,
        "draw": 0 if draws else None,
    }
    return save_figure(fig, Path(out) if out else Path(out_dir) / name, record)
