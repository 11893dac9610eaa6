"""Fine-tuning glue: points stores → i2pmae.finetune → report.md; the pieces few-shot shares
(:mod:`pipeline.evaluate.fewshot`): split tensors, one classifier's training, the metrics file.

Recipes (method §9.2): ScanObjectNN stores use their variant's recipe (obj-bg, obj-only, pb-t50-rs);
every other store uses ModelNet40's (1024 points, label smoothing 0.2, ScaleAndTranslate, voting);
``--recipe`` overrides.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.console import progress_bar
from pipeline.core.errors import I2PError
from pipeline.core.names import as_name
from pipeline.evaluate.encoders import EvaluationError, checkpoint_path, report_path, resolve_encoder
from pipeline.evaluate.epoch_state import drop_epoch_state
from pipeline.evaluate.extract import PointsStore, check_points, labelled, require_splits
from pipeline.evaluate.finetune_text import (
    describe_optimisation,
    describe_recipe,
    describe_voting,
    vote_protocol,
)
from pipeline.evaluate.reports import append_report, finetune_section, pct, table
from pipeline.storage import rundir
from pipeline.storage.checkpoints import is_classifier, load_classifier, open_checkpoint
from pipeline.storage.store import atomic_write_bytes

log = logging.getLogger("i2p")


def recipe_for(store: PointsStore | None, requested: str | None):
    from i2pmae.recipes import RECIPES

    name = requested or (store.variant if store is not None and store.variant else "modelnet40")
    if name not in RECIPES:
        raise EvaluationError(f"unknown recipe {name!r}", f"choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def finetune_overrides(params: Any) -> dict[str, Any]:
    """The FinetuneConfig fields a stage's params set (None keeps the recipe's value). Raises ConfigError
    for ``precision=bf16`` on a device other than CUDA."""
    import dataclasses

    from i2pmae.finetune import FinetuneConfig
    from pipeline.core.devices import check_training_precision, resolve_device

    check_training_precision(params.precision, resolve_device(params.device), params.STAGE)
    keys = {f.name for f in dataclasses.fields(FinetuneConfig)} - {"seed"}
    return {k: v for k, v in params.model_dump().items() if k in keys and v is not None}


def split_tensors(store: PointsStore, name: str) -> tuple[Any, Any, int]:
    """All labelled objects of a split in memory: xyz (O, P, 3) float32, labels (O,) long, #unlabelled."""
    import torch

    split, rows, labels = split_labels(store, name)
    return rows_tensor(split, rows), torch.from_numpy(labels), len(split.labels) - len(rows)


def split_labels(store: PointsStore, name: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """(split, rows (O,) of its labelled objects, their labels (O,) int64); no points are read."""
    split = store.split(name)
    rows = labelled(split)
    return split, rows, split.labels[rows].astype(np.int64)


def rows_tensor(split: Any, rows: np.ndarray) -> Any:
    """Points of ``rows`` of a split, read once into one (n, P, 3) float32 tensor, in the order given."""
    import torch

    if len(rows) == len(split.labels) and np.array_equal(rows, np.arange(len(rows))):
        return torch.from_numpy(np.asarray(split.points[:], dtype=np.float32))
    order = np.argsort(rows, kind="stable")
    picked = split.points.get_orthogonal_selection((rows[order], slice(None), slice(None)))
    out = np.empty((len(rows), *split.points.shape[1:]), np.float32)
    out[order] = picked
    return torch.from_numpy(out)


def resume_file(report: Path, what: dict[str, Any]) -> Path:
    """Where one fine-tuning's per-epoch state waits for a rerun after an interruption: beside the report,
    named by a hash of what the training is (``what``: data, encoder, config, seed or fold)."""
    import hashlib

    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(report).parent / ".finetune-resume" / f"{key}.pt"


def train_classifier(
    model: Any, data: tuple, fcfg: Any, device: str, label: str, resume: Path | None = None
) -> Any:
    """Fine-tune ``model`` on ``data`` (train x, y, test x, y) with a progress bar. ``resume``: the file an
    interrupted run continues from (:func:`resume_file`); removed once the training finished."""
    from pipeline.core.host_memory import return_freed_tensors
    from pipeline.evaluate.finetune_loop import finetune

    return_freed_tensors()  # resident memory stays near the tensors alive (docs/evaluation.md)
    per_epoch = max(len(data[0]) // fcfg.batch_size, 1)
    with progress_bar(f"finetune {label}", fcfg.epochs * per_epoch, "batches") as advance:

        def on_epoch(m: Any) -> None:
            log.debug(
                "%s epoch %d: lr %.2e loss %.4f train %.4f test %.4f (%.1fs)",
                label,
                m.epoch,
                m.lr,
                m.loss,
                m.train_acc,
                m.test_acc,
                m.seconds,
            )

        try:
            result = finetune(model, *data, fcfg, device, on_epoch, advance, resume)
        except I2PError as err:
            raise EvaluationError(f"fine-tuning {label}: {err.message}", err.hint) from None
        except FloatingPointError as err:
            raise EvaluationError(f"fine-tuning {label}: {err}") from None
    if resume is not None:
        drop_epoch_state(resume)
    return result


def metrics_file(report: Path, stem: str, payload: dict) -> Path:
    import time

    path = report.parent / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_bytes(path, json.dumps(payload, indent=1).encode())
    return path


@dataclass
class FinetuneOutcome:
    results: list  # FinetuneResult per seed; empty when a fine-tuned classifier was only evaluated
    report: Path
    metrics: Path | None
    # (unvoted, voted: the one pass or the max of vote_repeats passes) of an evaluated classifier
    evaluated: tuple[float, float | None] | None = None


def run_finetune(
    data_root: Path,
    ckpt: Path | None,
    store: PointsStore,
    params: Any,
    *,
    report: Path | None = None,
    random_init: bool = False,
) -> FinetuneOutcome:
    """Fine-tune the encoder once per seed; or, for a fine-tuned classifier checkpoint, evaluate it.

    ``params``: the finetune stage's params (recipe, seeds — seeds 0 … seeds − 1 —, device and the fine-tuning
    fields that override the recipe's)."""
    from pipeline.core.devices import resolve_device

    recipe, seeds, device = params.recipe, list(range(params.seeds)), resolve_device(params.device)
    overrides = finetune_overrides(params)
    from i2pmae.finetune import build_classifier
    from i2pmae.recipes import classifier_config, finetune_config

    rec = recipe_for(store, recipe)
    fcfg = finetune_config(rec, **overrides)
    path = checkpoint_path(data_root, None, ckpt)
    opened = open_checkpoint(path) if path is not None else None
    if opened is not None and is_classifier(opened):
        return _evaluate_classifier(data_root, opened, store, rec, fcfg, device, report)
    encoder = resolve_encoder(data_root, None, ckpt, random_init=random_init, need_norms=False, opened=opened)
    report = report_path(data_root, encoder, report)
    require_splits(store, "finetune")
    train = split_tensors(store, "train")
    test = split_tensors(store, "test")
    n_classes = max(len(store.classes), int(train[1].max()) + 1)
    check_points(fcfg.points, encoder.config)
    ccfg = classifier_config(rec, n_classes, encoder.config, fcfg.points)
    state = encoder.checkpoint.encoder_state if encoder.checkpoint else None
    results = []
    for seed in seeds:
        model = build_classifier(ccfg, state, seed)
        cfg = finetune_config(rec, **{**overrides, "seed": seed})
        what = {
            "store": str(store.path),
            "encoder": encoder.label,
            "config": asdict(cfg),
            "objects": len(train[1]),
        }
        resume = resume_file(report, {"kind": "finetune", **what})
        results.append(
            train_classifier(
                model, (train[0], train[1], test[0], test[1]), cfg, device, f"seed {seed}", resume
            )
        )
        log.info(
            "seed %d: last %s, best %s (epoch %d)",
            seed,
            pct(results[-1].last_acc),
            pct(results[-1].best_acc),
            results[-1].best_epoch,
        )
    metrics = metrics_file(
        report,
        f"finetune-{store.name}-{rec.name}",
        {
            "dataset": store.name,
            "recipe": rec.name,
            "encoder": encoder.label,
            "finetune": asdict(fcfg),
            "classifier": asdict(ccfg),
            "results": [asdict(r) for r in results],
        },
    )
    voting = describe_voting(fcfg, results)
    dropped = train[2] + test[2]
    section = finetune_section(
        title=f"Fine-tuning on {store.name}",
        encoder=encoder.label,
        dataset=store.describe(),
        splits=f"train {len(train[1])}, test {len(test[1])} objects, {n_classes} classes; no validation split"
        + (f"; {dropped} unlabelled objects left out" if dropped else ""),
        recipe=describe_recipe(rec, ccfg, fcfg),
        optimisation=describe_optimisation(fcfg),
        results=results,
        voting=voting,
        metrics_file=metrics.name,
    )
    append_report(report, section)
    return FinetuneOutcome(results, report, metrics)


def _evaluate_classifier(data_root, opened, store, rec, fcfg, device, report) -> FinetuneOutcome:
    """A fine-tuned classifier (e.g. the paper's): unvoted and one voting pass on the test split."""
    from i2pmae.finetune import evaluate_classifier
    from i2pmae.model import I2PMAEConfig
    from i2pmae.recipes import classifier_config

    test_x, test_y, _ = split_tensors(store, "test")
    n_classes = max(len(store.classes), int(test_y.max()) + 1)
    model = load_classifier(opened, classifier_config(rec, n_classes, I2PMAEConfig(), fcfg.points))
    acc, passes = evaluate_classifier(model, test_x, test_y, fcfg, device)
    voted = max(passes) if passes else None
    report = (
        Path(report)
        if report
        else rundir.report(rundir.run_dir(data_root, as_name(opened.path.stem, "checkpoint")))
    )
    rows = [
        ("classifier", f"{opened.path.name} (fine-tuned checkpoint, evaluated as is)"),
        ("dataset", store.describe()),
        ("test objects", str(len(test_y))),
        ("recipe", describe_recipe(rec, model.cfg, fcfg)),
        ("**accuracy, unvoted**", f"**{pct(acc)}**"),
        (
            "**accuracy, voted**",
            f"**{pct(voted)}** ({vote_protocol(fcfg, passes)})"
            if voted is not None
            else "n/a (voting not defined for this recipe)",
        ),
    ]
    append_report(
        report,
        f"## Fine-tuned classifier on {store.name}\n\n{table(rows)}\n\nNo training, no epoch selection.",
    )
    return FinetuneOutcome([], report, None, (acc, voted))
