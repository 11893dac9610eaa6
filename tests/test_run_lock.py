"""Two writers of one run (docs/pipeline.md, "Resume, locks, atomic writes"): a process training a run holds
``runs/<run>/.lock``; a second one stops at once naming the first's pid and touches nothing, and two
evaluations appending to one report.md take turns instead of losing a section."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from pipeline.core.errors import LockError
from pipeline.evaluate.reports import append_report
from pipeline.runner.execute import run as run_plan
from pipeline.runner.plan import Context, plan
from pipeline.storage import rundir
from tests.builders import TRAIN_SETS, toy_config

HOLD = """
import sys, time
from pathlib import Path
from pipeline.storage import rundir
lock = rundir.evaluation_lock if len(sys.argv) > 2 else rundir.training_lock
with lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_process_training_the_same_run_stops_at_once_and_changes_nothing(tmp_path):
    config = toy_config(
        tmp_path, [*TRAIN_SETS, "train.masking=random", "train.targets=3d", "train.max_steps=1"]
    )
    ctx = Context(config, tmp_path / "data", "toys")
    p = plan("train", ctx)
    for need in p.needs.values():
        run_plan(need, ctx)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(p.out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(x.name for x in p.out.iterdir())
        with pytest.raises(LockError) as err:
            run_plan(p, ctx)
        assert f"another process (pid {holder.pid}) is training run {p.out.name}" in err.value.message
        assert sorted(x.name for x in p.out.iterdir()) == before  # no config.yaml, metrics or checkpoint
    finally:
        holder.kill()
        holder.wait()
    run_plan(p, ctx)  # the lock went with its process: the run trains
    assert rundir.read(p.out).has_checkpoint
    # the same evaluation of the run in a second process stops at once too (others run side by side)
    e = plan("eval", ctx)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(e.out), "eval"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockError) as err:
            run_plan(e, ctx)
        assert (
            f"another process (pid {holder.pid}) is running this evaluation ({e.out.stem})"
            in err.value.message
        )
        assert not e.out.exists()
    finally:
        holder.kill()
        holder.wait()


def test_evaluations_appending_to_one_report_take_turns(tmp_path):
    report = tmp_path / "runs" / "r" / "report.md"
    sections = [f"## section {i}\n\nbody {i}" for i in range(40)]
    threads = [threading.Thread(target=append_report, args=(report, s)) for s in sections]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = report.read_text()
    assert all(s in text for s in sections)  # none lost to a read-modify-write race
