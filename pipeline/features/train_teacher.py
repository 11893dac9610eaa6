"""Train ``tiny-synthetic``: a small open_clip ViT that learns a dataset's classes from its depth views.

The data are the views the render stage makes, made by its own function
(:func:`pipeline.render.views.render_chunk`, augmented draws: a seeded subset of the stored points,
``pc_norm``, per-axis scale and shift, method §1.6), of the **train** split of a points store only;
the test split is rendered after training, to measure a linear probe (evaluation, never training).
Views are normalised with ImageNet statistics, as cache-features does by default. One linear head
learns the classes with cross-entropy (AdamW, linear warm-up then cosine) from the projected CLS
embedding (B, 512) and, with equal weight, from every projected patch feature (B, 196, 512) that
covers the object: the patch features are what the 3D model reconstructs (its 2D targets), so each
of them is taught the object's class, and the CLS attention (the saliency) is shaped by it too.
Dense supervision gives 196 labels per view where the CLS alone gives one: a from-scratch ViT learns
in a few hundred CPU steps what the CLS loss alone did not (15.6 % test-view probe after 240 steps).
Everything is seeded: the same points store, :class:`TeacherTraining` and torch thread count give
the same weights. The head is dropped; the whole open_clip state dict (the token text tower
included, so it loads strictly) is saved in float16 as safetensors, and the record of how it was
made (:func:`train_teacher`'s return value) as JSON beside it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.console import progress_bar
from pipeline.core.tempfiles import temporary_path
from pipeline.features.teacher_probe import occupied_patches
from pipeline.features.teacher_weights import weights_sha256
from pipeline.features.tiny_teachers import (
    SYNTH_MODEL,
    TINY_SEED,
    TeacherTraining,
    record_path,
    register,
)

log = logging.getLogger("i2p")

NAME = "tiny-synthetic"


def render_split(
    points_path: Path, split: str, draws: int, subset: int, seed: int, chunk: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented views of every object of one split, exactly as the render stage draws them.

    Returns images (O, K, V, 224, 224) float16 (depth after the sigmoid, background 0.5) and labels
    (O,) int64. Raises ValueError when the split has an unlabelled object (label −1)."""
    import zarr

    from pipeline.render.views import render_chunk

    group = zarr.open_group(str(points_path), mode="r")
    labels = group[f"{split}/label"][:].astype(np.int64)
    if (labels < 0).any():
        raise ValueError(
            f"{points_path} {split}: {int((labels < 0).sum())} unlabelled objects; a teacher needs labels"
        )
    parts = []
    with progress_bar(f"render {split} views for the teacher", len(labels), "objects") as advance:
        for start in range(0, len(labels), chunk):
            stop = min(len(labels), start + chunk)
            parts.append(render_chunk(str(points_path), split, start, stop, subset, seed, draws)[0])
            advance(stop - start)
    return np.concatenate(parts), labels


def build_model(seed: int) -> Any:
    """The open_clip CLIP model of ``tiny-synthetic`` (:data:`SYNTH_MODEL`), initialised from ``seed``."""
    import open_clip
    import torch

    from pipeline.features.teachers import without_log

    register(open_clip, SYNTH_MODEL)
    with torch.random.fork_rng(devices=[]), without_log("No pretrained weights loaded"):
        torch.manual_seed(seed)
        return open_clip.create_model(SYNTH_MODEL, pretrained=None)


def batch_images(images: np.ndarray, flat: np.ndarray) -> Any:
    """Normalised teacher batch (B, 3, 224, 224) float32 of views ``flat`` (B,) indexing images
    (O, K, V, H, W) flattened over (O, K, V); ImageNet mean/std as cache-features' default."""
    import torch

    from i2pmae.geometry import normalise_images

    grey = images.reshape(-1, *images.shape[-2:])[flat]  # (B, H, W) float16
    return normalise_images(torch.from_numpy(grey))  # (B, 3, H, W)


def fit(model: Any, images: np.ndarray, labels: np.ndarray, cfg: TeacherTraining) -> tuple[Any, list[float]]:
    """Train ``model.visual`` and a linear head on views (O, K, V, H, W) with object labels (O,).
    Returns the head (nn.Linear(512, classes)) and the loss of every step. Stops on a non-finite loss."""
    import open_clip
    import torch

    visual = model.visual
    visual.patch_dropout = (
        open_clip.transformer.PatchDropout(cfg.token_drop) if cfg.token_drop else torch.nn.Identity()
    )
    try:
        with torch.random.fork_rng(devices=[]):  # PatchDropout draws from torch's global generator
            torch.manual_seed(cfg.seed + 1)
            return _fit(visual, images, labels, cfg)
    finally:
        visual.patch_dropout = torch.nn.Identity()  # the shipped model keeps every token
        visual.output_tokens = False  # the dense loss's token output, also after an exception


def _fit(
    visual: Any, images: np.ndarray, labels: np.ndarray, cfg: TeacherTraining
) -> tuple[Any, list[float]]:
    import torch
    import torch.nn.functional as F

    O, K, V = images.shape[:3]  # noqa: E741 -- objects, draws, views (the glossary's letters)
    view_labels = torch.from_numpy(np.repeat(labels, K * V))  # (O·K·V,) object-major, as images flatten
    dense = cfg.patch_loss > 0 and not cfg.token_drop
    visual.output_tokens = dense  # (pooled (B, 512), tokens (B, 196, width)) when dense
    visual.train().requires_grad_(True)
    head = torch.nn.Linear(int(visual.proj.shape[1]), int(labels.max()) + 1)
    params = [*visual.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    losses: list[float] = []
    with progress_bar("train tiny-synthetic", cfg.steps, "steps") as advance:
        for step in range(cfg.steps):
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, cfg)
            flat = rng.choice(O * K * V, min(cfg.batch_size, O * K * V), replace=False)
            out = visual(batch_images(images, flat))
            pooled = out[0] if dense else out  # projected CLS (B, 512)
            loss = F.cross_entropy(head(pooled), view_labels[flat])
            if dense:
                grid = visual.grid_size
                on = torch.from_numpy(
                    occupied_patches(images.reshape(-1, *images.shape[-2:])[flat], *grid)
                )  # (B, 196)
                patch_logits = head(out[1] @ visual.proj)  # (B, 196, classes)
                patch_labels = view_labels[flat][:, None].expand(on.shape)
                loss = loss + cfg.patch_loss * F.cross_entropy(patch_logits[on], patch_labels[on])
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"tiny-synthetic: loss {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            advance(1)
    visual.output_tokens = False
    visual.eval().requires_grad_(False)
    return head.eval().requires_grad_(False), losses


def learning_rate(step: int, cfg: TeacherTraining) -> float:
    """Linear warm-up over ``cfg.warmup`` steps, then cosine from ``cfg.lr`` to 0 at ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    done = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * done))


def save_weights(model: Any, path: Path) -> None:
    """The whole open_clip state dict in float16 as safetensors, written to a temporary name first."""
    from safetensors.torch import save_file

    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    save_file(
        state, str(tmp), metadata={"open_clip_model": SYNTH_MODEL}
    )  # one key: the header's order is fixed
    os.chmod(tmp, 0o644)
    tmp.replace(path)


def train_teacher(
    points_path: Path, out: Path, cfg: TeacherTraining = TeacherTraining(), command: str | None = None
) -> dict[str, Any]:
    """Train ``tiny-synthetic`` on the train split of the points store ``points_path``; write the
    weights to ``out`` (.safetensors) and the record to ``out`` with suffix .json; return the record.

    The record holds the data (dataset, generator version, seed, per-class count, split = train),
    the training config, ``command`` (the command line that ran it), seconds taken, the loss curve's ends, train and test-view accuracies
    (:func:`pipeline.features.teacher_probe.evaluate`), saliency statistics and the weights' sha256."""
    import torch
    import zarr

    from pipeline.features.teacher_probe import evaluate

    out = Path(out)
    attrs = dict(zarr.open_group(str(points_path), mode="r").attrs)
    started = time.perf_counter()
    images, labels = render_split(points_path, "train", cfg.draws, cfg.subset, cfg.seed)
    rendered = time.perf_counter()
    model = build_model(cfg.seed)
    head, losses = fit(model, images, labels, cfg)
    trained = time.perf_counter()
    save_weights(model, out)
    del model
    k = cfg.probe_draws
    test_images, test_labels = render_split(points_path, "test", k, cfg.subset, cfg.seed)
    scores = evaluate(out, head, (images[:, :k], labels), (test_images, test_labels))
    record = {
        "name": NAME,
        "model_name": SYNTH_MODEL,
        "weights_file": out.name,
        "weights_sha256": weights_sha256(str(out)),
        "weights_bytes": out.stat().st_size,
        "data": _data_record(attrs, points_path, cfg),
        "training": {
            **asdict(cfg),
            "init_seed_of_loaded_model": TINY_SEED,  # load_teacher's init, overwritten by the weights
            "loss_first": losses[0],
            "loss_last_10": float(np.mean(losses[-10:])),
            "seconds_render": round(rendered - started, 1),
            "seconds_train": round(trained - rendered, 1),
            "seconds_total": round(time.perf_counter() - started, 1),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "command": command,  # the command line that trained it (None: called from Python)
        },
        **scores,
    }
    record_path(out).write_text(json.dumps(record, indent=1) + "\n")
    log.info("tiny-synthetic: wrote %s (%d bytes) and %s", out, out.stat().st_size, record_path(out).name)
    return record


def _data_record(attrs: dict, points_path: Path, cfg: TeacherTraining) -> dict[str, Any]:
    """What the teacher was trained on: the points store's dataset, source, generator and split."""
    params, handling = attrs.get("params", {}), attrs.get("handling", {})
    classes = list(attrs.get("classes", []))
    return {
        "dataset": attrs.get("dataset"),
        "source": attrs.get("source"),
        "generator_version": handling.get("generator_version"),
        "dataset_seed": params.get("seed"),
        "per_class": params.get("synthetic_per_class") if attrs.get("source") == "synthetic" else None,
        "points_per_object": params.get("points"),
        "points_store_fingerprint": attrs.get("fingerprint"),
        "points_store": Path(points_path).name,
        "split": "train",
        "objects": (attrs.get("counts") or {}).get("train"),
        "classes": classes,
        "classes_count": len(classes),
        "views": "render_chunk augmented draws: (seed, object id, k) for k < draws, 3 views each",
        "render_seed": cfg.seed,
        "image_size": 224,
        "normalisation": "imagenet",
    }
