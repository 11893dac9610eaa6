"""``i2p export``: a run's pre-trained model as files other people and other code load.

``<out>/`` holds

* ``model.safetensors`` — the whole pre-training model's state dict (encoder, decoder, heads; the official
  parameter names, method §12.1), tensors only;
* ``config.json`` — ``format``, the architecture (``I2PMAEConfig`` fields), the training params, the teacher,
  the stores' fingerprints, the parameter counts, the code version and the run's evaluations;
* ``README.md`` — a model card: what it is, how it was trained, what it scored, how to load it;
* ``pre-train.pth`` — the official format: ``{"base_model": state_dict, "epoch": E}`` with the official key
  names, which the official runners (and Point-M2AE's segmentation scripts) load with ``strict=True``.

The folder loads back in one call wherever i2p takes a checkpoint (``--ckpt <out>``:
:func:`pipeline.storage.checkpoint_files.read_checkpoint` reads it as one of ours).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import I2PError
from pipeline.core.tempfiles import temporary_path
from pipeline.storage import rundir
from pipeline.storage.safe_load import torch_load
from pipeline.storage.store import atomic_write_bytes

FORMAT = "i2p-pretrained/1"
WEIGHTS, CONFIG, CARD, OFFICIAL = "model.safetensors", "config.json", "README.md", "pre-train.pth"


@dataclass(frozen=True)
class Exported:
    folder: Path
    files: list[str]
    parameters: dict[str, int]


def export_run(run: Path, out: Path, which: str = "last") -> Exported:
    """Write the folder described above from ``<run>/ckpt-<which>.pt`` (``which``: last | best). Raises
    I2PError when the run or the checkpoint is missing, or when ``out`` holds files and is not an export
    (nothing of a user's is overwritten). The four files are written into a temporary folder first and
    replace an earlier export as a whole: an interrupted export leaves the old one or the new one."""
    import io
    import os
    import shutil

    import torch
    from safetensors.torch import save as safetensors_bytes

    if which not in ("last", "best"):
        raise I2PError(
            f"--which {which!r}: a run keeps ckpt-last.pt and ckpt-best.pt", "use --which last or best"
        )
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_exported(out))):
        raise I2PError(
            f"{out} exists and is not an i2p export: nothing is written into it",
            "name a new folder with --out",
        )
    state_run = rundir.read(run)
    ckpt = rundir.checkpoint(run, which)
    if not state_run.exists or not ckpt.is_file():
        raise I2PError(
            f"run {Path(run).name} has no {ckpt.name} to export",
            "name a trained run with --run NAME (and --which best only where the monitor kept one)",
        )
    saved = torch_load(ckpt)
    model = {k: v.contiguous() for k, v in saved["model"].items()}
    cfg = state_run.config or {}
    counts = cfg.get("parameters") or {}  # recorded by the run (runs from before counts were recorded: none)
    config = {
        "format": FORMAT,
        "architecture": saved["model_config"],
        "train_params": saved.get("train_params"),
        "checkpoint": {
            "run": Path(run).name,
            "file": ckpt.name,
            "epoch": saved.get("epoch"),
            "step": saved.get("step"),
        },
        "dataset": cfg.get("dataset"),
        "teacher": cfg.get("teacher"),
        "stores": cfg.get("stores"),
        "parameters": counts,
        "code": cfg.get("code"),
        "evaluations": [_evaluation(e) for e in rundir.list_evals(run)],
    }
    buffer = io.BytesIO()
    torch.save({"base_model": model, "epoch": saved.get("epoch")}, buffer)
    staging = temporary_path(out)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        atomic_write_bytes(staging / WEIGHTS, safetensors_bytes(model, metadata={"format": FORMAT}))
        atomic_write_bytes(staging / CONFIG, (json.dumps(config, indent=1, default=str) + "\n").encode())
        atomic_write_bytes(staging / OFFICIAL, buffer.getvalue())
        atomic_write_bytes(staging / CARD, model_card(config).encode())
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)  # an earlier export (checked above), or an empty folder
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Exported(out, [WEIGHTS, CONFIG, CARD, OFFICIAL], counts)


def read_exported(folder: Path) -> dict[str, Any]:
    """An exported folder as one of our checkpoints' objects: ``model``, ``model_config``, ``train_params``,
    ``epoch`` (tensors read with safetensors: nothing in the folder runs code)."""
    from safetensors.torch import load_file

    config = json.loads((Path(folder) / CONFIG).read_text())
    if config.get("format") != FORMAT:
        raise I2PError(
            f"{folder}/{CONFIG} is not an i2p export (format {config.get('format')!r}, not {FORMAT})"
        )
    return {
        "model": load_file(str(Path(folder) / WEIGHTS)),
        "model_config": config["architecture"],
        "train_params": config.get("train_params") or {},
        "epoch": (config.get("checkpoint") or {}).get("epoch"),
    }


def is_exported(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / WEIGHTS).is_file() and (Path(path) / CONFIG).is_file()


def _evaluation(record: dict[str, Any]) -> dict[str, Any]:
    result = record.get("result") or {}
    keep = ("accuracy", "random_init_accuracy", "svm_c", "points", "bn_stats", "last_acc", "best_acc")
    return {
        "stage": record.get("stage"),
        "dataset": record.get("dataset"),
        **{k: result[k] for k in keep if k in result},
    }


def model_card(config: dict[str, Any]) -> str:
    """The README.md of an export: provenance, training, evaluations, loading."""
    arch, teacher, params = (
        config["architecture"],
        config.get("teacher") or {},
        config.get("train_params") or {},
    )
    ck, counts = config["checkpoint"], config.get("parameters") or {}
    rows = "\n".join(
        f"| {e.get('stage')} | {e.get('dataset')} | "
        + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in e.items() if k not in ("stage", "dataset"))
        + " |"
        for e in config.get("evaluations") or []
    )  # fmt: skip
    random_teacher = (
        " — **a teacher with RANDOM weights: for tests and smoke runs only**"
        if teacher.get("random_weights")
        else ""
    )
    return f"""# I2P-MAE pre-trained point-cloud encoder ({ck["run"]})

Pre-trained with i2p (I2P-MAE, CVPR 2023: a hierarchical masked autoencoder whose masking and
reconstruction targets come from a frozen 2D model looking at depth views of each shape).

| | |
|---|---|
| checkpoint | `{ck["file"]}` of run `{ck["run"]}`, epoch {ck.get("epoch")}, step {ck.get("step")} |
| dataset | {config.get("dataset")} |
| 2D teacher | {teacher.get("name")} ({teacher.get("weights_sha256") or teacher.get("pretrained_tag")}){random_teacher} |
| masking, targets | {params.get("masking")}, {params.get("targets")} (mask ratio {params.get("mask_ratio")}) |
| points, batch, epochs | {params.get("points")}, {params.get("batch_size")}, {params.get("epochs")} (max steps {params.get("max_steps")}) |
| architecture | groups {arch.get("num_groups")}, dims {arch.get("encoder_dims")}, depths {arch.get("encoder_depths")} |
| trainable parameters | {", ".join(f"{k} {v:,}" for k, v in counts.items()) or "not recorded by the run"} |
| code | i2p {((config.get("code") or {}).get("package"))}, commit {((config.get("code") or {}).get("commit"))} |

## Evaluations of this run

| stage | dataset | result |
|---|---|---|
{rows or "| – | – | none recorded |"}

## Loading

* i2p: `i2p eval svm --ckpt <this folder>` (and `finetune`, `fewshot`, `embed`).
* Python: `pipeline.storage.checkpoints.load_encoder(Path("<this folder>"))` (the encoder, verified), or
  `I2PMAE(config_from_dict(config["architecture"]))` with
  `load_state_dict(safetensors.torch.load_file("model.safetensors"))` for the whole model.
* The official I2P-MAE and Point-M2AE scripts: `pre-train.pth` (`base_model`, official key names).
"""
