"""The finetune and fewshot stages: a planned run's encoder → :mod:`pipeline.evaluate.finetuning` → report.md and
``evals/<kind>-<dataset>-<fp8>.json``. Their params come from stages.yaml (``finetune:``, ``fewshot:``),
``--set`` and the command's flags, like every stage's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.evaluate.svm import eval_record
from pipeline.storage import rundir
from pipeline.storage.contract import Context, Plan
from pipeline.storage.provenance import start_report


def finetune_overrides(params: Any) -> dict[str, Any]:
    """The FinetuneConfig fields a stage's params set (None keeps the recipe's value). Raises ConfigError
    for ``precision=bf16`` on a device other than CUDA."""
    import dataclasses

    from i2pmae.finetune import FinetuneConfig
    from pipeline.core.devices import check_training_precision, resolve_device

    check_training_precision(params.precision, resolve_device(params.device), params.STAGE)
    keys = {f.name for f in dataclasses.fields(FinetuneConfig)} - {"seed"}
    return {k: v for k, v in params.model_dump().items() if k in keys and v is not None}


def run_finetune(plan: Plan, ctx: Context) -> Path:
    """The finetune stage's body: fine-tune the planned run's encoder (seeds 0..N-1), record the result."""
    from pipeline.core.devices import resolve_device
    from pipeline.evaluate import extract as ev
    from pipeline.evaluate.finetuning import run_finetune

    params, run = plan.params, plan.needs["train"].out
    store = ev.points_store(plan.needs["prepare"].out)
    out = run_finetune(
        ctx.data_root,
        None,
        rundir.checkpoint(run),
        store,
        recipe=params.recipe,
        seeds=list(range(params.seeds)),
        device=resolve_device(params.device),
        report=start_report(run),
        **finetune_overrides(params),
    )
    result = {
        "last_acc": [r.last_acc for r in out.results],
        "best_acc": [r.best_acc for r in out.results],
        "last_vote_acc": [r.last_vote_acc for r in out.results],
    }
    rundir.write_eval(plan.out, eval_record(plan, "finetune", result))
    return plan.out


def run_fewshot(plan: Plan, ctx: Context) -> Path:
    """The fewshot stage's body: way × shot × folds episodes on the planned run's encoder."""
    from pipeline.core.devices import resolve_device
    from pipeline.evaluate import extract as ev
    from pipeline.evaluate.fewshot import run_fewshot

    params, run = plan.params, plan.needs["train"].out
    store = ev.points_store(plan.needs["prepare"].out)
    settings, _ = run_fewshot(
        ctx.data_root,
        None,
        rundir.checkpoint(run),
        store,
        episodes=None,
        ways=list(params.way),
        shots=list(params.shot),
        folds=params.folds,
        seed=params.seed,
        device=resolve_device(params.device),
        report=start_report(run),
        **finetune_overrides(params),
    )
    result = {f"{w}-way {s}-shot": [r.last_acc for r in results] for w, s, results in settings}
    rundir.write_eval(plan.out, eval_record(plan, "fewshot", result))
    return plan.out
