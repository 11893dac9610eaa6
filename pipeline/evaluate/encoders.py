"""Which encoder an evaluation uses: a run's checkpoint, a checkpoint file, or a random initialisation.

Also where its report goes: the run directory's ``report.md`` when the checkpoint lies in one,
otherwise ``<data_root>/runs/<checkpoint stem>/report.md`` (``--report`` overrides).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.core.errors import I2PError
from pipeline.core.names import as_name
from pipeline.storage import rundir
from pipeline.storage.checkpoints import EncoderCheckpoint, Opened, load_encoder, run_checkpoint


class EvaluationError(I2PError):
    """An evaluation cannot run as asked (wrong split, too few points or classes, bad numbers)."""


@dataclass
class Encoder:
    """An encoder to evaluate: a checkpoint's, or a random initialisation of a given architecture."""

    config: Any  # I2PMAEConfig
    label: str  # how the report names it
    train_points: int
    run_dir: Path | None
    checkpoint: EncoderCheckpoint | None  # None = random initialisation
    seed: int = 0

    def model(self, device: Any):
        import torch

        from i2pmae.model import I2PMAE

        if self.checkpoint is not None:
            return self.checkpoint.build_model(device)
        torch.manual_seed(self.seed)
        return I2PMAE(replace(self.config, targets="3d")).to(device).eval()


def checkpoint_path(data_root: Path, run: str | None, ckpt: Path | None, which: str = "last") -> Path | None:
    if run and ckpt:
        raise EvaluationError("pass either --run NAME or --ckpt FILE, not both")
    if ckpt:
        return Path(ckpt).expanduser().resolve()
    return run_checkpoint(data_root, run, which) if run else None


def resolve_encoder(
    data_root: Path,
    run: str | None,
    ckpt: Path | None,
    *,
    random_init: bool = False,
    seed: int = 0,
    need_norms: bool = True,
    which: str = "last",
    opened: Opened | None = None,
) -> Encoder:
    """The encoder of ``--run`` / ``--ckpt``; with ``random_init`` the same architecture (or the paper's
    when neither is given) freshly initialised with ``seed``. ``opened``: the checkpoint, already read."""
    path = checkpoint_path(data_root, run, ckpt, which)
    if path is None and not random_init:
        raise EvaluationError(
            "no encoder given", "pass --run NAME (ours) or --ckpt FILE (ours or the paper's)"
        )
    ck = load_encoder(opened or path, need_norms=need_norms) if path is not None else None
    if not random_init:
        return Encoder(ck.config, ck.describe(), ck.train_points, ck.run_dir, ck)
    from i2pmae.model import I2PMAEConfig

    config = ck.config if ck else I2PMAEConfig()
    arch = f"architecture of {ck.describe()}" if ck else "the paper's architecture"
    run_dir = ck.run_dir if ck else None
    points = ck.train_points if ck else 2048
    return Encoder(config, f"random initialisation (seed {seed}, {arch})", points, run_dir, None, seed)


def report_path(data_root: Path, encoder: Encoder, override: Path | None) -> Path:
    """``--report``, else the run directory's report.md, else ``runs/<checkpoint stem>/report.md``."""
    if override:
        return Path(override)
    if encoder.run_dir is not None:
        return rundir.report(encoder.run_dir)
    stem = as_name(encoder.checkpoint.path.stem, "checkpoint") if encoder.checkpoint else "random-init"
    return rundir.report(rundir.run_dir(data_root, stem))
