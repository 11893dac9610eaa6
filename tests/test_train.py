"""Training from caches on tiny real stores: 2D targets, learning, resume (the online baseline: test_draws)."""

from __future__ import annotations

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F
import yaml
import zarr

from i2pmae.geometry import points_to_pixels
from i2pmae.model import I2PMAE, I2PMAEConfig
from i2pmae.pretrain import Batch, target_fn
from i2pmae.schedule import epoch_lr, param_groups
from pipeline.core.config import load_config
from pipeline.runner.plan import Context, plan
from pipeline.train.engine import fit
from pipeline.train.setup import setup
from pipeline.train.stage import train_inputs
from pipeline.train.trainset import CachedShapes
from tests.builders import SMALL, TRAIN_SETS, built_inputs, toy_config


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A 4-object training split with real points, views and tiny-random features stores."""
    tmp = tmp_path_factory.mktemp("train")
    config = toy_config(tmp, TRAIN_SETS)
    return config, tmp / "data", built_inputs(config, tmp / "data")


def first_batch(inputs, n=4):
    data = CachedShapes(inputs.points, inputs.views, inputs.features, "train", 1024, seed=1)
    return Batch.from_item(torch.utils.data.default_collate([data[i] for i in range(n)]), torch.device("cpu"))


def test_2d_target_of_a_visible_token_is_the_cached_map_at_its_members(stores):
    _, _, inputs = stores
    batch = first_batch(inputs)
    torch.manual_seed(0)
    model = I2PMAE(I2PMAEConfig(masking="random", feat_dim_2d=512))
    groups = model.group(batch.xyz)
    enc = model.forward_encoder(groups, model.random_mask(4))
    batch_idx, member_idx = model.visible_members(groups, enc.masks)
    target = target_fn(batch)(batch_idx, member_idx)  # (L, 8, 3·512)
    # dense reference for one visible token: upsample each view's map to 224² and read the member pixels
    row = len(batch_idx) // 2
    b, members = batch_idx[row].item(), member_idx[row]
    points = batch.canonical[b, members][None]  # (1, 8, 3)
    rows, cols = points_to_pixels(points, batch.proj[b : b + 1])  # (1, V, 8)
    for v in range(3):
        dense = F.interpolate(
            batch.feature[b, v][None].float(), size=224, mode="bicubic", align_corners=False
        )[0]
        expected = dense[:, rows[0, v], cols[0, v]].T  # (8, C)
        assert torch.allclose(target[row, :, v * 512 : (v + 1) * 512], expected, atol=1e-4)


@pytest.mark.parametrize("arch", [SMALL, pytest.param(None, marks=pytest.mark.slow)], ids=["small", "paper"])
def test_thirty_steps_on_four_shapes_lower_the_loss(stores, tmp_path, arch):
    config, _, inputs = stores
    params = config.params("train").model_copy(update={"run": "learn", "max_steps": 30, "batch_size": 2})
    fit(setup(params, inputs, tmp_path / "learn", "cpu", arch=arch))
    rows = [json.loads(line) for line in (tmp_path / "learn" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    first, last = sum(r["loss"] for r in rows[:5]) / 5, sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert (tmp_path / "learn" / "loss.png").exists()


def test_interrupted_and_resumed_run_ends_with_the_same_parameters(stores, tmp_path):
    config, _, inputs = stores
    base = config.params("train").model_copy(update={"epochs": 3, "batch_size": 2})  # 2 steps per epoch
    fit(setup(base.model_copy(update={"run": "a"}), inputs, tmp_path / "a", "cpu", arch=SMALL))
    stopped = base.model_copy(update={"run": "b", "max_steps": 3})  # stops mid-epoch
    fit(setup(stopped, inputs, tmp_path / "b", "cpu", arch=SMALL))
    fit(setup(base.model_copy(update={"run": "b"}), inputs, tmp_path / "b", "cpu", arch=SMALL, resume=True))
    a = torch.load(tmp_path / "a" / "ckpt-last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "ckpt-last.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_schedule_and_parameter_groups_follow_the_paper():
    lrs = [epoch_lr(e, 1e-3, 300) for e in range(301)]
    assert lrs[0] == lrs[1] == 1e-6  # one-epoch lag (method §9.1)
    assert max(lrs) == pytest.approx(1e-3, rel=2e-3) and lrs.index(max(lrs)) == 11
    assert lrs[300] == pytest.approx(1.49e-4, rel=1e-2)  # the cosine over 400 epochs never finishes
    assert epoch_lr(300, 1e-3, 301, cosine_to_end=True) < 1.2e-6  # option: the cosine ends with the run
    model = I2PMAE(I2PMAEConfig())
    no_decay, decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert any("token_embed" in names[id(p)] and p.ndim > 1 for p in no_decay["params"])  # the quirk
    fixed_no_decay, _ = param_groups(model, 0.05, decay_token_fix=True)
    assert not any("token_embed" in names[id(p)] and p.ndim > 1 for p in fixed_no_decay["params"])
    assert sum(p.numel() for g in (no_decay, decay) for p in g["params"]) == 17_622_808


def test_training_reads_the_store_it_was_given(stores):
    config, data_root, inputs = stores
    assert zarr.open_group(inputs.features, mode="r").attrs["teacher"]["random_weights"] is True
    assert set(inputs.fingerprints) == {"prepare", "render", "cache-features"}
    # random masking + 3D targets needs no views or features
    plain = load_config(
        overrides=[
            *TRAIN_SETS,
            "train.masking=random",
            "train.targets=3d",
            f"prepare.root={config.params('prepare').root}",
        ]
    )
    assert train_inputs(plan("train", Context(plain, data_root, "toys"))).features is None
    assert str(plan("render", Context(config, data_root, "toys")).out) == inputs.views  # the same store


def test_cli_train_then_resume_continues_the_step_count(stores):
    from typer.testing import CliRunner

    from cli import app

    config, data_root, _ = stores
    sets = [a for s in TRAIN_SETS for a in ("--set", s)] + [
        "--set",
        f"prepare.root={config.params('prepare').root}",
    ]
    common = [
        "train",
        "--dataset",
        "toys",
        "--run",
        "smoke",
        "--batch-size",
        "2",
        "--data-root",
        str(data_root),
        *sets,
    ]
    first = CliRunner().invoke(app, [*common, "--max-steps", "1"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert (
        "epoch 0: 0/1 steps" in first.output
    )  # the bar ends where --max-steps stops, not at the epoch's end
    run = data_root / "runs" / "smoke"
    ckpt = (run / "ckpt-last.pt").read_bytes()
    again = CliRunner().invoke(app, [*common, "--max-steps", "1"], catch_exceptions=False)
    assert again.exit_code == 0 and "up to date" in again.output  # a finished identical run is a stage
    resumed = CliRunner().invoke(app, [*common, "--resume"], catch_exceptions=False)
    assert (
        resumed.exit_code == 0 and (run / "ckpt-last.pt").read_bytes() == ckpt
    )  # --resume of a finished run
    other = CliRunner().invoke(app, [*common, "--set", "train.lr=0.5"], catch_exceptions=False)
    assert other.exit_code == 2 and "lr 0.001 → 0.5" in other.output  # never overwrites another run
    zero = CliRunner().invoke(app, [*common, "--max-steps", "0"], catch_exceptions=False)
    assert zero.exit_code == 2 and "max_steps" in zero.output
    second = CliRunner().invoke(app, [*common, "--max-steps", "2"], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert {"config.yaml", "ckpt-last.pt", "loss.png", "complete.json"} <= {p.name for p in run.iterdir()}
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert set(saved["stores"]) == {"prepare", "render", "cache-features"} and saved["dataset"] == "toys"
    from pipeline.runner.status import run_rows
    from pipeline.storage.checkpoints import load_encoder

    trained = load_encoder(run / "ckpt-last.pt").build_model()  # the encoder the run saved
    counts = saved["parameters"]  # trainable parameters, also in status --json and report.md
    assert counts["encoder"] == sum(p.numel() for p in trained.h_encoder.parameters()) < counts["model"]
    assert next(r for r in run_rows(config, data_root) if r["run"] == "smoke")["parameters"] == counts
    # a run stopped before its first checkpoint (killed) starts again from step 0
    (run / "ckpt-last.pt").unlink()
    (run / "complete.json").unlink()
    third = CliRunner().invoke(app, [*common, "--max-steps", "1"], catch_exceptions=False)
    assert third.exit_code == 0, third.output
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1]


def test_resume_after_a_crash_rewrites_metrics_without_duplicates(stores, tmp_path):
    config, _, inputs = stores
    base = config.params("train").model_copy(update={"epochs": 3, "batch_size": 2, "run": "c"})
    fit(setup(base.model_copy(update={"max_steps": 3}), inputs, tmp_path / "c", "cpu", arch=SMALL))
    with (tmp_path / "c" / "metrics.jsonl").open("a") as f:  # rows a crashed run wrote after its checkpoint
        f.write(json.dumps({"step": 4, "loss": 9.0}) + "\n" + json.dumps({"step": 5, "loss": 9.0}) + "\n")
    fit(setup(base, inputs, tmp_path / "c", "cpu", arch=SMALL, resume=True))
    steps = [json.loads(line)["step"] for line in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_status_reports_the_run(stores):
    from pipeline.runner.status import stage_rows

    def status_rows(config, data_root, dataset):
        return [(r["stage"], dataset, r["state"]) for r in stage_rows(config, data_root, dataset)]

    config, data_root, _ = stores
    rows = {
        r[0]: r[2]
        for r in status_rows(config.with_values("train", run="smoke", batch_size=2), data_root, "toys")
    }
    assert rows["prepare"] == rows["render"] == rows["cache-features"] == "up to date"
    assert rows["train"] == "up to date"  # the "smoke" run of test_cli_train_then_resume..., same params
    changed = config.with_values("train", run="smoke", batch_size=2, lr=0.5)
    other = {r[0]: r[2] for r in status_rows(changed, data_root, "toys")}
    assert other["train"].startswith("changed: lr 0.001 → 0.5")
    fresh = {
        r[0]: r[2] for r in status_rows(config.with_values("train", run="nothing-here"), data_root, "toys")
    }
    assert fresh["train"] == "missing" and fresh["eval"] == "missing"


@pytest.mark.slow
def test_two_process_ddp_trains_through_the_cli(stores):
    import subprocess
    import sys
    from pathlib import Path

    config, data_root, _ = stores
    cli = Path(__file__).resolve().parents[1] / "cli.py"
    sets = [
        a
        for s in [*TRAIN_SETS, f"prepare.root={config.params('prepare').root}", "train.run=ddp"]
        for a in ("--set", s)
    ]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        str(cli),
        "train",
        "--dataset",
        "toys",
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--data-root",
        str(data_root),
        *sets,
    ]
    done = subprocess.run(cmd, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    steps = [
        json.loads(x)["step"] for x in (data_root / "runs" / "ddp" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2]


def test_a_non_finite_loss_names_the_step_as_metrics_numbers_it(stores, tmp_path):
    """A 1e12 learning rate blows the weights up after step 1: the error names step 2 (metrics.jsonl
    holds step 1), as the nan-step case asks."""
    from pipeline.train.engine import TrainingError

    config, _, inputs = stores
    params = config.params("train").model_copy(
        update={
            "run": "nan",
            "max_steps": 4,
            "batch_size": 2,
            "warmup_lr": 1e12,
            "min_lr": 1e12,
            "warmup_epochs": 1,
        }
    )
    with pytest.raises(TrainingError) as err:
        fit(setup(params, inputs, tmp_path / "nan", "cpu", arch=SMALL))
    rows = [json.loads(x) for x in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert f"at step {rows[-1]['step'] + 1} " in err.value.message, (err.value.message, rows)


def test_precision_is_fp32_by_default_part_of_the_identity_and_bf16_runs_on_cpu(stores, tmp_path):
    from pipeline.core.devices import check_training_precision
    from pipeline.core.errors import ConfigError
    from pipeline.core.params import FinetuneParams
    from pipeline.evaluate.finetuning import finetune_overrides

    config, data_root, inputs = stores
    assert config.params("train").precision == "fp32" and config.params("finetune").precision == "fp32"
    bf16 = config.with_values("train", precision="bf16")
    fp = {
        c.params("train").precision: plan("train", Context(c, data_root, "toys")).fingerprint
        for c in (config, bf16)
    }
    assert fp["fp32"] != fp["bf16"]  # another precision is another run
    params = bf16.params("train").model_copy(update={"run": "bf16", "max_steps": 2})
    fit(setup(params, inputs, tmp_path / "bf16", "cpu", arch=SMALL))  # bf16 autocast on the CPU: trains
    rows = [json.loads(x) for x in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert finetune_overrides(FinetuneParams(precision="bf16", device="cpu"))["precision"] == "bf16"
    assert finetune_overrides(FinetuneParams(device="cpu"))["precision"] == "fp32"
    with pytest.raises(ConfigError, match="finetune.precision=bf16 needs a CUDA device or the CPU"):
        check_training_precision("bf16", "mps", "finetune")


def test_the_batch_is_the_total_over_ranks_and_the_steps_per_epoch_do_not_change():
    from pipeline.train.trainset import EpochSampler

    one = EpochSampler(11, 4, seed=3)
    two = [EpochSampler(11, 4, seed=3, rank=r, world=2) for r in range(2)]
    for s in (one, *two):
        s.set_epoch(2, start_batch=1)
    assert one.batches_per_epoch() == two[0].batches_per_epoch() == 2  # 11 // 4, whatever the ranks
    whole, halves = list(one), [list(s) for s in two]
    assert len(whole) == 4 and [len(h) for h in halves] == [2, 2] == [len(s) for s in two]
    assert sorted(halves[0] + halves[1]) == sorted(whole)  # the same global batch, split evenly
    with pytest.raises(ValueError):
        EpochSampler(11, 3, seed=3, rank=0, world=2)


def test_a_batch_that_does_not_split_over_the_ranks_is_an_error_naming_the_rule(stores, tmp_path):
    from pipeline.train.engine import TrainingError

    config, _, inputs = stores
    params = config.params("train").model_copy(update={"batch_size": 3})
    with pytest.raises(TrainingError) as err:
        setup(params, inputs, tmp_path / "x", "cpu", rank=0, world=2, arch=SMALL)
    assert "batch_size % world == 0 (3 % 2 = 1)" in err.value.message and "--batch-size 2" in err.value.hint


def _ddp_worker(rank, port, params, inputs, runs):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        for name, update, resume in runs:
            fit(
                setup(
                    params.model_copy(update=update),
                    inputs,
                    name,
                    "cpu",
                    rank=rank,
                    world=2,
                    arch=SMALL,
                    resume=resume,
                )
            )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_a_resumed_two_process_run_ends_with_the_same_parameters(stores, tmp_path):
    import socket

    import torch.multiprocessing as mp

    config, _, inputs = stores
    base = config.params("train").model_copy(
        update={"epochs": 3, "batch_size": 2}
    )  # 2 steps per epoch, 1 per rank
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs = [
        (tmp_path / "a", {"run": "a"}, False),
        (tmp_path / "b", {"run": "b", "max_steps": 3}, False),
        (tmp_path / "b", {"run": "b"}, True),
    ]
    mp.spawn(_ddp_worker, args=(port, base, inputs, runs), nprocs=2, join=True)
    a = torch.load(tmp_path / "a" / "ckpt-last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "ckpt-last.pt", weights_only=False)
    assert a["step"] == b["step"] == 6 and len(b["rng_ranks"]) == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_a_default_run_trains_the_official_301_epochs_ending_at_the_unfinished_cosine():

    from pipeline.core.params import TrainParams

    params = load_config().params("train")
    assert params == TrainParams() and params.epochs == 301  # range(0, max_epoch + 1), method §9.1
    lrs = [params.lr_at(e) for e in range(params.epochs)]
    assert lrs[0] == lrs[1] == 1e-6 and lrs[-1] == pytest.approx(1.49e-4, rel=1e-2)  # the cosine over 400


def test_the_monitor_measures_the_encoder_keeps_best_and_epoch_checkpoints_and_changes_no_weight(
    stores, tmp_path
):
    from pipeline.core.params import TrainParams
    from pipeline.evaluate.monitor import build_monitor, is_kept, monitor_section
    from pipeline.storage import rundir

    config, data_root, inputs = stores
    base = config.params("train").model_copy(
        update={"epochs": 2, "batch_size": 2, "keep_every": 1, "keep_from": 1, "monitor_dataset": "toys"}
    )
    monitor = build_monitor(base, data_root, "cpu")
    assert monitor is not None and monitor.n_points == 1024 and monitor.c == 0.01
    fit(
        setup(base.model_copy(update={"run": "mon"}), inputs, tmp_path / "mon", "cpu", arch=SMALL),
        monitor=monitor,
    )
    fit(setup(base.model_copy(update={"run": "plain"}), inputs, tmp_path / "plain", "cpu", arch=SMALL))
    rows = rundir.monitor_rows(tmp_path / "mon")
    assert [(r["step"], r["epoch"]) for r in rows] == [(0, 0), (2, 0), (4, 1)]  # step 0, then epoch ends
    assert all(0 <= r["svm_acc"] <= 1 and r["svm_dataset"] == "toys" for r in rows)
    assert rundir.read(tmp_path / "mon").steps_logged == 4
    a = torch.load(tmp_path / "mon" / "ckpt-last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "plain" / "ckpt-last.pt", weights_only=False)["model"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())  # monitoring leaves the training untouched
    kept = sorted(p.name for p in (tmp_path / "mon").glob("ckpt-epoch-*.pt"))
    assert kept == ["ckpt-epoch-001.pt"]
    assert torch.load(tmp_path / "mon" / "ckpt-epoch-001.pt", weights_only=False)["step"] == 4
    best = yaml.safe_load((tmp_path / "mon" / "config.yaml").read_text())["best"]
    top = max(rows[1:], key=lambda r: r["svm_acc"])  # the first of the best after step 0
    assert (best["step"], best["svm_acc"], best["selected_on"]) == (top["step"], top["svm_acc"], "test split")
    assert torch.load(tmp_path / "mon" / "ckpt-best.pt", weights_only=False)["step"] == top["step"]
    section = monitor_section(tmp_path / "mon")
    assert "| 4 | 1 |" in section and "selected on the test split" in section and "monitor.png" in section
    assert (tmp_path / "mon" / "monitor.png").stat().st_size > 0 and not (
        tmp_path / "plain" / "ckpt-best.pt"
    ).exists()
    assert [e for e in range(301) if is_kept(TrainParams(), e)] == [250, 275, 300]  # the official cadence


def test_monitoring_is_off_with_one_line_when_its_dataset_is_not_prepared(stores):
    import logging

    from pipeline.core.params import TrainParams
    from pipeline.evaluate.monitor import build_monitor

    _, data_root, _ = stores
    logger, records = logging.getLogger("i2p"), []
    handler, level = logging.Handler(logging.INFO), logger.level
    handler.emit = records.append  # every record the i2p logger handles, whatever its console set-up
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        assert (
            build_monitor(TrainParams(), data_root, "cpu") is None
        )  # default: modelnet40, not prepared here
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [r.getMessage() for r in records]
    assert (
        len(lines) == 1 and "monitoring off" in lines[0] and "i2p prepare modelnet40 --root PATH" in lines[0]
    )
    assert records[0].levelno == logging.WARNING and "no ckpt-best.pt" in lines[0]  # a warning, with its cost
