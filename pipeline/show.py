"""``i2p show OBJECT``: a PNG with an object's three depth views and the teacher's saliency on them.

So a person can check that the views look like the shape and see where the teacher looks. OBJECT is
an id from the points store (e.g. ``chair/chair_0003``) or a row index in the split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError

VIEW_NAMES = ("view 1: rows x, cols y", "view 2: rows z, cols x", "view 3: rows y, cols z")  # spec §5.1


def find_row(ids: np.ndarray, obj: str) -> int:
    matches = np.flatnonzero(ids == obj)
    if len(matches):
        return int(matches[0])
    if obj.isdigit() and int(obj) < len(ids):
        return int(obj)
    close = [str(i) for i in ids if obj in str(i)][:5]
    raise ConfigError(
        f"object {obj!r} is not in this split ({len(ids)} objects)",
        f"similar ids: {', '.join(close)}" if close else "pass an id or a row index",
    )


def show_object(
    views_path: Path,
    features_path: Path | None,
    split: str,
    obj: str,
    out: Path,
    mask_centres: np.ndarray | None = None,
) -> Path:
    """Write a 2×3 (or 1×3 without features) figure: depth views, then saliency overlays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import zarr

    views = zarr.open_group(str(views_path), mode="r")
    points = zarr.open_group(views.attrs["upstream_paths"]["prepare"], mode="r")
    if split not in views.attrs["splits"]:
        raise ConfigError(
            f"split {split!r} is not in {views_path}", f"splits: {', '.join(views.attrs['splits'])}"
        )
    row = find_row(points[f"{split}/id"][:], obj)
    images = views[f"{split}/image"][row].astype(np.float32)  # (V, 224, 224)
    saliency = (
        zarr.open_group(str(features_path), mode="r")[f"{split}/saliency"][row] if features_path else None
    )
    n_rows = 1 if saliency is None else 2
    fig, axes = plt.subplots(n_rows, 3, figsize=(9, 3 * n_rows + 0.4), squeeze=False)
    name, label = points[f"{split}/id"][row], int(points[f"{split}/label"][row])
    classes = points.attrs.get("classes", [])
    fig.suptitle(
        f"{views.attrs['dataset']} {split} #{row}: {name} ({classes[label] if 0 <= label < len(classes) else label})"
    )
    for v in range(3):
        ax = axes[0, v]
        ax.imshow(images[v], cmap="gray", vmin=images[v].min(), vmax=max(images[v].max(), 0.5001))
        ax.set_title(VIEW_NAMES[v], fontsize=8)
        if saliency is not None:
            ax = axes[1, v]
            ax.imshow(images[v], cmap="gray")
            ax.imshow(
                saliency[v], cmap="inferno", alpha=0.55, extent=(0, 224, 224, 0), interpolation="bicubic"
            )
            ax.set_title(f"saliency (CLS→patch), max {saliency[v].max():.3f}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out
