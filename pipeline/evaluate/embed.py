"""``i2p embed``: the frozen encoder's global features (the SVM's, method §3.4) of one split, written to a
``.npy`` file with an index of which object each row is beside it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from pipeline.core.params import EvalParams
from pipeline.evaluate.bnstats import BNProtocol, protocol_applied, train_split
from pipeline.evaluate.encoders import Encoder, EvaluationError
from pipeline.evaluate.extract import PointsStore, check_points, feature_points, features
from pipeline.storage.store import atomic_write_bytes


def run_embed(
    encoder: Encoder, store: PointsStore, split_name: str, params: EvalParams, device: str, out: Path
) -> tuple[Path, tuple[int, int], str, BNProtocol]:
    """Write the SVM's global features of every object of a split, in store order, to ``out`` (.npy), and
    beside it :func:`index_path` (``row,id,label``: which object each row is; label −1 when unlabelled):
    (path, (objects, channels), how points were chosen, the BatchNorm protocol applied: ``params.bn_stats``)."""
    out = Path(out)
    if out.suffix != ".npy":
        raise EvaluationError(f"--out {out} must name a .npy file", f"e.g. --out {out.with_suffix('.npy')}")
    n, how, points_text = feature_points(store, params.points, encoder.train_points)
    check_points(n, encoder.config)
    split, model = store.split(split_name), encoder.model(device)
    with protocol_applied(
        model,
        train_split(store),
        params.bn_stats,
        n_points=n,
        selection=how,
        batch_size=params.batch_size,
        device=device,
    ) as bn:
        feats = features(model, split, None, n, how, params, device, split_name).numpy()
    buffer = io.BytesIO()
    np.save(buffer, feats.astype(np.float32))
    atomic_write_bytes(out, buffer.getvalue())
    atomic_write_bytes(index_path(out), index_csv(split.ids, split.labels).encode())
    return out, feats.shape, points_text, bn


def index_path(features: Path) -> Path:
    """The object index written beside an embedding: ``feats.npy`` → ``feats.index.csv``."""
    return Path(features).with_suffix(".index.csv")


def index_csv(ids: np.ndarray, labels: np.ndarray) -> str:
    """CSV text ``row,id,label`` for objects in store order (ids (O,) str, labels (O,) int)."""
    import csv

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["row", "id", "label"])
    writer.writerows(
        (i, str(name), int(label)) for i, (name, label) in enumerate(zip(ids, labels, strict=True))
    )
    return text.getvalue()
