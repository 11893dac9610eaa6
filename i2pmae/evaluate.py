"""Frozen-encoder evaluation on tensors: point selection, batched global features, linear SVM (method §3.4, §9.3).

The SVM protocol: features are the max over the LayerNorm-ed top-scale tokens of the unmasked
pre-training encoder in eval mode (``I2PMAE.global_feature``), with no scaling or normalisation;
the classifier is scikit-learn's ``SVC(kernel="linear", C)`` (one-vs-one libsvm), trained on the
train split and scored once on the test split. Nothing here opens a file: callers pass arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from i2pmae.errors import InputError
from i2pmae.model import I2PMAE
from i2pmae.ops import farthest_point_sample, fps_eps, gather_points

Selection = Literal["first", "fps"]


def select_points(xyz: Tensor, n: int, how: Selection, origin_eps: float = 0.0) -> Tensor:
    """(B, P, 3) -> (B, n, 3): the first n points as stored, or farthest point sampling from index 0.

    "first" is the paper's ModelNet40 h5 rule (§1.3: no FPS, no shuffling) and, for clouds stored in
    FPS order, the same points FPS would pick. ``n == P`` returns ``xyz`` unchanged. ``origin_eps``: the
    FPS near-origin rule (:func:`i2pmae.ops.farthest_point_sample`, §12.3).
    """
    B, P, _ = xyz.shape
    if not 0 < n <= P:
        raise InputError(f"cannot take {n} points out of clouds of {P} points")
    if n == P:
        return xyz
    if how == "first":
        return xyz[:, :n]
    return gather_points(xyz, farthest_point_sample(xyz, n, origin_eps))


def shuffle_points(xyz: Tensor, seed: int, first_row: int) -> Tensor:
    """Each cloud's points in a seeded random order, as the official ScanObjectNN training loader shuffles
    them (method §9.3; the encoder's FPS then starts elsewhere): xyz (B, N, 3) holds objects first_row …
    first_row + B − 1 of the input, object i permuted by NumPy's generator seeded (seed, i), so the order
    depends neither on the batch size nor on the device."""
    B, N, _ = xyz.shape
    perms = np.stack([np.random.default_rng([seed, first_row + b]).permutation(N) for b in range(B)])
    return gather_points(xyz, torch.from_numpy(perms).to(xyz.device))  # (B, N, 3)


@torch.no_grad()
def extract_features(
    model: I2PMAE,
    points: Any,
    *,
    n_points: int,
    selection: Selection = "first",
    pooling: Literal["max", "mean+max"] = "max",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
    shuffle_seed: int | None = None,
) -> Tensor:
    """Global features of every object, in input order -> (O, C_top) float32 on the CPU.

    points: anything with a ``shape`` (or ``len()``) whose slices ``points[i:j]`` convert to (b, P, 3)
    arrays: a numpy or torch array, or a zarr array read lazily, one batch at a time. ``progress(b)`` is called after
    each batch with the number of objects done in it. ``shuffle_seed``: the selected points of object i go
    to the encoder in the order :func:`shuffle_points` gives (None: as stored or selected). FPS follows
    the model's ``fps_origin_rule``. InputError for input points that are not finite.
    """
    model = model.to(device).eval()
    n_objects = points.shape[0] if hasattr(points, "shape") else len(points)  # O
    out = []
    for start in range(0, n_objects, batch_size):
        xyz = torch.as_tensor(np.asarray(points[start : start + batch_size]), dtype=torch.float32)
        if not torch.isfinite(xyz).all():  # NaN in, NaN out: say whose fault it is
            bad = start + int(torch.isfinite(xyz).flatten(1).all(1).float().argmin())
            raise InputError(
                f"object {bad} of the input points holds non-finite coordinates (NaN/inf): the input is "
                "damaged, not the encoder"
            )
        xyz = select_points(xyz.to(device), n_points, selection, fps_eps(model.cfg.fps_origin_rule))
        if shuffle_seed is not None:
            xyz = shuffle_points(xyz, shuffle_seed, start)
        out.append(model.global_feature(xyz, pooling).float().cpu())
        if progress is not None:
            progress(xyz.shape[0])
    if not out:
        return torch.zeros(0, model.cfg.encoder_dims[-1])
    return torch.cat(out)


@dataclass(frozen=True)
class SVMResult:
    accuracy: float  # fraction of test objects classified correctly, in [0, 1]
    c: float
    n_train: int
    n_test: int
    n_classes: int  # distinct labels in the train split


def svm_accuracy(
    train_x: np.ndarray | Tensor,
    train_y: np.ndarray | Tensor,
    test_x: np.ndarray | Tensor,
    test_y: np.ndarray | Tensor,
    c: float,
) -> SVMResult:
    """Linear SVM (method §9.3): fit ``SVC(kernel="linear", C=c)`` on the train features, score on test."""
    from sklearn.svm import SVC

    train_x, test_x = _numpy(train_x, np.float64), _numpy(test_x, np.float64)
    train_y, test_y = _numpy(train_y, np.int64), _numpy(test_y, np.int64)
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise InputError(
            f"features and labels differ in length: train {len(train_x)}/{len(train_y)}, "
            f"test {len(test_x)}/{len(test_y)}"
        )
    bad = int((~np.isfinite(train_x)).any(axis=1).sum() + (~np.isfinite(test_x)).any(axis=1).sum())
    if bad:
        raise InputError(
            f"{bad} objects have non-finite features (NaN/inf) from finite input points (extract_features "
            "checks them): the encoder's weights are broken"
        )
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise InputError(f"the SVM needs at least 2 classes in the train split, found {classes.tolist()}")
    if len(test_y) == 0:
        raise InputError("the test split is empty")
    svm = SVC(kernel="linear", C=c)
    svm.fit(train_x, train_y)
    accuracy = float((svm.predict(test_x) == test_y).mean())
    return SVMResult(accuracy, c, len(train_y), len(test_y), len(classes))


C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)  # the C values cross-validation chooses from


def svm_c_by_cv(
    train_x: np.ndarray | Tensor,
    train_y: np.ndarray | Tensor,
    grid: tuple[float, ...] = C_GRID,
    folds: int = 3,
) -> float:
    """The C of ``grid`` whose linear SVM scores best in stratified ``folds``-fold cross-validation on the
    train features (N, C) and labels (N,) alone; ties go to the smaller C. Never looks at a test split.
    Folds are capped by the smallest class's count (at least 2); fold assignment is seeded (0)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    x, y = _numpy(train_x, np.float64), _numpy(train_y, np.int64)
    counts = np.unique(y, return_counts=True)[1]  # objects per class present
    smallest = int(counts.min()) if len(counts) else 0
    k = max(2, min(folds, smallest))
    if smallest < 2:
        raise InputError(
            f"choosing C by cross-validation needs 2 train objects per class; one class has {smallest}"
        )
    search = GridSearchCV(
        SVC(kernel="linear"), {"C": list(grid)}, cv=StratifiedKFold(k, shuffle=True, random_state=0)
    )
    return float(search.fit(x, y).best_params_["C"])


def _numpy(x: np.ndarray | Tensor, dtype: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)
