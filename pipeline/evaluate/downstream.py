"""The finetune, fewshot and partseg stages: a planned run's encoder → :mod:`pipeline.evaluate.finetuning` → report.md and
``evals/<kind>-<dataset>-<fp8>.json``. Their params come from stages.yaml (``finetune:``, ``fewshot:``),
``--set`` and the command's flags, like every stage's.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.evaluate.svm import eval_record, locked
from pipeline.storage import rundir
from pipeline.storage.contract import Context, Plan
from pipeline.storage.provenance import start_report


@locked
def run_finetune(plan: Plan, ctx: Context) -> Path:
    """The finetune stage's body: fine-tune the planned run's encoder (seeds 0..N-1), record the result."""
    from pipeline.evaluate import extract as ev
    from pipeline.evaluate.finetuning import run_finetune

    params, run = plan.params, plan.needs["train"].out
    store = ev.points_store(plan.needs["prepare"].out)
    out = run_finetune(ctx.data_root, rundir.checkpoint(run), store, params, report=start_report(run))
    result = {
        "last_acc": [r.last_acc for r in out.results],
        "best_acc": [r.best_acc for r in out.results],
        "last_vote_acc": [r.last_vote_acc for r in out.results],
        "best_vote_acc": [r.best_vote_acc for r in out.results],
        "vote_repeats": params.vote_repeats,  # 1: one pass; more: the voted numbers are their maximum
    }
    rundir.write_eval(plan.out, eval_record(plan, "finetune", result))
    return plan.out


@locked
def run_fewshot(plan: Plan, ctx: Context) -> Path:
    """The fewshot stage's body: way × shot × folds episodes on the planned run's encoder."""
    from pipeline.evaluate import extract as ev
    from pipeline.evaluate.fewshot import run_fewshot

    params, run = plan.params, plan.needs["train"].out
    store = ev.points_store(plan.needs["prepare"].out)
    settings, _ = run_fewshot(ctx.data_root, rundir.checkpoint(run), store, params, report=start_report(run))
    result = {f"{w}-way {s}-shot": [r.last_acc for r in results] for w, s, results in settings}
    rundir.write_eval(plan.out, eval_record(plan, "fewshot", result))
    return plan.out


@locked
def run_partseg(plan: Plan, ctx: Context) -> Path:
    """The partseg stage's body: part segmentation with the planned run's encoder on the dataset's store."""
    from pipeline.evaluate.partseg import run_partseg

    params, run = plan.params, plan.needs["train"].out
    out = run_partseg(
        ctx.data_root, rundir.checkpoint(run), plan.needs["prepare"].out, params, report=start_report(run)
    )
    result = out.result.summary()
    rundir.write_eval(plan.out, eval_record(plan, "partseg", result))
    return plan.out
