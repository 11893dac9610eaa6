"""A DataLoader worker killed by the kernel (SIGKILL: what the out-of-memory killer sends) while a run trains
(docs/training.md, "When a loader worker is killed"): the fit stops at a step boundary with ckpt-last.pt at
the last finished step and one line naming the likely cause and the knobs (exit 2 through the CLI's error
path), and the rerun continues to the same losses as a run that was never stopped. The worker is killed for
real, found among this process's children."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from types import SimpleNamespace

import psutil
import pytest
import torch
import typer

from cli_options import session
from pipeline.core.errors import ResourceError
from pipeline.storage.safe_load import torch_load
from pipeline.train.engine import fit
from pipeline.train.setup import setup
from tests.builders import TINY_ENCODER, build_stage, toy_config

# points only (random masking, 3D targets): no views or features store to build; a tiny model
SETS = [
    "prepare.source=folder",
    "prepare.points=512",
    "prepare.oversample=2",
    "prepare.chunk=4",
    "train.points=512",
    "train.batch_size=2",
    "train.warmup_epochs=0",
    "train.masking=random",
    "train.targets=3d",
    "train.monitor_dataset=null",
    "train.checkpoint_every_minutes=0",
    "train.epochs=3",
    "train.num_workers=1",
]
ARCH = {k: v for k, v in TINY_ENCODER.items() if k not in ("targets", "drop_path")}


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    """The training inputs of a 4-object points store (2 steps per epoch at batch 2)."""
    from pipeline.runner.plan import Context, plan
    from pipeline.train.stage import train_inputs

    tmp = tmp_path_factory.mktemp("workers")
    config = toy_config(tmp, SETS)
    build_stage("prepare", config, tmp / "data", "toys")
    return config, train_inputs(plan("train", Context(config, tmp / "data", "toys")))


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _kill_new_workers_after_the_first_step(run, before: set[int]) -> threading.Thread:
    """SIGKILL the children this process gained since ``before`` (the loader's worker) once a step is
    logged."""

    def kill() -> None:
        metrics = run / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 1):
            time.sleep(0.01)
        for child in psutil.Process().children():
            if child.pid not in before:
                os.kill(child.pid, signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_killed_loader_worker_saves_the_last_step_says_why_and_the_rerun_continues(
    points, tmp_path, capsys
):
    config, inputs = points
    params = config.params("train")
    fit(setup(params.model_copy(update={"run": "whole"}), inputs, tmp_path / "whole", "cpu", arch=ARCH))
    run, handler = tmp_path / "killed", signal.getsignal(signal.SIGCHLD)  # torch's, since the first fit
    killer = _kill_new_workers_after_the_first_step(run, {c.pid for c in psutil.Process().children()})
    with pytest.raises(typer.Exit) as stop:
        with session(SimpleNamespace(obj=None)):  # the CLI's error path: one red line and a hint, exit 2
            with pytest.raises(ResourceError) as err:
                fit(setup(params.model_copy(update={"run": "killed"}), inputs, run, "cpu", arch=ARCH))
            raise err.value
    killer.join(5)
    assert stop.value.exit_code == 2
    message = err.value.message
    assert "DataLoader worker pid" in message and "was killed by SIGKILL" in message, message
    assert "out-of-memory killer" in message and "checkpoint saved at step" in message, message
    assert "--set train.num_workers=0 (now 1" in err.value.hint and "--batch-size (now 2)" in err.value.hint
    printed = capsys.readouterr().err
    assert "was killed by SIGKILL" in printed and "Traceback" not in printed
    saved = torch_load(run / "ckpt-last.pt")
    assert 1 <= saved["step"] < 6 and saved["step"] == len(_losses(run))  # the last finished step
    assert f"checkpoint saved at step {saved['step']} " in message
    assert signal.getsignal(signal.SIGCHLD) is handler  # torch's handler is back once the fit ended
    fit(setup(params.model_copy(update={"run": "killed"}), inputs, run, "cpu", arch=ARCH, resume=True))
    assert _losses(run) == _losses(tmp_path / "whole")  # step by step, as if never stopped
    whole, resumed = torch_load(tmp_path / "whole" / "ckpt-last.pt"), torch_load(run / "ckpt-last.pt")
    assert all(torch.equal(v, resumed["model"][k]) for k, v in whole["model"].items())
