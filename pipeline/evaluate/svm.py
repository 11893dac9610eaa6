"""The eval stage: linear SVM (method §3.4, §9.3) of a run's encoder and of the same architecture at random
initialisation, on the points store the runner chose (the run's own for its dataset), into the run's
report.md and ``evals/svm-<dataset>-<fp8>.json``. Both encoders are measured with the same params, so
under the same BatchNorm protocol (``eval.bn_stats``, :mod:`pipeline.evaluate.bnstats`); the record keeps
each one's protocol (``bn``, ``random_init_bn``) and staleness note.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.evaluate.monitor import monitor_section
from pipeline.evaluate.reports import append_report, pct
from pipeline.storage import rundir
from pipeline.storage.contract import Context, Plan
from pipeline.storage.provenance import start_report

log = logging.getLogger("i2p")


def eval_record(plan: Plan, kind: str, result: dict[str, Any]) -> dict[str, Any]:
    """The payload of an evaluation's JSON file: identity, params, the stores it used, the result."""
    return {
        "stage": plan.stage,
        "kind": kind,
        "fingerprint": plan.fingerprint,
        "params": plan.params.fingerprint_params(),
        "upstream": {s: p.fingerprint for s, p in plan.needs.items()},
        "run": plan.needs["train"].params.run,
        "dataset": plan.dataset,
        "points_store": str(plan.needs["prepare"].out),
        "result": result,
    }


def locked(body: Callable[[Plan, Context], Path]) -> Callable[[Plan, Context], Path]:
    """An evaluation stage's body run under its output's lock (:func:`pipeline.storage.rundir.evaluation_lock`)."""

    @functools.wraps(body)
    def run(plan: Plan, ctx: Context) -> Path:
        with rundir.evaluation_lock(plan.out):
            return body(plan, ctx)

    return run


@locked
def run(plan: Plan, ctx: Context) -> Path:
    """The eval stage's body: linear SVM of the planned run's encoder and of a random initialisation."""
    from pipeline.core.devices import resolve_device
    from pipeline.evaluate import extract as ev
    from pipeline.evaluate.encoders import resolve_encoder

    params, run = plan.params, plan.needs["train"].out
    store = ev.points_store(plan.needs["prepare"].out)
    device = resolve_device(params.device)
    report = start_report(run)
    results = {}
    for label, random_init in (("pre-trained", False), ("random initialisation", True)):
        encoder = resolve_encoder(
            ctx.data_root, None, rundir.checkpoint(run), random_init=random_init, seed=0
        )
        results[label] = ev.run_svm(encoder, store, params, device, report)
    a, b = results["pre-trained"].accuracy, results["random initialisation"].accuracy
    bn_a, bn_b = results["pre-trained"].bn, results["random initialisation"].bn
    verdict = "beats" if a > b else ("ties with" if a == b else "does NOT beat")
    name = run.name
    append_report(
        report,
        "\n".join(
            [
                f"## Summary: pre-trained vs random initialisation on {store.name}",
                "",
                "| encoder | linear-SVM test accuracy | BatchNorm statistics |",
                "|---|---|---|",
                f"| pre-trained (run {name}) | {pct(a)} | {_cell(bn_a)} |",
                f"| same architecture, random initialisation (seed 0) | {pct(b)} | {_cell(bn_b)} |",
                "",
                f"Pre-training {verdict} random initialisation here ({pct(a)} vs {pct(b)}, one SVM fit each, both with "
                f"{params.bn_stats} BatchNorm statistics, no choice made on the test split).",
                "",
            ]
        ),
    )
    section = monitor_section(run)  # the SVM accuracy during pre-training (train.monitor_*), if monitored
    if section:
        append_report(report, section)
    out = results["pre-trained"]
    rundir.write_eval(
        plan.out,
        eval_record(
            plan,
            "svm",
            {
                "accuracy": a,
                "random_init_accuracy": b,
                "svm_c": out.c,
                "points": out.n_points,
                "train_point_order": "shuffled" if out.train_shuffled else "stored",
                "bn_stats": params.bn_stats,
                "bn": bn_a.record(),
                "random_init_bn": bn_b.record(),
            },
        ),
    )
    log.info(
        "linear SVM on %s: pre-trained %s, random init %s, %s (report %s)",
        store.name,
        pct(a),
        pct(b),
        bn_a.text(),
        report,
    )
    return plan.out


def _cell(bn: Any) -> str:
    """A BNProtocol in one table cell: its name, and its staleness note in bold."""
    note = bn.note()
    return bn.text() + (f"; **{note}**" if note else "")
