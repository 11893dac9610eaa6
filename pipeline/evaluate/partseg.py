"""Part-segmentation glue: a points store with part labels → :mod:`pipeline.evaluate.partseg_loop` → report.md,
a metrics file and the trained model (for ``i2p show --partseg``).

The recipe is the reference's (method §14.3) with the stage's params (``partseg:`` in stages.yaml); the
encoder is a run's, a checkpoint file's (ours or official) or a random initialisation of the same
architecture. The report gives three selections, each labelled: the last epoch, the epoch of the best
instance mIoU with its own class mIoU, and the reference scripts' independent maxima.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.core.console import progress_bar
from pipeline.core.errors import I2PError
from pipeline.evaluate.encoders import EvaluationError, report_path, resolve_encoder
from pipeline.evaluate.epoch_state import drop_epoch_state
from pipeline.evaluate.extract import points_store
from pipeline.evaluate.finetuning import metrics_file, resume_file
from pipeline.evaluate.reports import append_report, pct, table
from pipeline.storage.partseg_store import load_partseg_split, partseg_layout

log = logging.getLogger("i2p")


@dataclass
class PartsegOutcome:
    result: Any  # pipeline.evaluate.partseg_loop.PartsegResult
    report: Path
    metrics: Path
    model: Path  # the trained segmentation model (last epoch), read by `i2p show --partseg`
    store: str  # the dataset's name


def train_config(params: Any) -> Any:
    """The :class:`i2pmae.partseg_step.PartSegTrainConfig` of the stage's params. Raises ConfigError for
    ``precision=bf16`` on a device other than CUDA."""
    import dataclasses

    from i2pmae.partseg_step import PartSegTrainConfig
    from pipeline.core.devices import check_training_precision, resolve_device

    check_training_precision(params.precision, resolve_device(params.device), params.STAGE)
    keys = {f.name for f in dataclasses.fields(PartSegTrainConfig)}
    return PartSegTrainConfig(**{k: v for k, v in params.model_dump().items() if k in keys})


def model_config(encoder_config: Any, n_categories: int, n_parts: int) -> Any:
    """The segmentation model for a pre-trained encoder's architecture (dims, depths, heads)."""
    from i2pmae.partseg import PartSegConfig

    return PartSegConfig(
        n_categories=n_categories,
        n_parts=n_parts,
        encoder_dims=tuple(encoder_config.encoder_dims),
        encoder_depths=tuple(encoder_config.encoder_depths),
        num_heads=encoder_config.num_heads,
        mlp_ratio=encoder_config.mlp_ratio,
        num_groups=tuple(encoder_config.num_groups),
        group_sizes=tuple(encoder_config.group_sizes),
        fps_origin_rule=encoder_config.fps_origin_rule,
    )


def split_data(store: Path, split: str) -> Any:
    """One split of a part-labelled store as tensors (:class:`PartsegData`)."""
    import torch

    from pipeline.evaluate.partseg_loop import PartsegData

    s = load_partseg_split(store, split)
    if len(s.count) == 0:
        raise EvaluationError(f"the {split} split of {store} holds no shapes", "prepare the dataset again")
    return PartsegData(
        torch.from_numpy(s.points),
        torch.from_numpy(s.part),
        torch.from_numpy(s.count),
        torch.from_numpy(s.label),
    )


def run_partseg(
    data_root: Path,
    ckpt: Path | None,
    store: Path,
    params: Any,
    *,
    report: Path | None = None,
    random_init: bool = False,
) -> PartsegOutcome:
    """Fine-tune the encoder of ``ckpt`` (or a random initialisation) for part segmentation on ``store``.

    Raises EvaluationError (no part labels, too few points for ``test_points``, a non-finite loss) and the
    checkpoint errors of :func:`pipeline.storage.checkpoints.load_encoder` (no encoder key loads)."""
    import torch

    from i2pmae.partseg import PartSegmenter
    from i2pmae.partseg_metrics import parts_by_index
    from pipeline.core.devices import resolve_device
    from pipeline.evaluate.partseg_loop import fit

    cfg, device = train_config(params), resolve_device(params.device)
    classes, parts, n_parts = partseg_layout(store)
    name = points_store(store).name  # the dataset's, from the store's attrs
    encoder = resolve_encoder(data_root, None, ckpt, random_init=random_init, need_norms=True)
    report = report_path(data_root, encoder, report)
    train, test = split_data(store, "train"), split_data(store, "test")
    mcfg = model_config(encoder.config, len(classes), n_parts)
    if cfg.test_points != "resample" and int(test.count.min()) < mcfg.num_groups[0]:
        raise EvaluationError(
            f"a test shape has {int(test.count.min())} points, fewer than the {mcfg.num_groups[0]} groups of "
            f"scale 0 (test_points={cfg.test_points})",
            "use --set partseg.test_points=resample (the reference's)",
        )
    torch.manual_seed(cfg.seed)
    model = PartSegmenter(mcfg)
    if encoder.checkpoint is not None:
        model.load_pretrained_encoder(encoder.checkpoint.encoder_state)
    what = {"store": str(store), "encoder": encoder.label, "config": asdict(cfg), "model": asdict(mcfg)}
    resume = resume_file(report, {"kind": "partseg", **what})
    per_epoch = max(len(train.count) // cfg.batch_size, 1)
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, per_epoch * cfg.epochs)
    with progress_bar(f"partseg {name}", total, "batches") as advance:

        def on_epoch(h: Any) -> None:
            log.info(
                "epoch %d: lr %.2e loss %.4f instance mIoU %s class mIoU %s (%.1fs)",
                h.epoch, h.lr, h.loss, pct(h.instance_miou), pct(h.class_miou), h.seconds,
            )  # fmt: skip

        try:
            result = fit(
                model,
                train,
                test,
                cfg,
                parts_by_index(classes, parts),
                classes,
                device,
                on_epoch,
                advance,
                resume,
            )
        except I2PError as err:
            raise EvaluationError(f"part segmentation: {err.message}", err.hint) from None
        except FloatingPointError as err:
            raise EvaluationError(f"part segmentation: {err}") from None
    model_file = _save_model(report.parent / f"partseg-{name}.pt", store, model, mcfg, classes, parts, result)
    metrics = metrics_file(
        report,
        f"partseg-{name}",
        {"dataset": name, "store": str(store), "encoder": encoder.label, "partseg": asdict(cfg),
         "model": asdict(mcfg), "history": [asdict(h) for h in result.history]},
    )  # fmt: skip
    append_report(report, _section(name, encoder.label, train, test, classes, cfg, result, metrics.name))
    drop_epoch_state(resume)
    return PartsegOutcome(result, report, metrics, model_file, name)


def _save_model(path: Path, store: Path, model: Any, mcfg: Any, classes, parts, result) -> Path:
    """``path`` (``<report folder>/partseg-<dataset>.pt``): the last epoch's weights and what rebuilds and
    labels them."""
    import io

    import torch

    from pipeline.storage.store import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "config": asdict(replace(mcfg)), "classes": list(classes),
         "parts": {k: list(v) for k, v in parts.items()}, "store": str(store),
         "instance_miou": result.last.instance_miou, "epoch": result.last.epoch},
        buffer,
    )  # fmt: skip
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _section(name, encoder, train, test, classes, cfg, r, metrics_name: str) -> str:
    steps = "two optimiser steps per batch (unclipped, then clipped at 10; the reference's)"
    if cfg.single_step:
        steps = "one step per batch after clipping at 10 (partseg.single_step, the fix)"
    test_points = {
        "resample": f"{cfg.points} drawn with replacement, new draws every evaluation (the reference's)",
        "fps": f"a fixed FPS subset of {cfg.points}",
        "all": "every point of each shape",
    }[cfg.test_points]
    rows = [
        ("encoder", encoder),
        ("dataset", f"{name}: train {len(train.count)}, test {len(test.count)} shapes, {len(classes)} categories"),
        ("recipe", f"AdamW lr {cfg.lr:g}, wd {cfg.weight_decay:g}, warm-up {cfg.warmup_epochs} + cosine over "
                   f"{cfg.epochs} epochs; batch {cfg.batch_size}; {steps}; scale 0.8–1.25, shift ±0.1"),
        ("test points", test_points),
        ("trained", f"{len(r.history)} epochs (numbered from 0), {r.steps} batches"
                    + (" (max_steps)" if cfg.max_steps else "")),
        ("**last epoch** (no selection)",
         f"**instance mIoU {pct(r.last.instance_miou)}, class mIoU {pct(r.last.class_miou)}** (epoch {r.last.epoch})"),
        ("best epoch by instance mIoU (selected on the test split)",
         f"instance {pct(r.best.instance_miou)}, class {pct(r.best.class_miou)} (epoch {r.best.epoch})"),
        ("reference's maxima (each selected on the test split, possibly two epochs)",
         f"instance {pct(r.max_instance)}, class {pct(r.max_class)}"),
        ("per category, last epoch", ", ".join(f"{k} {pct(v)}" for k, v in r.last.per_category.items())),
    ]  # fmt: skip
    return (
        f"## Part segmentation on {name}\n\n{table(rows)}\n\nmIoU: part IoU over the shape's category's parts "
        "(a part absent from prediction and truth counts 1), instance = mean over shapes, class = mean over "
        f"categories (method §14.4). History: {metrics_name}."
    )
