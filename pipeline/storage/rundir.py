"""The run directory, ``<data-root>/runs/<name>/``: the one module that writes and reads its files.

=================  =====================================================================================
``config.yaml``    identity, params (those that define the run), runtime params, seed, dataset, the stores
                   it trains on (paths and fingerprints), parameter count; written when the run starts
``metrics.jsonl``  one JSON row per optimiser step (step, epoch, loss, loss_3d, loss_2d, lr, samples/s),
                   and one per monitor SVM (step, epoch, svm_acc, svm_dataset; step 0 = initial weights)
``ckpt-last.pt``   model, optimizer, RNG states and position (epoch, batch, step): written atomically at
                   every epoch end, at ``--max-steps`` and on Ctrl-C
``ckpt-best.pt``   the checkpoint with the best monitor SVM accuracy (chosen on the TEST split, §9.1);
                   config.yaml's ``best`` says which step, epoch and accuracy
``ckpt-epoch-XXX.pt`` kept every ``keep_every`` epochs from ``keep_from`` (§9.1: 250, 275, 300)
``complete.json``  {"epoch", "step"}: the run reached its end (epochs, or ``max_steps``)
``report.md``      evaluation sections appended by eval / finetune / fewshot
``evals/*.json``   one file per evaluation stage output: its identity, params, the store it used, accuracy
``loss.png``       losses per step; ``monitor.png``: monitor SVM accuracy per step (drawn by
                   :mod:`pipeline.storage.run_plots` from the rows read here)
=================  =====================================================================================

torch is never imported here; checkpoints are written by the caller through :func:`write_atomic`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.names import check_name
from pipeline.storage.store import FileLock, atomic_write_bytes

CONFIG, METRICS, COMPLETE, REPORT, LOSS_PNG = (
    "config.yaml",
    "metrics.jsonl",
    "complete.json",
    "report.md",
    "loss.png",
)
MONITOR_PNG = "monitor.png"


def run_dir(data_root: Path, run: str) -> Path:
    """``<data root>/runs/<run>``; ConfigError for a run name that is not one path component
    (:mod:`pipeline.core.names`)."""
    return Path(data_root) / "runs" / check_name("run", run)


def checkpoint(run: Path, which: str = "last") -> Path:
    """``ckpt-last.pt`` (or ``ckpt-<which>.pt``) of a run directory."""
    return Path(run) / f"ckpt-{which}.pt"


def report(run: Path) -> Path:
    return Path(run) / REPORT


def write_atomic(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)


@dataclass(frozen=True)
class RunState:
    """What a run directory says about itself (read without torch)."""

    path: Path
    config: dict[str, Any] | None  # config.yaml, None when absent
    complete: dict[str, Any] | None  # complete.json, None while unfinished
    has_checkpoint: bool
    steps_logged: int  # step rows in metrics.jsonl (monitor rows not counted)

    @property
    def exists(self) -> bool:
        return self.config is not None

    @property
    def identity(self) -> str | None:
        return (self.config or {}).get("identity")

    @property
    def params(self) -> dict[str, Any]:
        return dict((self.config or {}).get("params") or {})

    @property
    def stores(self) -> dict[str, Any]:
        """{"prepare": {"path", "fingerprint"}, "render": …, "cache-features": …} of the run's inputs."""
        return dict((self.config or {}).get("stores") or {})

    @property
    def dataset(self) -> str | None:
        return (self.config or {}).get("dataset")

    @property
    def label(self) -> str:
        if self.complete is not None:
            return "complete"
        return "partial" if self.has_checkpoint else ("started" if self.exists else "missing")


def read(run: Path) -> RunState:
    run = Path(run)
    cfg = yaml.safe_load((run / CONFIG).read_text()) if (run / CONFIG).is_file() else None
    done = json.loads((run / COMPLETE).read_text()) if (run / COMPLETE).is_file() else None
    return RunState(run, cfg, done, checkpoint(run).is_file(), sum("loss" in r for r in metric_rows(run)))


def list_runs(data_root: Path) -> list[RunState]:
    """Every run directory with a config.yaml under the data root, by name."""
    folder = Path(data_root) / "runs"
    found = [read(p) for p in sorted(folder.iterdir()) if p.is_dir()] if folder.is_dir() else []
    return [r for r in found if r.exists]


def write_config(run: Path, config: dict[str, Any]) -> None:
    """Write config.yaml; its ``best`` mark is kept while ``ckpt-best.pt`` exists (a resumed run keeps it)."""
    path = Path(run) / CONFIG
    if "best" not in config and checkpoint(run, "best").is_file() and path.is_file():
        best = (yaml.safe_load(path.read_text()) or {}).get("best")
        config = {**config, "best": best} if best else config
    atomic_write_bytes(path, yaml.safe_dump(config, sort_keys=False).encode())


def metric_rows(run: Path) -> list[dict[str, Any]]:
    path = Path(run) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def monitor_rows(run: Path) -> list[dict[str, Any]]:
    """The monitor's rows of metrics.jsonl ({"step", "epoch", "svm_acc", "svm_dataset", "bn_stats", "bn_note"};
    rows written before bn_stats existed lack the last two), in order."""
    return [r for r in metric_rows(run) if "svm_acc" in r]


def mark_best(run: Path, best: dict[str, Any]) -> None:
    """Record in config.yaml (key ``best``) which monitored step ``ckpt-best.pt`` holds."""
    config = yaml.safe_load((Path(run) / CONFIG).read_text()) if (Path(run) / CONFIG).is_file() else {}
    write_config(run, {**config, "best": best})


def record_parameters(run: Path, counts: dict[str, int]) -> None:
    """Add the trained model's parameter counts to an existing config.yaml (key ``parameters``); a folder
    without config.yaml (a bare ``fit`` call) is left alone."""
    path = Path(run) / CONFIG
    if path.is_file():
        write_config(run, {**(yaml.safe_load(path.read_text()) or {}), "parameters": counts})


def trim_metrics(run: Path, step: int) -> None:
    """Drop rows after ``step`` (written after the checkpoint a resume starts from); resume rewrites them."""
    rows = [r for r in metric_rows(run) if r["step"] <= step]
    atomic_write_bytes(Path(run) / METRICS, "".join(json.dumps(r) + "\n" for r in rows).encode())


def training_lock(run: Path) -> FileLock:
    """The lock a training process holds on ``<run>/.lock`` for as long as it trains: a second process that
    would train the same run stops at once, naming the first's pid."""
    return FileLock(
        Path(run) / ".lock",
        f"another process (pid {{pid}}) is training run {Path(run).name}",
        "wait for it to finish or stop it (a stopped run continues from its checkpoint when rerun)",
    )


def evaluation_lock(out: Path) -> FileLock:
    """The lock an evaluation stage holds on ``evals/.<record>.lock`` while it computes ``out``: a second
    process running the same evaluation of the same run stops at once, naming the first's pid (other
    evaluations of the run go on side by side)."""
    out = Path(out)
    return FileLock(
        out.with_name(f".{out.stem}.lock"),
        f"another process (pid {{pid}}) is running this evaluation ({out.stem}) of run {out.parent.parent.name}",
        "wait for it to finish (the rerun then finds it up to date) or stop it (it resumes from its last epoch)",
    )


def report_lock(report_path: Path) -> FileLock:
    """A short, waiting lock around a read-modify-write of a report (evaluations may run side by side)."""
    path = Path(report_path)
    return FileLock(path.with_name(f".{path.name}.lock"), "", "", wait=True)


def clear(run: Path) -> None:
    """Forget a run that never wrote a checkpoint: its metrics, completion mark and best checkpoint."""
    for name in (METRICS, COMPLETE, checkpoint(run, "best").name, MONITOR_PNG):
        (Path(run) / name).unlink(missing_ok=True)


class MetricsLog:
    """Appends one JSON row per step to metrics.jsonl, flushed at once (a crash loses nothing logged)."""

    def __init__(self, run: Path):
        Path(run).mkdir(parents=True, exist_ok=True)
        self._file = (Path(run) / METRICS).open("a")

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def mark_complete(run: Path, epoch: int, step: int) -> None:
    atomic_write_bytes(Path(run) / COMPLETE, json.dumps({"epoch": epoch, "step": step}).encode())


def unmark_complete(run: Path) -> None:
    (Path(run) / COMPLETE).unlink(missing_ok=True)


def eval_path(run: Path, kind: str, dataset: str, identity: str) -> Path:
    """``evals/<kind>-<dataset>-<fp8>.json``: one evaluation stage output of the run."""
    return Path(run) / "evals" / f"{kind}-{dataset}-{identity[:8]}.json"


def write_eval(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(payload, indent=1, default=str).encode())


def read_eval(path: Path) -> dict[str, Any] | None:
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None


def list_evals(run: Path) -> list[dict[str, Any]]:
    folder = Path(run) / "evals"
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return [json.loads(p.read_text()) for p in files]  # oldest first


def clear_evals(run: Path) -> None:
    """The run trains further: its evaluations describe an older checkpoint (report.md keeps them)."""
    folder = Path(run) / "evals"
    for p in folder.glob("*.json") if folder.is_dir() else []:
        p.unlink()


def input_paths(config: dict[str, Any]) -> dict[str, str | None]:
    """{"points", "views", "features"} → the store paths a run's config.yaml records (None when unused)."""
    stores = config.get("stores") or {}
    kinds = {"points": "prepare", "views": "render", "features": "cache-features"}
    return {k: (stores.get(stage) or {}).get("path") for k, stage in kinds.items()}


def finished_for_good(run: Path) -> bool:
    """complete.json says the run reached its last epoch (not only a --max-steps): nothing will extend it."""
    state = read(run)
    return state.complete is not None and state.complete["epoch"] >= int(state.params.get("epochs", 0))


def has_optimizer_state(run: Path) -> bool:
    """Whether ckpt-last.pt still holds optimizer state (read without unpickling tensors is not possible
    with torch.save's format, so a marker file written by :func:`strip_optimizer_state` says it)."""
    return checkpoint(run).is_file() and not (Path(run) / ".optimizer-stripped").exists()


def strip_optimizer_state(run: Path) -> None:
    """Rewrite ckpt-last.pt without optimizer state (atomically); the run can still be evaluated, and an
    extension of it restarts the optimizer's moments (it says so)."""
    import io

    import torch

    from pipeline.storage.safe_load import torch_load

    state = torch_load(checkpoint(run))
    state["optimizer"] = None
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(checkpoint(run), buffer.getvalue())
    (Path(run) / ".optimizer-stripped").write_text("ckpt-last.pt holds no optimizer state\n")


def forget_stripped(run: Path) -> None:
    """The run is trained further: its next checkpoint holds optimizer state again."""
    (Path(run) / ".optimizer-stripped").unlink(missing_ok=True)
