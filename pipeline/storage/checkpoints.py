"""Pre-trained encoders and fine-tuned classifiers from checkpoint files: ours and the paper's, loudly.

* Ours (``runs/<name>/ckpt-last.pt``, written by ``i2p train``): ``{"model": I2PMAE state dict,
  "model_config": asdict(I2PMAEConfig), "train_params": ..., ...}``; the model is rebuilt from its
  config, no flags needed.
* The paper's ``pre-train.pth`` (I2P-MAE and Point-M2AE): ``{"base_model": state dict, ...}``, keys
  usually prefixed ``module.`` (DataParallel), the CLIP teacher under ``clip_model.``. Both codebases
  name the encoder exactly as we do (``h_encoder.token_embed / encoder_pos_embeds / encoder_blocks /
  encoder_norms``; checked against ``official_checkpoint_keys.json``), so loading strips the prefix,
  keeps the ``h_encoder.*`` keys, ignores the rest (teacher, decoder, heads), infers the widths and
  depths from the shapes, and raises :class:`CheckpointError` counting the missing, unexpected and
  mis-shaped encoder keys and naming the first few of each. The official loader loads with
  ``strict=False`` and silently loads nothing (method §12.1); this one never does.
* The paper's fine-tuned classifiers (``cls_head_finetune.*``): loaded whole, strictly.

Reading a file (signature check, wrapper keys, ``module.`` / ``_orig_mod.`` prefixes, which files are
unpickled in full) is :mod:`pipeline.storage.checkpoint_files`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from pipeline.storage import rundir
from pipeline.storage.checkpoint_files import CheckpointError, Opened, open_checkpoint

log = logging.getLogger("i2p")

ENCODER = "h_encoder."
SHOWN = 5  # keys named per kind of mismatch; the rest are counted


@dataclass
class EncoderCheckpoint:
    """A verified pre-trained encoder: ``encoder_state`` has exactly the expected ``h_encoder.*`` keys."""

    path: Path
    origin: str  # "ours" | "official"
    config: Any  # I2PMAEConfig the encoder belongs to
    encoder_state: dict[str, Any]  # "h_encoder."-prefixed tensors
    train_points: int  # points per object in pre-training (the default for embeddings)
    run_dir: Path | None  # the run directory the file belongs to, if any
    epoch: int | None
    ignored: dict[str, int]  # top-level prefix -> keys not loaded (teacher, decoder, heads)

    def describe(self) -> str:
        where = f"run {self.run_dir.name}, " if self.run_dir else ""
        epoch = f", epoch {self.epoch}" if self.epoch is not None else ""
        return f"{where}{self.path.name} ({self.origin} checkpoint{epoch})"

    def build_model(self, device: Any = "cpu"):
        """An I2PMAE with this encoder (no 2D head; the decoder stays random and unused), in eval mode."""
        from i2pmae.model import I2PMAE

        model = I2PMAE(replace(self.config, targets="3d"))
        missing, unexpected = model.load_state_dict(self.encoder_state, strict=False)
        assert not unexpected and not any(k.startswith(ENCODER) for k in missing), (missing, unexpected)
        return model.to(device).eval()


def run_checkpoint(data_root: Path, run: str, which: str = "last") -> Path:
    """``<data_root>/runs/<run>/ckpt-<which>.pt``, or an error naming what the run directory holds."""
    run_dir = rundir.run_dir(data_root, run)
    path = rundir.checkpoint(run_dir, which)
    if path.is_file():
        return path
    if not run_dir.is_dir():
        known = sorted(r.path.name for r in rundir.list_runs(data_root))
        raise CheckpointError(
            f"no run {run!r} under {Path(data_root) / 'runs'} (runs: {', '.join(known) or 'none'})",
            "train one with `i2p train --run NAME`, or pass a file with --ckpt",
        )
    found = sorted(p.name for p in run_dir.glob("ckpt-*.pt"))
    raise CheckpointError(
        f"run {run!r} has no {path.name} (checkpoints there: {', '.join(found) or 'none'})",
        "wait for training to write one, or pass --ckpt FILE",
    )


def infer_config(state: Mapping[str, Any]):
    """The paper's I2PMAEConfig with widths, depths and MLP ratio read off the encoder's shapes.

    Head count, group counts and group sizes cannot be read from shapes; the paper's (6; 512/256/64;
    16/8/8) are used, as in every released checkpoint.
    """
    from i2pmae.model import I2PMAEConfig

    dims, depths = [], []
    s = 0
    while f"{ENCODER}token_embed.{s}.second_conv.3.weight" in state:
        dims.append(int(state[f"{ENCODER}token_embed.{s}.second_conv.3.weight"].shape[0]))
        blocks = {
            int(m.group(1))
            for k in state
            if (m := re.match(rf"{ENCODER}encoder_blocks\.{s}\.blocks\.(\d+)\.", k))
        }
        depth = 0
        while depth in blocks:  # contiguous from 0: a stray block index is reported as unexpected
            depth += 1
        depths.append(depth)
        s += 1
    if not dims:
        return I2PMAEConfig(targets="3d")
    base = I2PMAEConfig()
    fc1 = state.get(f"{ENCODER}encoder_blocks.0.blocks.0.mlp.fc1.weight")
    ratio = fc1.shape[0] / dims[0] if fc1 is not None else base.mlp_ratio
    if len(dims) != len(base.num_groups):
        raise CheckpointError(
            f"the encoder has {len(dims)} scales; i2p builds the paper's {len(base.num_groups)}"
        )
    return replace(
        base,
        encoder_dims=tuple(dims),
        encoder_depths=tuple(depths),
        mlp_ratio=ratio,
        decoder_dims=(dims[-1], dims[-2]),
        targets="3d",
    )


def config_from_dict(values: Mapping[str, Any]):
    """I2PMAEConfig from ``asdict`` output (lists back to tuples; unknown keys are an error)."""
    from i2pmae.model import I2PMAEConfig

    known = {f.name for f in fields(I2PMAEConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(
            f"model_config has keys this version does not know: {', '.join(unknown)}",
            "evaluate with the i2p version that trained it",
        )
    return I2PMAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def check_encoder_keys(
    found: Mapping[str, Any],
    expected: Mapping[str, Any],
    path: Path,
    what: str = "encoder",
    others: Any = (),
) -> None:
    """Raise giving how many encoder keys are missing, unexpected and mis-shaped and the first few of
    each (``SHOWN``); silent when they all match. ``others``: the file's other keys, summarised by
    prefix when it holds no encoder key at all."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: {tuple(found[k].shape)} in the file, {tuple(expected[k].shape)} expected"
        for k in sorted(set(found) & set(expected))
        if tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if keys:
            more = f", ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
            parts.append(f"{len(keys)} {title}: " + ", ".join(keys[:SHOWN]) + more)
    hint = "is it an I2P-MAE / Point-M2AE pre-training checkpoint?"
    if not found:
        starts = Counter(k.split(".", 1)[0] + "." for k in others or ())
        seen = ", ".join(f"{p} ({n})" for p, n in starts.most_common(4))
        hint = "the file has no h_encoder.* keys at all" + (f" (its keys start with {seen})" if seen else "")
        hint += "; is it an I2P-MAE / Point-M2AE pre-training checkpoint?"
    elif any(k.startswith(f"{ENCODER}encoder_norms.") for k in missing):
        hint = "encoder_norms are missing: this looks like a fine-tuned classifier, not a pre-training checkpoint"
    raise CheckpointError(f"{path}: {what} keys do not match the model; " + "; ".join(parts), hint)


def load_encoder(source: Path | Opened, need_norms: bool = True) -> EncoderCheckpoint:
    """Read a checkpoint (ours or the paper's), verify and return its pre-trained encoder.

    ``need_norms=False`` (fine-tuning) does not require the pre-training-only ``encoder_norms``.
    """
    import torch

    from i2pmae.model import I2PMAE

    opened = source if isinstance(source, Opened) else open_checkpoint(source)
    path, obj, state, wrapper = opened.path, opened.obj, opened.state, opened.wrapper
    ours = isinstance(obj, Mapping) and wrapper == "model" and "model_config" in obj
    if ours:
        config = config_from_dict(obj["model_config"])
        points = int((obj.get("train_params") or {}).get("points", 2048))
        epoch = obj.get("epoch")
    else:
        config, points, epoch = (
            infer_config(state),
            2048,
            obj.get("epoch") if isinstance(obj, Mapping) else None,
        )
    with torch.device("meta"):  # names and shapes only, no memory, no initialisation cost
        reference = I2PMAE(replace(config, targets="3d")).state_dict()
    expected = {k: v for k, v in reference.items() if k.startswith(ENCODER)}
    found = {k: v for k, v in state.items() if k.startswith(ENCODER)}
    if not need_norms:
        expected = {k: v for k, v in expected.items() if not k.startswith(f"{ENCODER}encoder_norms.")}
        found = {k: v for k, v in found.items() if not k.startswith(f"{ENCODER}encoder_norms.")}
    check_encoder_keys(found, expected, path, others=state)
    ignored = Counter(k.split(".", 1)[0] for k in state if not k.startswith(ENCODER))
    if ignored:
        log.debug("%s: ignored %s", path.name, ", ".join(f"{k}.* ({n})" for k, n in sorted(ignored.items())))
    return EncoderCheckpoint(
        path,
        "ours" if ours else "official",
        config,
        found,
        points,
        run_dir_of(path),
        int(epoch) if isinstance(epoch, int) else None,
        dict(ignored),
    )


def run_dir_of(path: Path) -> Path | None:
    """The run directory a checkpoint file sits in (a ``config.yaml`` beside it), else None."""
    return path.parent if rundir.read(path.parent).exists else None


def is_classifier(opened: Opened) -> bool:
    """Whether the checkpoint holds a fine-tuned classifier (``cls_head_finetune.*`` keys)."""
    return any(k.startswith("cls_head_finetune.") for k in opened.state)


def load_classifier(source: Path | Opened, cfg: Any):
    """A PointClassifier of config ``cfg`` with all weights of a fine-tuned checkpoint, strictly.

    ``cfg.num_classes`` and ``cfg.pooling`` are taken from the head's shapes.
    """
    from i2pmae.classifier import PointClassifier

    opened = source if isinstance(source, Opened) else open_checkpoint(source)
    path, state = opened.path, opened.state
    first, last = state.get("cls_head_finetune.0.weight"), state.get("cls_head_finetune.8.weight")
    if first is None or last is None:
        raise CheckpointError(f"{path} holds no classifier head (cls_head_finetune.0/.8.weight)")
    pooling = "concat" if first.shape[1] == 2 * cfg.encoder_dims[-1] else "mean+max"
    model = PointClassifier(replace(cfg, num_classes=int(last.shape[0]), pooling=pooling))
    check_encoder_keys(state, model.state_dict(), path, "classifier")
    model.load_state_dict(state, strict=True)
    return model
