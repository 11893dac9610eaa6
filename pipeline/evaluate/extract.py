"""Evaluation glue: points stores and checkpoints in, arrays to ``i2pmae``, reports out (embeddings: ``embed``).

Points per object for frozen-encoder features (``eval svm``, ``embed``):
* ModelNet40 h5 release (layout ``modelnet40_ply_hdf5_2048``): the **first 1024 stored points**, no
  FPS, no shuffling (method §1.3, the paper's SVM protocol);
* any other store: the encoder's pre-training point count (2048 for the paper's encoder), capped at
  what the store holds. Stores sampled from meshes keep their points in FPS order, so their first N
  points *are* an FPS sample; stores in a release's own order (ScanObjectNN, ShapeNet npy, resampled
  ModelNet40) are FPS-sampled from index 0 when N is smaller than the stored count, as the paper's
  test-time sampling does (§9.2). ``--points`` overrides the count, never the rule.

Point order of the SVM's train split (``eval.train_point_order``, :func:`train_shuffle`): the official ScanObjectNN
loader shuffles each training cloud's points (so the encoder's FPS starts elsewhere), its ModelNet40 h5 loader does
not; ``official`` does the same with a seeded shuffle, ``stored`` never shuffles, ``shuffled`` always does.

Which encoder is evaluated (``--run``, ``--ckpt``, ``--random-init``) is :mod:`pipeline.evaluate.encoders`;
which BatchNorm statistics the features use (``eval.bn_stats``) is :mod:`pipeline.evaluate.bnstats`;
fine-tuning and few-shot glue live in :mod:`pipeline.evaluate.finetuning`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.console import progress_bar
from pipeline.core.errors import StoreError
from pipeline.core.params import EvalParams
from pipeline.evaluate.bnstats import BNProtocol, protocol_applied
from pipeline.evaluate.encoders import Encoder, EvaluationError
from pipeline.evaluate.reports import append_report, svm_section
from pipeline.storage.remote import location

log = logging.getLogger("i2p")

H5_LAYOUT = "modelnet40_ply_hdf5_2048"
PAPER_C = {H5_LAYOUT: (0.0093, "the paper's C for ModelNet40 (method §9.3)")}
SCAN_C = (0.018, "the paper's C for ScanObjectNN OBJ-BG (method §9.3)")
MONITOR_C = (0.01, "the paper's per-epoch monitor C (method §9.1); the paper gives none for this dataset")


# ---- points stores ------------------------------------------------------------------------------


@dataclass
class Split:
    points: Any  # zarr array (O, P, 3), read lazily
    labels: np.ndarray  # (O,) int
    ids: np.ndarray  # (O,) str


@dataclass
class PointsStore:
    name: str
    path: Path
    attrs: dict[str, Any]

    @property
    def handling(self) -> dict[str, Any]:
        return dict(self.attrs.get("handling") or {})

    @property
    def layout(self) -> str:
        return str(self.handling.get("layout") or self.attrs.get("layout") or "")

    @property
    def variant(self) -> str | None:
        if "scanobjectnn" not in self.layout:
            return None
        return self.handling.get("variant") or (self.attrs.get("params") or {}).get("variant")

    @property
    def classes(self) -> list[str]:
        return list(self.attrs.get("classes") or [])

    @property
    def splits(self) -> list[str]:
        return list(self.attrs.get("splits") or [])

    def split(self, name: str) -> Split:
        from pipeline.storage.checked import open_group

        if name not in self.splits:
            raise EvaluationError(
                f"dataset {self.name} has no split {name!r} (splits: {', '.join(self.splits)})",
                f"choose one of {', '.join(self.splits)}"
                + (" (i2p embed --split NAME)" if self.splits else ""),
            )
        group = open_group(self.path)  # reads that report a damaged store (pipeline.storage.checked)
        return Split(group[f"{name}/points"], group[f"{name}/label"][:], group[f"{name}/id"][:])

    def describe(self) -> str:
        return f"{self.name} (`{self.path.parent.name}/{self.path.name}`, layout {self.layout or '?'})"


def points_store(path: Path) -> PointsStore:
    """The complete points store at ``path`` (chosen by the runner: a run's own, or a dataset's current)."""
    from pipeline.storage.store import read_state

    state = read_state(location(path), progress=False)
    if state is None or state.attrs.get("stage") != "prepare" or not state.complete:
        what = (
            "no store"
            if state is None
            else ("incomplete" if state.attrs.get("stage") == "prepare" else "not a points store")
        )
        raise StoreError(
            f"{path}: {what}", "run `i2p prepare` for its dataset (rerunning resumes an incomplete one)"
        )
    return PointsStore(str(state.attrs.get("dataset")), location(path), state.attrs)


def feature_points(store: PointsStore, requested: int | None, train_points: int) -> tuple[int, str, str]:
    """(N, "first" | "fps", sentence for the report) per the rule in the module docstring."""
    P = int(store.handling.get("n_points") or store.split(store.splits[0]).points.shape[1])
    h5 = store.layout == H5_LAYOUT
    n = requested or (min(1024, P) if h5 else min(train_points, P))
    if n > P:
        raise EvaluationError(f"--points {n} exceeds the {P} points stored per object in {store.name}")
    if n == P:
        return n, "first", f"{n}: all stored points"
    if h5:
        return n, "first", f"{n}: the first {n} of {P} stored points (method §1.3: no FPS, no shuffling)"
    if store.handling.get("point_order") == "fps":
        return n, "first", f"{n}: the first {n} of {P} stored points (stored in FPS order, so an FPS sample)"
    return n, "fps", f"{n}: farthest point sampling from index 0 out of {P} stored points"


def require_splits(store: PointsStore, command: str) -> None:
    """``command`` (eval svm, finetune) trains on "train" and scores on "test": say how to get a missing one."""
    missing = [s for s in ("train", "test") if s not in store.splits]
    if not missing:
        return
    hint = "prepare the dataset again from a release that has both splits"
    if store.attrs.get("source") == "folder":
        hint = (
            "give each class folder a test/ sub-folder beside train/, or put the files directly in the "
            "class folders (no train/ or test/) so that prepare holds out a share of them: "
            "`i2p prepare folder --root PATH --set prepare.test_fraction=0.2`"
        )
    raise EvaluationError(
        f"{command} needs a train and a test split; dataset {store.name} has "
        f"{', '.join(store.splits) or 'none'} (missing: {', '.join(missing)})",
        hint,
    )


def check_points(n: int, config: Any) -> None:
    """The encoder's first scale picks ``num_groups[0]`` centres out of the input points."""
    if n < config.num_groups[0]:
        raise EvaluationError(
            f"the encoder groups {config.num_groups[0]} centres, so it needs at least {config.num_groups[0]} "
            f"points per object; {n} were asked for",
            "pass --points N with a larger N, or use a dataset with more stored points",
        )


def labelled(split: Split) -> np.ndarray:
    """Row indices with a class label (label ≥ 0)."""
    return np.flatnonzero(split.labels >= 0)


# ---- linear SVM and embeddings ----------------------------------------------------------------------


def features(
    model: Any,
    split: Split,
    rows: np.ndarray | None,
    n: int,
    how: str,
    params: EvalParams,
    device: str,
    label: str,
    shuffle_seed: int | None = None,
) -> Any:
    """Global features of ``rows`` of a split (all rows when None), with a progress bar; ``shuffle_seed``:
    each cloud's selected points in a seeded order (:func:`i2pmae.evaluate.shuffle_points`)."""
    from i2pmae.evaluate import extract_features

    source = split.points if rows is None or len(rows) == len(split.labels) else _Rows(split.points, rows)
    total = source.shape[0]
    with progress_bar(f"features {label}", total, "objects") as advance:
        return extract_features(
            model,
            source,
            n_points=n,
            selection=how,
            pooling=params.pooling,
            batch_size=params.batch_size,
            device=device,
            progress=advance,
            shuffle_seed=shuffle_seed,
        )


class _Rows:
    """A row subset of a lazily read array, sliceable like the array."""

    def __init__(self, array: Any, rows: np.ndarray):
        self.array, self.rows = array, rows

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.array.shape[1:])

    def __getitem__(self, s: slice) -> np.ndarray:
        return self.array.get_orthogonal_selection((self.rows[s], slice(None), slice(None)))


@dataclass
class SVMOutcome:
    accuracy: float
    c: float
    n_points: int
    report: Path
    bn: BNProtocol  # the BatchNorm statistics the features used
    train_shuffled: bool = False  # the train split's clouds went to the encoder in a seeded random order


def run_svm(
    encoder: Encoder, store: PointsStore, params: EvalParams, device: str, report: Path
) -> SVMOutcome:
    """Linear SVM on frozen features (method §3.4, §9.3) under ``params.bn_stats`` (:mod:`pipeline.evaluate.bnstats`);
    appends a section to ``report``. Raises EvaluationError (missing split, too few points or classes)."""
    from i2pmae.evaluate import C_GRID, svm_accuracy, svm_c_by_cv

    require_splits(store, "eval svm")
    n, how, points_text = feature_points(store, params.points, encoder.train_points)
    check_points(n, encoder.config)
    shuffle, order_text = train_shuffle(store, params)
    c, c_note = _svm_c(store, params.svm_c)
    model = encoder.model(device)
    train, test = store.split("train"), store.split("test")
    tr_rows, te_rows = labelled(train), labelled(test)
    with protocol_applied(
        model, train, params.bn_stats, n_points=n, selection=how, batch_size=params.batch_size, device=device
    ) as bn:
        train_x = features(model, train, tr_rows, n, how, params, device, "train", shuffle)
        test_x = features(model, test, te_rows, n, how, params, device, "test")
    if params.svm_c_cv:  # option: C chosen on the train split alone (the paper fixes it per dataset)
        paper = c
        c = svm_c_by_cv(train_x, train.labels[tr_rows])
        c_note = f"chosen by 3-fold cross-validation on the train split from {C_GRID} (eval.svm_c_cv; the paper's: {paper:g})"
    try:
        result = svm_accuracy(train_x, train.labels[tr_rows], test_x, test.labels[te_rows], c)
    except ValueError as err:
        raise EvaluationError(f"linear SVM on {store.name}: {err}") from None
    dropped = (len(train.labels) - len(tr_rows)) + (len(test.labels) - len(te_rows))
    splits = f"train {result.n_train}, test {result.n_test} objects; {result.n_classes} classes"
    if dropped:
        splits += f"; {dropped} unlabelled objects left out"
    section = svm_section(
        encoder=encoder.label,
        dataset=store.describe(),
        splits=splits,
        points=f"{points_text}; {order_text}",
        pooling=params.pooling,
        c=c,
        c_note=c_note,
        accuracy=result.accuracy,
        feature_dim=train_x.shape[1],
        bn=bn.text(),
        bn_detail=bn.detail(),
        bn_note=bn.note(),
    )
    append_report(report, section)
    return SVMOutcome(result.accuracy, c, n, report, bn, shuffle is not None)


def train_shuffle(store: PointsStore, params: EvalParams) -> tuple[int | None, str]:
    """(the seed of the train split's point shuffle, or None; a sentence for the report), per
    ``params.train_point_order`` (module docstring). Test-split clouds keep their order, as the paper's."""
    official = "scanobjectnn" in store.layout  # ScanObjectNN's official training loader shuffles
    if params.train_point_order == "stored" or (params.train_point_order == "official" and not official):
        why = " (as the official loader of this dataset)" if params.train_point_order == "official" else ""
        return None, f"train and test clouds in stored order{why}"
    why = ", as the official ScanObjectNN loader does" if official else " (eval.train_point_order=shuffled)"
    return params.shuffle_seed, (
        f"train clouds' points shuffled (NumPy seed ({params.shuffle_seed}, row)){why}, so the encoder's FPS "
        "starts elsewhere; test clouds in stored order"
    )


def _svm_c(store: PointsStore, requested: float | None) -> tuple[float, str]:
    if requested is not None:
        return requested, "set by the user"
    if store.layout in PAPER_C:
        return PAPER_C[store.layout]
    if store.variant is not None:
        return SCAN_C if store.variant == "obj-bg" else (SCAN_C[0], SCAN_C[1] + ", used for this variant too")
    return MONITOR_C
