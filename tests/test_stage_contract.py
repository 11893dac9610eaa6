"""The stage contract end to end through the CLI: `status` agrees with what `run` does, for every stage.

After a stage runs, `status` says "up to date"; with one param changed (by --set or a flag, --weights
included) it names the param and its two values; running the change makes it up to date again. A
dataset keeps what was built for it: later commands without settings use those stores, a moved source
folder changes nothing, an unrelated prepare leaves a run's evaluation alone.
"""

from __future__ import annotations

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from tests.builders import write_folder

BASE = [
    "prepare.source=folder",
    "prepare.points=512",
    "prepare.oversample=1",
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
    "eval.batch_size=4",
    "finetune.epochs=1",
    "finetune.points=512",
    "finetune.batch_size=2",
    "fewshot.folds=1",
    "train.run=default",
]


def cli(data, *args):
    out = CliRunner().invoke(app, [*map(str, args), "--data-root", str(data)], catch_exceptions=False)
    return out


def sets(*extra):
    return [a for s in (*BASE, *extra) for a in ("--set", s)]


def status(data, *args) -> dict[str, str]:
    out = cli(data, "status", "--json", *args)
    assert out.exit_code == 0, out.output
    state = json.loads(out.stdout)
    return {row["stage"]: row["state"] for row in state["datasets"][0]["stages"]}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 6-object folder dataset prepared, rendered, cached, trained one step and evaluated."""
    tmp = tmp_path_factory.mktemp("contract")
    root = write_folder(tmp / "meshes", n_per_class=3, classes=("box", "cone"))
    data = tmp / "data"
    prepared = cli(data, "prepare", "folder", "--root", root, "-d", "toys", *sets())
    assert prepared.exit_code == 0, prepared.output
    done = cli(data, "run", "eval", "-d", "toys", *sets())
    assert done.exit_code == 0, done.output
    return tmp, data, root


def test_after_run_every_built_stage_is_up_to_date(built):
    _, data, _ = built
    rows = status(data, "-d", "toys", *sets())
    assert {s: rows[s] for s in ("prepare", "render", "cache-features", "train", "eval")} == dict.fromkeys(
        ("prepare", "render", "cache-features", "train", "eval"), "up to date"
    )
    assert rows["finetune"] == rows["fewshot"] == "missing"
    plain = status(data)  # no settings at all: the dataset's own stores and last run
    assert all(plain[s] == "up to date" for s in ("prepare", "render", "cache-features", "train", "eval")), (
        plain
    )


CHANGES = [  # (stage, --set, what status names)
    ("prepare", "prepare.points=600", "points 512 → 600"),
    ("render", "render.subset=256", "subset 512 → 256"),
    ("cache-features", "cache-features.normalisation=teacher", "normalisation 'imagenet' → 'teacher'"),
    ("train", "train.mask_ratio=0.7", "mask_ratio 0.8 → 0.7"),
    ("eval", "eval.pooling=mean+max", "pooling 'max' → 'mean+max'"),
]
SLOW_CHANGES = [  # fine-tuning twice takes minutes on 2 cores
    pytest.param("finetune", "finetune.lr=0.001", "lr None → 0.001", marks=pytest.mark.slow, id="finetune"),
]


@pytest.mark.parametrize(
    "stage, change, words", [*CHANGES, *SLOW_CHANGES], ids=[c[0] for c in CHANGES] + ["finetune"]
)
def test_a_changed_param_is_named_then_running_it_is_up_to_date(built, stage, change, words):
    _, data, _ = built
    if stage == "finetune":  # a first fine-tuning to compare with
        assert cli(data, "run", "finetune", "-d", "toys", *sets()).exit_code == 0
    before = status(data, "-d", "toys", *sets(change))
    assert before[stage] == f"changed: {words}", before
    extra = ["train.run=variant"] if stage == "train" else []  # a run never changes under its name
    if stage == "train":
        refused = cli(data, "train", "-d", "toys", *sets(change))
        assert refused.exit_code == 2 and words in refused.output
    out = cli(data, "run", stage, "-d", "toys", *sets(change, *extra))
    assert out.exit_code == 0, out.output
    assert status(data, "-d", "toys", *sets(change, *extra))[stage] == "up to date"
    assert status(data, "-d", "toys", *sets())["render"] == "up to date"  # the old outputs are kept


def test_weights_file_is_part_of_the_features_identity(built, tmp_path):
    import open_clip

    _, data, _ = built
    with torch.random.fork_rng():
        torch.manual_seed(5)
        model = open_clip.create_model("i2p-tiny-random")
    weights = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), weights)
    out = cli(data, "cache-features", "-d", "toys", "--weights", weights, *sets())
    assert out.exit_code == 0, out.output
    again = status(data, "-d", "toys", *sets(f"cache-features.weights={weights}"))
    assert again["cache-features"] == "up to date"  # the sha256 status computes is the one stored
    torch.save({k: v + 1 for k, v in model.state_dict().items()}, weights)  # same path, other bytes
    changed = status(data, "-d", "toys", *sets(f"cache-features.weights={weights}"))["cache-features"]
    assert changed.startswith("changed: weights_sha256"), changed


def test_later_commands_use_what_was_built_and_a_moved_folder_stays_usable(built):
    tmp, data, root = built
    moved = tmp / "meshes-moved"
    shutil.copytree(root, moved)
    shutil.rmtree(root)
    try:
        rows = status(data, "-d", "toys")
        assert rows["prepare"] == "up to date" and rows["train"] == "up to date", rows
        render = cli(data, "render", "-d", "toys")  # no settings: the stores built for toys
        assert render.exit_code == 0 and "up to date" in render.output, render.output
        taken = cli(data, "prepare", "folder", "--root", moved, "-d", "toys", *sets())
        assert taken.exit_code == 2 and "already bound" in taken.output and "--dataset" in taken.output
    finally:
        shutil.copytree(moved, root)


def test_an_unrelated_prepare_changes_no_evaluation_of_the_run(built):
    tmp, data, root = built
    first = cli(data, "eval", "svm", "-d", "toys")
    assert first.exit_code == 0, first.output
    other = cli(data, "prepare", "folder", "--root", root, "-d", "other", *sets("prepare.points=700"))
    assert other.exit_code == 0, other.output
    again = cli(data, "eval", "svm", "--run", "default")  # two datasets now: the run names its own
    assert again.exit_code == 0, again.output
    assert again.stdout == first.stdout and "up to date" in again.output
    report = (data / "runs" / "default" / "report.md").read_text().splitlines()
    assert "Random teacher" in "\n".join(report[:4]) and "tiny-random" in "\n".join(report[:4])
    assert "## Provenance" in report and any(r.startswith("| stores |") for r in report)


def test_an_encoder_and_its_random_init_baseline_share_one_bn_protocol_named_beside_each_number(built):
    _, data, _ = built
    run = data / "runs" / "default"
    default = cli(data, "run", "eval", "-d", "toys", *sets())
    assert default.exit_code == 0 and "bn_stats=running)" in default.stdout, default.output
    assert "random init: running BN statistics stale: 0 steps since init; var ratio" in default.stdout
    assert "pre-trained: running BN statistics stale: " in default.stdout  # one training step
    changed = status(data, "-d", "toys", *sets("eval.bn_stats=reestimate"))["eval"]
    assert changed.startswith("changed: bn_stats None → 'reestimate'"), (
        changed
    )  # the default hashes as before
    out = cli(data, "run", "eval", "-d", "toys", *sets("eval.bn_stats=reestimate"))
    assert (
        out.exit_code == 0
        and "bn_stats=reestimate (train split, " in out.stdout
        and "stale" not in out.stdout
    )
    records = [json.loads(p.read_text()) for p in (run / "evals").glob("svm-toys-*.json")]
    by = {r["params"].get("bn_stats", "running"): r["result"] for r in records}
    for protocol, result in by.items():  # the baseline always under the pre-trained encoder's protocol
        assert (
            result["bn_stats"] == result["bn"]["bn_stats"] == result["random_init_bn"]["bn_stats"] == protocol
        )
    assert by["reestimate"]["bn"]["objects"] == by["reestimate"]["random_init_bn"]["objects"] > 0
    assert by["running"]["random_init_bn"]["updates"] == 0 and by["running"]["random_init_bn"]["stale"]
    assert by["reestimate"]["random_init_bn"]["note"] is None
    report = (run / "report.md").read_text()
    assert "| encoder | linear-SVM test accuracy | BatchNorm statistics |" in report
    assert (
        "both with reestimate BatchNorm statistics" in report
        and "both with running BatchNorm statistics" in report
    )
    assert status(data, "-d", "toys", *sets())["eval"] == "up to date"


def test_gc_lists_what_nothing_uses_and_removes_it_only_when_asked(built):
    _, data, _ = built
    assert cli(data, "render", "-d", "toys", *sets("render.subset=128")).exit_code == 0
    assert cli(data, "render", "-d", "toys", *sets()).exit_code == 0  # the dataset's current views again
    old = next(p for p in (data / "views").glob("toys-*.zarr") if "subset': 128" in str(_params(p)))
    listed = cli(data, "gc")
    assert listed.exit_code == 0 and f"views/{old.name}" in listed.stdout and "--yes" in listed.stdout
    assert old.exists()  # listing removes nothing
    ckpt = data / "runs" / "default" / "ckpt-last.pt"
    before = ckpt.read_bytes()
    assert "optimizer state" not in listed.stdout  # a run stopped at --max-steps may be extended exactly
    removed = cli(data, "gc", "--yes")
    assert removed.exit_code == 0 and "freed" in removed.stdout
    assert not old.exists() and ckpt.read_bytes() == before
    rows = status(data, "-d", "toys", *sets())
    assert rows["render"] == rows["train"] == rows["eval"] == "up to date"  # nothing in use was touched
    assert cli(data, "gc").stdout.strip() == "nothing to collect"


def _params(store):
    import zarr

    return dict(zarr.open_group(str(store), mode="r").attrs["params"])


def test_gc_strips_the_optimizer_state_of_a_run_at_its_last_epoch_only(tmp_path):
    from pipeline.runner import gc
    from pipeline.storage import rundir

    data = tmp_path / "data"
    for name, done_epoch in (("finished", 2), ("stopped", 1)):
        run = rundir.run_dir(data, name)
        rundir.write_config(run, {"identity": "f" * 64, "params": {"epochs": 2}, "stores": {}})
        torch.save(
            {"model": {"w": torch.zeros(4)}, "optimizer": {"state": {0: torch.zeros(10_000)}}},
            rundir.checkpoint(run),
        )
        rundir.mark_complete(run, done_epoch, 10)
    listed = {g.path.parent.name: g.kind for g in gc.collect(data)}
    assert listed == {"finished": "optimizer state"}  # "stopped" ended at --max-steps: it may go on
    gc.remove(gc.collect(data))
    assert (
        torch.load(rundir.checkpoint(rundir.run_dir(data, "finished")), weights_only=False)["optimizer"]
        is None
    )
    assert gc.collect(data) == []


PARTSEG = ["prepare.synthetic_per_class=3", "partseg.epochs=1", "partseg.points=512", "partseg.batch_size=2"]


def test_partseg_of_a_run_is_a_tracked_stage_with_both_mious_and_a_picture(built):
    """`i2p partseg --run NAME --max-steps 2` on the generated synthetic-parts (prepared on first use):
    both mIoUs printed and recorded, up to date when rerun, listed by status, drawn by show --partseg."""
    _, data, _ = built
    args = ["partseg", "--run", "default", "--max-steps", "2", *[a for s in PARTSEG for a in ("--set", s)]]
    out = cli(data, *args)
    assert out.exit_code == 0, out.output
    assert "part segmentation on synthetic-parts (run default)" in out.stdout
    assert "instance mIoU" in out.stdout and "class mIoU" in out.stdout and "independent maxima" in out.stdout
    (record,) = (data / "runs" / "default" / "evals").glob("partseg-synthetic-parts-*.json")
    result = json.loads(record.read_text())["result"]
    assert result["steps"] == 2 and 0.0 <= result["last"]["instance_miou"] <= 1.0
    assert set(result) >= {"last", "best_by_instance", "max_instance_miou", "max_class_miou"}
    again = cli(data, *args)
    assert again.exit_code == 0 and "up to date" in again.output and again.stdout == out.stdout
    state = json.loads(cli(data, "status", "--json").stdout)
    kinds = {(e["kind"], e["dataset"]) for r in state["runs"] for e in r["evaluations"]}
    assert ("partseg", "synthetic-parts") in kinds
    assert "partseg" in {row["stage"] for row in state["datasets"][0]["stages"]}
    report = (data / "runs" / "default" / "report.md").read_text()
    section = report[report.index("## Part segmentation on synthetic-parts") :]
    assert "**last epoch** (no selection)" in section and "selected on the test split" in section
    picture = cli(data, "show", "0", "--run", "default", "--partseg")
    assert picture.exit_code == 0, picture.output
    (png,) = (data / "show").glob("synthetic-parts-test-*-partseg-run-default.png")
    assert str(png) in picture.stdout
    sidecar = json.loads(png.with_suffix(".json").read_text())
    assert png.stat().st_size > 10_000 and sidecar["split"] == "test" and 0 <= sidecar["shape_iou"] <= 1
