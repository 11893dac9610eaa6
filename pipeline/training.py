"""Connects ``i2p train`` to the loop: resolve the stores, the device, DDP and the online teacher."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.config import Config
from pipeline.runner import STATUS_FUNCS, StatusRow, describe_difference, register, train_inputs

log = logging.getLogger("i2p")


def run_state(run_dir: Path) -> tuple[str, dict | None]:
    """("complete" | "partial" | "missing", config.yaml contents) without importing torch."""
    config = (
        yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else None
    )
    if (run_dir / "complete.json").exists():
        return "complete", config
    return ("partial" if (run_dir / "ckpt-last.pt").exists() else "missing"), config


def _reached_end(run_dir: Path, params) -> bool:  # noqa: ANN001
    """complete.json says the run reached its epochs, or at least this config's --max-steps."""
    done = json.loads((run_dir / "complete.json").read_text())
    return done["epoch"] >= params.epochs or (
        params.max_steps is not None and done["step"] >= params.max_steps
    )


@dataclass(frozen=True)
class Distributed:
    """What torchrun says about this process (read by the CLI from WORLD_SIZE / RANK / LOCAL_RANK)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0


def run_training(
    config: Config,
    data_root: Path,
    dataset: str,
    features: Path | None = None,
    dist: Distributed = Distributed(),
    done: dict[str, Path] | None = None,
) -> Path:
    """Train one run; returns its directory."""
    import torch

    from pipeline.devices import resolve_device
    from pipeline.features import resolve_precision
    from pipeline.train import train

    params = config.params("train")
    device = resolve_device(params.device)
    if dist.world > 1:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
        if device.startswith("cuda"):
            device = f"cuda:{dist.local_rank}"
            torch.cuda.set_device(device)
        if dist.rank != 0:
            torch.distributed.barrier()  # rank 0 brings the stores up to date first, alone
    inputs = train_inputs(config, data_root, dataset, features, dict(done or {}))
    if dist.world > 1 and dist.rank == 0:
        torch.distributed.barrier()
    teacher = None
    if params.online_teacher:
        from pipeline.teachers import load_teacher

        teacher = load_teacher(
            params.online_teacher, None, device, resolve_precision("auto", device), offline=config.offline
        )
        inputs = dataclasses.replace(inputs, feature_channels=teacher.channels)  # e.g. 768 for ViT-L/14
        if teacher.random_weights:
            log.warning(
                "online teacher %s has RANDOM weights: for timing and smoke runs only", params.online_teacher
            )
    run_dir = data_root / "runs" / params.run
    try:
        ckpt = train(params, inputs, run_dir, device, teacher, dist.rank, dist.world)
    finally:
        if dist.world > 1:
            torch.distributed.destroy_process_group()
    log.info("run %s: checkpoint %s", params.run, ckpt)
    return run_dir


@register("train")
def _run_train(config: Config, data_root: Path, dataset: str, inputs: dict[str, Path]) -> Path:
    """As a pipeline stage: skip a finished run with the same params, resume an unfinished one."""
    from pipeline.errors import ConfigError

    params = config.params("train")
    run_dir = data_root / "runs" / params.run
    state, saved = run_state(run_dir)
    if saved is not None and saved["params"] != params.fingerprint_params():
        raise ConfigError(
            f"run {params.run} was trained with other params: {describe_difference(params.fingerprint_params(), saved['params'])}",
            "choose another run name with --set train.run=NAME, or delete the run directory",
        )
    if saved is not None and state != "missing":
        current = train_inputs(config, data_root, dataset, None, dict(inputs)).fingerprints
        if saved["stores"]["fingerprints"] != current:
            raise ConfigError(
                f"run {params.run} was trained on other stores ({saved['stores']['fingerprints']}, now {current})",
                "choose another run name with --set train.run=NAME, or delete the run directory",
            )
    if state == "complete" and _reached_end(run_dir, params):
        log.info("train %s: up to date (%s)", params.run, run_dir)
        return run_dir
    if state == "complete":
        state = "partial"  # stopped at an earlier --max-steps: continue to this config's end
    if state == "partial":
        config = config.with_values("train", resume=True)
    return run_training(config, data_root, dataset, done=inputs)


@register("eval")
def _run_eval(config: Config, data_root: Path, dataset: str, inputs: dict[str, Path]) -> Path:
    """Linear SVM of the run's encoder and of the same encoder at random initialisation (issue: is
    pre-training worth anything here?), both appended to the run's report.md, then a summary."""
    from pipeline import evaluation as ev
    from pipeline.reports import append_report, pct

    params, run = config.params("eval"), config.params("train").run
    run_dir = data_root / "runs" / run
    report = run_dir / "report.md"
    ckpt = run_dir / "ckpt-last.pt"
    if (
        report.exists()
        and "## Summary" in report.read_text()
        and report.stat().st_mtime > ckpt.stat().st_mtime
    ):
        log.info("eval %s: up to date (%s)", run, report)
        return report
    store = ev.open_points(data_root, dataset)
    device = ev.resolve_device(params.device)
    results = {}
    for label, random_init in (("pre-trained", False), ("random initialisation", True)):
        encoder = ev.resolve_encoder(data_root, run, None, random_init=random_init, seed=0)
        results[label] = ev.run_svm(encoder, store, params, device, report)
    a, b = results["pre-trained"].accuracy, results["random initialisation"].accuracy
    verdict = "beats" if a > b else ("ties with" if a == b else "does NOT beat")
    append_report(
        report,
        "\n".join(
            [
                f"## Summary: pre-trained vs random initialisation on {dataset}",
                "",
                "| encoder | linear-SVM test accuracy |",
                "|---|---|",
                f"| pre-trained (run {run}) | {pct(a)} |",
                f"| same architecture, random initialisation (seed 0) | {pct(b)} |",
                "",
                f"Pre-training {verdict} random initialisation here ({pct(a)} vs {pct(b)}, one SVM fit each,"
                " no choice made on the test split).",
                "",
            ]
        ),
    )
    log.info("linear SVM on %s: pre-trained %s, random init %s (report %s)", dataset, pct(a), pct(b), report)
    return report


def _train_status(config: Config, data_root: Path, dataset: str) -> StatusRow:
    """The run directory's state, or which params differ from the run's config.yaml."""
    params = config.params("train")
    run_dir = data_root / "runs" / params.run
    state, saved = run_state(run_dir)
    if saved is not None and saved["params"] != params.fingerprint_params():
        diff = describe_difference(params.fingerprint_params(), saved["params"])
        return StatusRow("train", dataset, f"changed: {diff}", run_dir)
    label = {"complete": "up to date", "partial": "partial (resumable)", "missing": "missing"}[state]
    return StatusRow("train", dataset, label, run_dir if state != "missing" else None)


def _eval_status(config: Config, data_root: Path, dataset: str) -> StatusRow:
    """Up to date once the run's report.md holds the pre-trained vs random-init summary."""
    report = data_root / "runs" / config.params("train").run / "report.md"
    done = report.exists() and "## Summary" in report.read_text()
    return StatusRow("eval", dataset, "up to date" if done else "missing", report if done else None)


STATUS_FUNCS.update({"train": _train_status, "eval": _eval_status})
