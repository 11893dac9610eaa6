"""Preemption (docs/training.md, "Preemption and time-based checkpoints"): a scheduler's SIGTERM or SIGUSR1
stops training as Ctrl-C does — after the current step, with ckpt-last.pt at that step and an exit code of
128 + the signal — and the resumed run ends with the same weights and the same losses, step by step, as
one that was never stopped. Signals are sent for real, to this process."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

import pytest
import torch

from pipeline.core.errors import Interrupted
from pipeline.storage.safe_load import torch_load
from pipeline.train.engine import fit
from pipeline.train.setup import setup
from tests.builders import SMALL, TRAIN_SETS, built_inputs, toy_config


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A 4-object training split (2 steps per epoch at batch 2) with points, views and features stores."""
    tmp = tmp_path_factory.mktemp("preempt")
    config = toy_config(tmp, TRAIN_SETS)
    return config, built_inputs(config, tmp / "data")


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def harmless_late_signals():
    """While a test runs, a signal that arrives after training returned must not kill pytest."""
    before = {s: signal.signal(s, lambda *a: None) for s in (signal.SIGTERM, signal.SIGUSR1)}
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_scheduler_signal_saves_at_the_step_and_the_resumed_run_matches_an_unstopped_one(
    stores, tmp_path, sig, harmless_late_signals
):
    config, inputs = stores
    base = config.params("train").model_copy(
        update={"epochs": 3, "batch_size": 2, "checkpoint_every_minutes": 0}
    )
    fit(setup(base.model_copy(update={"run": "whole"}), inputs, tmp_path / "whole", "cpu", arch=SMALL))
    run = tmp_path / "stopped"

    def send_after_first_step():
        metrics = run / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 1):
            time.sleep(0.01)
        os.kill(os.getpid(), sig)

    sender = threading.Thread(target=send_after_first_step, daemon=True)
    sender.start()
    with pytest.raises(Interrupted) as stop:
        fit(setup(base.model_copy(update={"run": "stopped"}), inputs, run, "cpu", arch=SMALL))
    sender.join(5)
    assert stop.value.exit_code == 128 + int(sig)
    assert f"interrupted by {sig.name}: checkpoint saved at step" in stop.value.message
    saved = torch_load(run / "ckpt-last.pt")
    assert 1 <= saved["step"] < 6 and saved["step"] == len(_losses(run))  # the step it stopped after
    fit(setup(base.model_copy(update={"run": "stopped"}), inputs, run, "cpu", arch=SMALL, resume=True))
    assert _losses(run) == _losses(tmp_path / "whole")  # the same losses, step by step
    whole, resumed = torch_load(tmp_path / "whole" / "ckpt-last.pt"), torch_load(run / "ckpt-last.pt")
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_time_based_checkpoints_are_written_mid_epoch_and_change_nothing(stores, tmp_path, caplog):
    config, inputs = stores
    base = config.params("train").model_copy(update={"epochs": 2, "batch_size": 2})
    plain = base.model_copy(update={"run": "plain", "checkpoint_every_minutes": 0})
    often = base.model_copy(update={"run": "often", "checkpoint_every_minutes": 1e-9})  # after every step
    fit(setup(plain, inputs, tmp_path / "plain", "cpu", arch=SMALL))
    with caplog.at_level(logging.INFO, logger="i2p"):
        fit(setup(often, inputs, tmp_path / "often", "cpu", arch=SMALL))
    assert [r.getMessage() for r in caplog.records if "checkpoint_every_minutes" in r.getMessage()] == [
        "step 1: ckpt-last.pt written (checkpoint_every_minutes)",
        "step 3: ckpt-last.pt written (checkpoint_every_minutes)",
    ]  # mid-epoch (steps 2 and 4 end their epochs, which save anyway)
    assert _losses(tmp_path / "often") == _losses(tmp_path / "plain")
