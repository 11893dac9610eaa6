"""One feature protocol per comparison: BatchNorm statistics running (the paper's) or re-estimated on train.

Re-estimation is checked against statistics computed by hand from the same inputs; both protocols leave
the model as found; the SVM, embed and the monitor record the protocol, name it beside each number and
warn when running statistics are stale (an encoder at initialisation) but not after re-estimation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from cli import app
from i2pmae.batchnorm import bn_updates, encoder_batchnorms, reestimate_batchnorm
from i2pmae.model import I2PMAE
from pipeline.core.params import EvalParams
from pipeline.evaluate.bnstats import protocol_applied
from pipeline.evaluate.extract import points_store

STALE = "running BN statistics stale: 0 steps since init; var ratio "


def cli(root, *args):
    return CliRunner().invoke(app, [*map(str, args), "--data-root", str(root)], catch_exceptions=False)


def blobs(root):
    return points_store(next((root / "points").glob("blobs-*.zarr")))


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(model, before) -> bool:
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_reestimation_keeps_the_weights_and_gives_the_cumulative_statistics_of_the_inputs(
    tiny_encoder, blob_clouds
):
    torch.manual_seed(0)
    model = I2PMAE(tiny_encoder).eval()
    points = blob_clouds(6)  # (O=6, P=64, 3)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    layers = encoder_batchnorms(model)
    seen: dict[int, list] = {id(m): [] for m in layers}
    hooks = [
        m.register_forward_pre_hook(lambda m, a: seen[id(m)].append(a[0].detach().clone())) for m in layers
    ]
    assert reestimate_batchnorm(model, points, n_points=48, selection="first", batch_size=4) == 6
    for h in hooks:
        h.remove()
    assert all(torch.equal(v, weights[k]) for k, v in model.named_parameters())  # no weight moves
    assert not any(m.training for m in model.modules()) and all(m.momentum == 0.1 for m in layers)
    assert len(layers) == 6 and bn_updates(model) == 2  # two batches: 4 + 2 objects
    for m in layers:  # each layer: the mean over batches of its input's batch mean and unbiased variance
        xs = seen[id(m)]
        assert len(xs) == 2
        assert torch.allclose(m.running_mean, torch.stack([x.mean(0) for x in xs]).mean(0), atol=1e-6)
        assert torch.allclose(
            m.running_var, torch.stack([x.var(0) for x in xs]).mean(0), rtol=1e-5, atol=1e-7
        )
    # the first layer from scratch: the scale-0 neighbourhoods of the first 48 points through the first conv
    conv, norm = model.h_encoder.token_embed[0].first_conv[:2]
    means, variances = [], []
    for batch in (points[:4], points[4:]):
        groups = model.group(torch.from_numpy(batch[:, :48]))
        x = F.linear(groups.neighborhoods[0].reshape(-1, 3), conv.weight[:, :, 0], conv.bias)  # (B·G·K, C)
        means.append(x.mean(0))
        variances.append(x.var(0, unbiased=True))
    assert torch.allclose(norm.running_mean, sum(means) / 2, atol=1e-6)
    assert torch.allclose(norm.running_var, sum(variances) / 2, rtol=1e-5)


def test_both_protocols_leave_the_model_as_found_and_only_stale_running_statistics_are_flagged(
    tiny_eval_root, tiny_encoder
):
    train = blobs(tiny_eval_root).split("train")
    torch.manual_seed(0)
    model = I2PMAE(tiny_encoder)
    before = state(model)
    kw = dict(n_points=64, selection="first", batch_size=8, device="cpu")
    with protocol_applied(model, train, "running", **kw) as running:
        assert same(model, before)
    assert (running.updates, running.objects, running.split, running.stale) == (0, 24, None, True)
    assert running.var_ratio > 2 and running.note().startswith(STALE)
    assert running.note().endswith(f"{running.var_ratio:.3g}×; try bn_stats=reestimate")
    with protocol_applied(model, train, "reestimate", **kw) as fresh:
        assert not same(model, before) and bn_updates(model) == 3  # 24 objects in batches of 8
    assert same(model, before)  # buffers back bit for bit: nothing re-estimated reaches a checkpoint
    assert (fresh.bn_stats, fresh.split, fresh.objects, fresh.note()) == ("reestimate", "train", 24, None)
    assert fresh.text() == "bn_stats=reestimate (train split, 24 objects)"
    # statistics that describe the data and saw many updates are not flagged under running
    reestimate_batchnorm(model, train.points, n_points=64, batch_size=8)
    for m in encoder_batchnorms(model):
        m.num_batches_tracked.fill_(1000)
    with protocol_applied(model, train, "running", **kw) as trained:
        pass
    assert 0.5 < trained.var_ratio < 2 and not trained.stale and trained.note() is None


def test_the_default_protocol_keeps_the_eval_fingerprint_and_reestimate_changes_it():
    assert EvalParams().fingerprint_params() == {"svm_c": None, "points": None, "pooling": "max"}  # as before
    assert EvalParams(bn_stats="reestimate").fingerprint_params()["bn_stats"] == "reestimate"


def test_svm_and_embed_name_the_protocol_and_warn_about_stale_statistics_only_under_running(
    tiny_eval_root, tmp_path
):
    root, report = tiny_eval_root, tmp_path / "report.md"
    common = ["-d", "blobs", "--c", "0.5", "--report", report]
    lines = {}
    for protocol in ("running", "reestimate"):
        for who in ("pre-trained", "random init"):
            extra = ["--random-init", "--seed", "0"] if who == "random init" else []
            out = cli(root, "eval", "svm", "--run", "fresh", "--bn-stats", protocol, *common, *extra)
            assert out.exit_code == 0, out.output
            lines[protocol, who] = out.stdout
    for who in ("pre-trained", "random init"):  # both encoders at 0 updates: the same verdict for each
        assert "bn_stats=running, " in lines["running", who] and STALE in lines["running", who]
        assert "bn_stats=reestimate (train split, 24 objects), " in lines["reestimate", who]
        assert "stale" not in lines["reestimate", who]
    text = report.read_text()
    assert text.count("| BatchNorm statistics | bn_stats=running: the checkpoint's running statistics") == 2
    assert text.count("| BatchNorm statistics | bn_stats=reestimate (train split, 24 objects): reset") == 2
    assert (
        text.count(f"**, bn_stats=running; **{STALE}") == 2
        and "reestimate (train split, 24 objects); **" not in text
    )
    out = cli(
        root,
        "embed",
        "--run",
        "fresh",
        "-d",
        "blobs",
        "--split",
        "test",
        "--out",
        tmp_path / "e.npy",
        "--bn-stats",
        "reestimate",
    )
    assert out.exit_code == 0 and "bn_stats=reestimate (train split, 24 objects))" in out.stdout, out.output
    rows = np.load(tmp_path / "e.npy")
    import csv

    import zarr

    index = list(csv.DictReader((tmp_path / "e.index.csv").open()))  # which object each row is
    test = zarr.open_group(str(next((root / "points").glob("blobs-*.zarr"))), mode="r")["test"]
    assert [r["row"] for r in index] == [str(i) for i in range(len(rows))]
    assert [r["id"] for r in index] == [str(x) for x in test["id"][:]]
    assert [int(r["label"]) for r in index] == test["label"][:].tolist()
    out = cli(root, "embed", "--run", "fresh", "-d", "blobs", "--split", "test", "--out", tmp_path / "r.npy")
    assert out.exit_code == 0 and "bn_stats=running)" in out.stdout and STALE in out.stdout, out.output
    assert not np.allclose(rows, np.load(tmp_path / "r.npy"))  # the two protocols are different features
    bad = cli(root, "eval", "svm", "--run", "fresh", "-d", "blobs", "--set", "eval.bn_stats=reestimated")
    assert bad.exit_code == 2 and "did you mean reestimate?" in bad.output


def test_the_monitor_measures_step_0_under_its_protocol_and_leaves_the_training_model_alone(
    tiny_eval_root, tiny_encoder
):
    from pipeline.evaluate.monitor import Monitor

    torch.manual_seed(0)
    model = I2PMAE(tiny_encoder).train()
    before = state(model)
    notes = {}
    for protocol in ("running", "reestimate"):
        monitor = Monitor(blobs(tiny_eval_root), 64, "first", 0.5, 1, None, "cpu", protocol)
        acc, bn = monitor.accuracy(model)
        assert 0 <= acc <= 1 and bn.bn_stats == protocol
        notes[protocol] = bn.note()
        assert same(model, before) and model.training and all(m.training for m in model.modules())
    assert notes["running"].startswith(STALE) and notes["reestimate"] is None
