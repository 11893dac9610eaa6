"""`i2p reproduce`: the protocol's plan (order, stand-ins, missing releases), the dry run's estimates, the
table's cells under both protocols, and (slow) the whole protocol on generated stand-ins."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.runner.evaluations import Recorded
from pipeline.runner.reproduce import protocol
from pipeline.runner.reproduce_table import PAPER, markdown, row


def cli(data, *args):
    return CliRunner().invoke(app, [*map(str, args), "--data-root", str(data)], catch_exceptions=False)


def test_the_monitor_dataset_is_prepared_before_training_and_every_evaluation_follows(tmp_path):
    steps = protocol({"modelnet40-h5": tmp_path, "shapenet": tmp_path}, "r")
    stages = [s.stage for s in steps]
    assert stages[:3] == ["prepare", "prepare", "train"] and stages.count("finetune") == 4
    train = steps[2]
    assert train.sets["train"] == {"run": "r", "monitor_dataset": "modelnet40"} and train.missing is None
    svm = next(s for s in steps if s.what == "linear SVM, ModelNet40")
    assert svm.missing is None and svm.dataset == "modelnet40"
    obj_bg = next(s for s in steps if s.what == "fine-tuning, ScanObjectNN OBJ-BG")
    assert obj_bg.missing == "no --scanobjectnn root given" and obj_bg.sets["finetune"]["recipe"] == "obj-bg"
    assert set(PAPER) == {s.what for s in steps if s.stage not in ("prepare", "train")}


def test_without_the_pretraining_release_every_evaluation_says_why_it_cannot_run():
    steps = protocol({}, "r")
    assert all(s.missing for s in steps if s.stage != "prepare") and not any(
        s.stage == "prepare" for s in steps
    )
    assert steps[0].missing == "no --shapenet root given"


def test_quick_stands_generated_data_in_for_every_release():
    steps = protocol({}, "r", quick=True)
    assert not any(s.missing for s in steps)
    assert {s.dataset for s in steps} == {"synthetic", "synthetic-parts", "synthetic-fewshot"}
    fewshot = next(s for s in steps if s.stage == "fewshot")
    assert fewshot.dataset == "synthetic-fewshot" and fewshot.sets["prepare"]["test_fraction"] == 0.5
    assert all(s.stand_in for s in steps if s.stage not in ("prepare",))
    assert next(s for s in steps if s.stage == "train").sets["train"]["monitor_dataset"] == "synthetic"


def test_dry_run_prints_every_step_with_time_and_disk_and_runs_nothing(tmp_path):
    out = cli(tmp_path / "data", "reproduce", "--dry-run", "--modelnet40-h5", tmp_path)
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0].startswith("machine: ") and len(lines) == 12 and lines[-1].startswith("total ≈ ")
    assert "prepare  modelnet40" in lines[1] and "12,311 objects" in lines[1] and "GiB" in lines[1]
    assert "not run (no --shapenet root given)" in lines[2]
    assert not (tmp_path / "data").exists()
    both = cli(tmp_path / "data", "reproduce", "--quick", "--shapenet", tmp_path)
    assert both.exit_code == 2 and "--quick" in both.output


def _record(stage, result):
    return Recorded(stage, {"result": result})


def test_the_table_labels_each_protocol_and_says_why_a_cell_is_empty():
    steps = {s.what: s for s in protocol({"shapenet": "x", "modelnet40": "y", "shapenetpart": "z"}, "r")}
    ft = steps["fine-tuning, ModelNet40 (1k points)"]
    r = row(
        ft,
        (
            _record(
                "finetune", {"last_acc": [0.9, 0.92], "best_acc": [0.93, 0.95], "last_vote_acc": [0.91, None]}
            ),
            None,
        ),
        "r",
    )
    assert r.paper == "93.67 / 94.06 voted" and "chosen on the test split" in r.official
    assert r.honest == "91.00 ± 1.41 % (n=2) last epoch, 91.00 % one vote pass"
    official = {
        "last_acc": [0.9],
        "best_acc": [0.93],
        "last_vote_acc": [0.95],
        "best_vote_acc": [0.96],
        "vote_repeats": 49,
    }
    r49 = row(ft, (_record("finetune", official), None), "r")
    assert (
        r49.official.endswith("voted 96.00 % (maximum of 49 passes)") and r49.honest == "90.00 % last epoch"
    )
    assert ft.sets["finetune"]["vote_repeats"] == 49  # the official voting, in the official cell only
    ps = steps["part segmentation, ShapeNetPart"]
    summary = {"last": {"epoch": 3, "instance_miou": 0.8, "class_miou": 0.7}, "max_instance_miou": 0.85,
               "max_class_miou": 0.75, "best_by_instance": {"epoch": 2, "instance_miou": 0.85, "class_miou": 0.7}}  # fmt: skip
    r = row(ps, (_record("partseg", summary), None), "r")
    assert "instance 85.00 %, class 75.00 % (independent maxima" in r.official and "(last epoch)" in r.honest
    svm = steps["linear SVM, ScanObjectNN OBJ-BG"]
    empty = row(svm, None, "r")
    assert empty.official == empty.honest == "not run: no --scanobjectnn root given"
    table = markdown([r, empty], quick=False)
    assert "| metric | paper | ours, official protocol | ours, honest protocol | from |" in table


@pytest.mark.slow
def test_quick_runs_the_whole_protocol_and_fills_every_cell(tmp_path):
    out = cli(tmp_path / "data", "reproduce", "--quick", "--json")
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert len(rows) == len(PAPER) and not any("not run" in r["honest"] for r in rows)
    assert (tmp_path / "data" / "runs" / "reproduce-quick" / "reproduce.md").is_file()
    again = cli(tmp_path / "data", "reproduce", "--quick", "--json")  # everything is up to date
    assert json.loads(again.stdout) == rows
