"""What a teacher knows, measured on views: linear probes and saliency statistics.

:func:`embed` runs a :class:`~pipeline.features.teachers.Teacher` once per batch and keeps its
projected CLS embedding (B, 512), the mean of its patch features (B, 512) and its saliency (B, h, w).
:func:`linear_probe` fits a logistic regression on train views and scores test views.
:func:`saliency_stats` says whether CLS→patch attention is degenerate: its entropy against the
uniform map's, the share of the most-attended patch, how often one patch wins everywhere (an
artefact token), and the share on patches the object covers against their share of the grid.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

BACKGROUND = 0.5  # sigmoid(0): a pixel no point fell into


def embed(teacher: Any, images: np.ndarray, batch_size: int = 48) -> dict[str, np.ndarray]:
    """Views (..., H, W) float16 (un-normalised, as the views store holds them) → ``cls`` (n, C),
    ``patch_mean`` (n, C) float32 and ``saliency`` (n, h, w) float32, n = the product of the leading
    dimensions, in their order. Images are normalised with ImageNet statistics (cache-features' default)."""
    import torch

    from i2pmae.geometry import normalise_images

    grey = images.reshape(-1, *images.shape[-2:])
    kept: dict[str, Any] = {}
    hook = teacher.visual.register_forward_hook(lambda m, args, out: kept.__setitem__("cls", out[0]))
    out: dict[str, list] = {"cls": [], "patch_mean": [], "saliency": []}
    try:
        for start in range(0, len(grey), batch_size):
            batch = normalise_images(torch.from_numpy(grey[start : start + batch_size]))  # (B, 3, H, W)
            features, saliency = teacher(batch)  # (B, C, h, w), (B, h, w)
            out["cls"].append(kept["cls"].float().cpu().numpy())  # pooled: ln_post(CLS) @ proj
            out["patch_mean"].append(features.mean(dim=(2, 3)).cpu().numpy())
            out["saliency"].append(saliency.cpu().numpy())
    finally:
        hook.remove()
    return {k: np.concatenate(v) for k, v in out.items()}


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Test accuracy in [0, 1] of a standardised multinomial logistic regression (C = 1, lbfgs)
    fitted on (n, C) train features; deterministic."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    clf.fit(train_x, train_y)
    return float((clf.predict(test_x) == test_y).mean())


def occupied_patches(images: np.ndarray, h: int, w: int) -> np.ndarray:
    """(n, h·w) bool: the patches of views (n, H, W) that hold any object pixel (one that differs from
    :data:`BACKGROUND`), in row-major order as the teacher's patch tokens."""
    n, H, W = images.shape
    return (images.reshape(n, h, H // h, w, W // w) != BACKGROUND).any(axis=(2, 4)).reshape(n, -1)


def saliency_stats(saliency: np.ndarray, images: np.ndarray) -> dict[str, float]:
    """Statistics of CLS→patch saliency (n, h, w) over views (n, H, W) (H = h·patch).

    ``entropy_ratio``: mean entropy of the map normalised to sum 1, over log(h·w) (1 = uniform);
    ``top_patch_share``: mean share of the most-attended patch (uniform: 1/(h·w));
    ``same_top_patch``: share of views whose most-attended patch is the most common one (an
    artefact token wins in nearly all); ``object_saliency_share`` vs ``object_area_share``: the
    saliency mass and the share of patches on patches that hold any object pixel."""
    n, h, w = saliency.shape
    p = saliency.reshape(n, -1).astype(np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    entropy = -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=1)
    top = p.argmax(axis=1)
    occupied = occupied_patches(images, h, w)
    return {
        "entropy_ratio": float(entropy.mean() / math.log(h * w)),
        "top_patch_share": float(p.max(axis=1).mean()),
        "uniform_patch_share": 1.0 / (h * w),
        "same_top_patch": float((top == np.bincount(top).argmax()).mean()),
        "object_saliency_share": float((p * occupied).sum(axis=1).mean()),
        "object_area_share": float(occupied.mean()),
        "views": int(n),
    }


def evaluate(weights: Path, head: Any, train: tuple, test: tuple) -> dict[str, Any]:
    """Load ``tiny-synthetic`` from ``weights`` through :func:`load_teacher` (the shipped float16
    file, the real code path) and measure it. train/test: (images (O, K, V, H, W) float16, labels (O,)).

    Returns ``accuracy`` (head on train views and on test views; linear probes fitted on train views,
    scored on test views, on the CLS embedding (``test_views_probe``) and on the patch-feature mean)
    and ``saliency`` (:func:`saliency_stats` of the test views). Accuracies are per view."""
    import torch

    from pipeline.features.teachers import load_teacher

    teacher = load_teacher("tiny-synthetic", weights=str(weights))
    (tr_img, tr_lab), (te_img, te_lab) = train, test
    tr_y = np.repeat(tr_lab, int(np.prod(tr_img.shape[1:3])))  # one label per view, object-major
    te_y = np.repeat(te_lab, int(np.prod(te_img.shape[1:3])))
    tr, te = embed(teacher, tr_img), embed(teacher, te_img)
    with torch.no_grad():
        head_train = head(torch.from_numpy(tr["cls"])).argmax(dim=1).numpy()
        head_test = head(torch.from_numpy(te["cls"])).argmax(dim=1).numpy()
    accuracy = {
        "train_views_head": float((head_train == tr_y).mean()),
        "test_views_head": float((head_test == te_y).mean()),
        "test_views_probe": linear_probe(tr["cls"], tr_y, te["cls"], te_y),
        "test_views_probe_patch_mean": linear_probe(tr["patch_mean"], tr_y, te["patch_mean"], te_y),
        "chance": 1.0 / max(1, len(np.unique(tr_y))),
        "train_views": int(len(tr_y)),
        "test_views": int(len(te_y)),
    }
    te_grey = te_img.reshape(-1, *te_img.shape[-2:])
    return {"accuracy": accuracy, "saliency": saliency_stats(te["saliency"], te_grey)}
