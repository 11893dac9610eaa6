"""`i2p show`: pictures of an object's views and saliency, and of what a run does with it (panels, names)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import math

import pytest
import zarr
from typer.testing import CliRunner

from cli import app
from pipeline.runner.execute import run as run_plan
from pipeline.runner.plan import Context, plan
from pipeline.storage import rundir
from pipeline.train.engine import fit
from pipeline.train.setup import setup
from pipeline.train.stage import run_config, train_inputs
from tests.builders import toy_config

SETS = [
    "prepare.source=folder",
    "prepare.points=512",
    "prepare.oversample=2",
    "prepare.chunk=4",
    "render.subset=512",
    "render.chunk=4",
    "cache-features.teacher=tiny-random",
    "cache-features.chunk=4",
    "cache-features.num_workers=0",
    "train.points=512",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.warmup_epochs=0",
    "train.max_steps=1",
    "train.run=tiny",
]
ARCH = {"num_groups": (64, 32, 16)}  # the paper's layers on fewer groups: 16 top-scale tokens, 4 kept


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Points, views and tiny-random features stores of 4 + 2 objects, and a one-step run "tiny"."""
    tmp = tmp_path_factory.mktemp("show")
    config, data = toy_config(tmp, SETS), tmp / "data"
    ctx = Context(config, data, "toys")
    p = plan("train", ctx)
    for need in p.needs.values():
        run_plan(need, ctx)
    inputs = train_inputs(p)
    rundir.write_config(
        p.out, run_config(p, inputs)
    )  # what `i2p train` writes, then its loop on fewer groups
    fit(setup(p.params, inputs, p.out, "cpu", arch=ARCH))
    done = {s: q.out for s, q in p.needs.items()}
    sets = [a for s in [*SETS, f"prepare.root={config.params('prepare').root}"] for a in ("--set", s)]
    points = zarr.open_group(str(done["prepare"]), mode="r")
    return data, sets, {s: [str(i) for i in points[f"{s}/id"][:]] for s in ("train", "test")}


def show(data, *args):
    return CliRunner().invoke(
        app, ["show", *map(str, args), "--data-root", str(data)], catch_exceptions=False
    )


def test_picture_names_teacher_has_colour_bars_and_one_file_per_split(built):
    data, sets, ids = built
    written = []
    for split in ("train", "test"):
        result = show(data, "0", "--split", split, "--dataset", "toys", *sets)
        assert result.exit_code == 0, result.output
        ident = ids[split][0].replace("/", "_")
        png = data / "show" / f"toys-{split}-{ident}-tiny-random.png"  # dataset, split, object, teacher
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        written.append(png)
        panels = json.loads(png.with_suffix(".json").read_text())
        assert "teacher tiny-random — RANDOM weights" in panels["title"] and ids[split][0] in panels["title"]
        assert len(panels["panels"]) == 6 and sum("saliency" in t for t in panels["panels"]) == 3
        assert panels["colorbars"] == [
            "depth image (sigmoid of summed depth)",
            "teacher saliency (CLS→patch attention)",
        ]
    assert written[0] != written[1]  # row 0 of train and of test no longer overwrite each other


def test_an_object_of_another_split_names_that_split(built):
    data, sets, ids = built
    result = show(data, ids["test"][1], "--dataset", "toys", *sets)
    assert result.exit_code == 2
    assert "it is in the test split" in result.output and "--split test" in result.output
    typo = show(data, "box/box_train9", "--dataset", "toys", *sets)
    assert typo.exit_code == 2 and "similar ids: box/box_train" in typo.output


def test_run_picture_shows_mask_tokens_and_reconstruction(built):
    data, _, ids = built
    result = show(data, ids["train"][1], "--run", "tiny")
    assert result.exit_code == 0, result.output
    png = data / "show" / f"toys-train-{ids['train'][1].replace('/', '_')}-tiny-random-run-tiny.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads(png.with_suffix(".json").read_text())
    titles = record["panels"]
    assert len(titles) == 6
    assert all("2D-guided mask, 4 of 16 tokens kept" in t for t in titles[:3])  # int(0.8·16) = 12 masked
    assert titles[3].startswith("encoder input: ") and "scale-1 tokens kept" in titles[3]
    assert titles[4] == "ground truth of the masked patches" and titles[5].startswith(
        "reconstruction (Chamfer-L2"
    )
    assert record["colorbars"] == ["teacher saliency (CLS→patch attention)"]
    assert "run tiny (step 1)" in record["title"] and "RANDOM weights" in record["title"]
    assert record["visible_top_tokens"] == 4 and record["masked_rec_tokens"] > 0
    assert math.isfinite(record["loss_3d"]) and record["loss_3d"] > 0 and math.isfinite(record["loss_2d"])
    again = show(data, ids["train"][1], "--run", "tiny")  # same seed: the same mask and numbers
    assert json.loads(png.with_suffix(".json").read_text())["loss_3d"] == record["loss_3d"]
    assert again.exit_code == 0


def test_run_picture_of_an_unknown_run_lists_the_runs(built):
    data, _, ids = built
    result = show(data, ids["train"][0], "--run", "nope")
    assert result.exit_code == 2 and "runs: tiny" in result.output
