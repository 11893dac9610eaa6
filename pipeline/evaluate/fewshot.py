"""Few-shot classification (method §1.5): way × shot × folds episodes drawn from a points store (or read
from Point-BERT's few-shot pickles), a classifier fine-tuned per fold → report.md.

Few-shot uses the ModelNet40 recipe's classifier and inputs with a ``way``-class head and, because I2P-MAE
ships no few-shot config, Point-MAE's few-shot protocol (its ``cfgs/fewshot.yaml`` and runner): 151 epochs
(``range(0, max_epoch + 1)``, max_epoch 150) over a cosine of t_initial 150, lr 5e-4, warm-up 10, batch 32,
clip 10, **plain cross-entropy** (its classifier has no label smoothing), the best epoch from epoch 1 on, no
voting. ``fewshot.label_smoothing=0.2`` gives the ModelNet40 recipe's loss, i2p's protocol before it followed
Point-MAE's (with ``fewshot.epochs=150 fewshot.schedule_epochs=150``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluate.encoders import Encoder, report_path, resolve_encoder
from pipeline.evaluate.extract import PointsStore, check_points
from pipeline.evaluate.finetune_text import describe_optimisation, describe_recipe
from pipeline.evaluate.finetuning import (
    finetune_overrides,
    metrics_file,
    resume_file,
    rows_tensor,
    split_labels,
    train_classifier,
)
from pipeline.evaluate.reports import append_report, fewshot_section, pct
from pipeline.sources.fewshot_pickles import read_fewshot_pickle

log = logging.getLogger("i2p")

FEWSHOT_EPOCHS = 151  # Point-MAE's cfgs/fewshot.yaml max_epoch 150, run as range(0, 151) (method §1.5)


def fewshot_config(params: Any) -> Any:
    """The FinetuneConfig every fold trains with: Point-MAE's few-shot protocol (module docstring) with the
    fewshot stage's ``params`` (epochs, schedule_epochs, label_smoothing, batch …) where they are set.
    Raises ConfigError for ``precision=bf16`` on a device other than CUDA."""
    from i2pmae.recipes import RECIPES, finetune_config

    overrides = finetune_overrides(params)
    return finetune_config(
        RECIPES["modelnet40"], **{"epochs": FEWSHOT_EPOCHS, "votes": 0, **overrides, "seed": params.seed}
    )


def run_fewshot(
    data_root: Path,
    ckpt: Path | None,
    store: PointsStore | None,
    params: Any,
    *,
    episodes: Path | None = None,
    report: Path | None = None,
    random_init: bool = False,
) -> tuple[list, Path]:
    """Fine-tune per fold with a ``way``-class head; mean ± std over folds per (way, shot).

    ``params``: the fewshot stage's params (way, shot, folds, seed, device and the fine-tuning fields);
    the episodes are drawn from ``store`` or, when given, read from Point-BERT's pickles in ``episodes``."""
    import torch

    from i2pmae.fewshot import make_episode
    from i2pmae.finetune import build_classifier
    from i2pmae.recipes import RECIPES, classifier_config
    from pipeline.core.devices import resolve_device

    ways, shots, folds, seed = list(params.way), list(params.shot), params.folds, params.seed
    device = resolve_device(params.device)
    encoder: Encoder = resolve_encoder(data_root, None, ckpt, random_init=random_init, need_norms=False)
    report = report_path(data_root, encoder, report)
    rec = RECIPES["modelnet40"]
    fcfg = fewshot_config(params)
    check_points(fcfg.points, encoder.config)
    state = encoder.checkpoint.encoder_state if encoder.checkpoint else None
    if episodes is None:  # labels only: each fold reads just its own objects' points
        assert store is not None
        train = split_labels(store, "train")
        test = split_labels(store, "test") if "test" in store.splits else None
        protocol = (
            f"drawn from {store.name}: `way` classes at random, `shot` train objects per class from "
            f"the train split, 20 test objects per class from the "
            f"{'test' if test else 'remaining train'} split; NumPy generator seeded by "
            f"(seed {seed}, way, shot, fold)"
        )
    else:
        protocol = f"Point-BERT few-shot pickles from `{episodes}`"
    settings, payload = [], []
    for way in ways:
        for shot in shots:
            results = []
            for fold in range(folds):
                if episodes is None:
                    ep = make_episode(train[2], None if test is None else test[2], way, shot, fold, seed)
                    src = test if test is not None else train
                    data = (
                        rows_tensor(train[0], train[1][ep.train_idx]),
                        torch.from_numpy(ep.train_label),
                        rows_tensor(src[0], src[1][ep.test_idx]),
                        torch.from_numpy(ep.test_label),
                    )
                    classes = ep.classes
                else:
                    *data, classes = read_fewshot_pickle(episodes, way, shot, fold)
                ccfg = classifier_config(rec, way, encoder.config, fcfg.points)
                model = build_classifier(ccfg, state, seed)
                what = {
                    "kind": "fewshot",
                    "encoder": encoder.label,
                    "config": asdict(fcfg),
                    "classes": list(classes),
                }
                resume = resume_file(
                    report, {**what, "way": way, "shot": shot, "fold": fold, "episodes": str(episodes)}
                )
                res = train_classifier(model, tuple(data), fcfg, device, f"{way}w{shot}s fold {fold}", resume)
                results.append(res)
                payload.append(
                    {"way": way, "shot": shot, "fold": fold, "classes": list(classes), **asdict(res)}
                )
            log.info("%d-way %d-shot: last %s", way, shot, pct(float(np.mean([r.last_acc for r in results]))))
            settings.append((way, shot, results))
    metrics = metrics_file(
        report,
        f"fewshot-{store.name if store else 'episodes'}",
        {"encoder": encoder.label, "finetune": asdict(fcfg), "folds": payload},
    )
    ccfg = classifier_config(rec, ways[0], encoder.config, fcfg.points)
    section = fewshot_section(
        encoder=encoder.label,
        dataset=store.describe() if store else str(episodes),
        protocol=protocol,
        recipe=describe_recipe(rec, ccfg, fcfg).replace(f"to {ways[0]} classes", "to `way` classes"),
        optimisation=describe_optimisation(fcfg)
        + " (defaults from Point-MAE's few-shot config and runner, plain cross-entropy: I2P-MAE ships none)",
        settings=settings,
        metrics_file=metrics.name,
    )
    append_report(report, section)
    return settings, report
