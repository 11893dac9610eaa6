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


def test_an_interrupted_fine_tuning_continues_from_its_last_epoch_to_the_same_result(tmp_path):
    """finetune(resume=FILE): stopped by Ctrl-C after its second epoch, the rerun ends with the same
    history and weights as a fine-tuning that was never stopped (a real KeyboardInterrupt)."""
    import numpy as np

    from i2pmae.finetune import FinetuneConfig, build_classifier
    from i2pmae.model import I2PMAE, I2PMAEConfig
    from i2pmae.recipes import RECIPES, classifier_config
    from pipeline.evaluate.finetune_loop import finetune
    from tests.builders import TINY_ENCODER, toy_cloud

    rng = np.random.default_rng(1)
    y = np.arange(12) % 3
    x = torch.from_numpy(np.stack([toy_cloud(int(c), rng, 48) for c in y]))
    tiny = I2PMAEConfig(**TINY_ENCODER)
    ccfg = classifier_config(RECIPES["obj-bg"], 3, tiny, 48)
    cfg = FinetuneConfig(epochs=4, batch_size=6, points=48, label_smoothing=0.0, votes=0, warmup_epochs=1)
    state = I2PMAE(tiny).state_dict()
    data = (x, torch.from_numpy(y), x[:6], torch.from_numpy(y[:6]))

    def stop_after_second(m):
        if m.epoch == 1:
            raise KeyboardInterrupt

    whole = finetune(build_classifier(ccfg, state, seed=0), *data, cfg)
    resume = tmp_path / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        finetune(build_classifier(ccfg, state, seed=0), *data, cfg, on_epoch=stop_after_second, resume=resume)
    assert len(torch_load(resume)["history"]) == 2
    model = build_classifier(ccfg, state, seed=0)
    again = finetune(model, *data, cfg, resume=resume)
    assert [(m.loss, m.test_acc, m.lr) for m in again.history] == [
        (m.loss, m.test_acc, m.lr) for m in whole.history
    ]
    reference = build_classifier(ccfg, state, seed=0)
    finetune(reference, *data, cfg)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
