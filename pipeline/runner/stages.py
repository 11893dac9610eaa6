"""The stage contract, in one explicit table.

Every stage is one :class:`Stage` record:

* ``params``: its frozen, validated params model (:mod:`pipeline.core.params`, defaults in stages.yaml);
* ``needs(params)``: the stages whose outputs it reads (train needs views and features only when its
  masking or targets use them);
* ``identity(params)``: what defines its output, a dict hashed into its fingerprint together with the
  upstream fingerprints. Computed from params and upstream identities only, never by rescanning
  a source folder, so a dataset whose folder moved keeps its stores;
* ``out(data_root, dataset, fp, params, needs)``: where the output lives (evaluations: in the directory of
  the run they evaluate, ``needs["train"]``);
* ``run(plan, ctx)``: brings the output of a :class:`pipeline.runner.plan.Plan` up to date (heavy modules are
  imported inside, so planning and ``i2p status`` stay cheap).

The runner (:mod:`pipeline.runner.plan`) plans by walking ``needs`` depth-first, as ``dvc repro`` does, and uses
the same plan to run, to skip and to report. Nothing registers itself at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core import params as P
from pipeline.storage import rundir
from pipeline.storage.store import store_path

Plan = Context = Any  # pipeline.runner.plan's Plan and Context (the runner imports this table, not the reverse)


@dataclass(frozen=True)
class Stage:
    name: str
    params: type[P.StageParams]
    needs: Callable[[Any], tuple[str, ...]]
    identity: Callable[[Any], dict[str, Any]]
    out: Callable[[Path, str, str, Any, dict[str, Any]], Path]
    run: Callable[[Plan, Context], Path]
    kind: str  # "store" | "run" | "eval": how its output is inspected


# ---- identities ----------------------------------------------------------------------------------


def plain_identity(params: P.StageParams) -> dict[str, Any]:
    """The params that define the output (runtime ones removed)."""
    return params.fingerprint_params()


def features_identity(params: P.FeaturesParams) -> dict[str, Any]:
    """Teacher, weights (path and the sha256 of their bytes; for a teacher whose weights ship with the
    package, such as tiny-synthetic, the shipped file's sha256), normalisation and the precision that
    will be used (``auto``: fp16 where an NVIDIA driver is present, else fp32; method §6)."""
    from pipeline.core.devices import resolve_precision
    from pipeline.features.teacher_weights import weights_sha256
    from pipeline.features.tiny_teachers import packaged_weights

    values = params.fingerprint_params()
    values["precision"] = resolve_precision(params.precision, params.device)
    shipped = packaged_weights(params.teacher)
    if params.weights:
        values["weights_sha256"] = weights_sha256(params.weights)
    elif shipped is not None and shipped.is_file():  # regenerated weights make a new store
        values["weights_sha256"] = weights_sha256(str(shipped))
    return values


def train_needs(params: P.TrainParams) -> tuple[str, ...]:
    """Views and cached features for 2D-guided masking or 2D targets, unless the teacher runs online
    (the official step projects each step's input itself: points alone)."""
    uses_maps = params.masking == "2d-guided" or params.targets == "3d+2d"
    if not uses_maps or params.online_teacher:
        return ("prepare",)
    return ("prepare", "render", "cache-features")


# ---- outputs -------------------------------------------------------------------------------------


def _store(stage: str) -> Callable[..., Path]:
    return lambda data_root, dataset, fp, params, needs: store_path(data_root, stage, dataset, fp)


def _features_out(data_root: Path, dataset: str, fp: str, params: P.FeaturesParams, needs: dict) -> Path:
    from pipeline.features.teachers import teacher_slug

    return store_path(data_root, "cache-features", dataset, fp, teacher_slug(params.teacher))


def _run_out(data_root: Path, dataset: str, fp: str, params: P.TrainParams, needs: dict) -> Path:
    return rundir.run_dir(data_root, params.run)


def _eval_out(kind: str) -> Callable[..., Path]:
    """``runs/<run>/evals/<kind>-<dataset>-<fp8>.json``, in the directory of the evaluated run."""
    return lambda data_root, dataset, fp, params, needs: rundir.eval_path(needs["train"].out, kind, dataset, fp)


# ---- run functions (heavy imports inside) --------------------------------------------------------


def _run_prepare(plan: Plan, ctx: Context) -> Path:
    from pipeline.prepare.points import fill_points_store

    fill_points_store(plan.params, ctx.data_root, plan.dataset, plan.fingerprint, plan.out)
    return plan.out


def _run_render(plan: Plan, ctx: Context) -> Path:
    from pipeline.render.views import render

    return render(plan.params, plan.needs["prepare"].out, plan.fingerprint, plan.out)


def _run_features(plan: Plan, ctx: Context) -> Path:
    from pipeline.features.cache import cache_features

    return cache_features(
        plan.params, plan.identity, plan.needs["render"].out, plan.fingerprint, plan.out, ctx.offline, ctx.dist
    )


def _run_train(plan: Plan, ctx: Context) -> Path:
    from pipeline.train.stage import run_pretraining

    return run_pretraining(plan, ctx)


def _run_eval(plan: Plan, ctx: Context) -> Path:
    from pipeline.evaluate.svm import run_svm_stage

    return run_svm_stage(plan, ctx)


def _run_finetune(plan: Plan, ctx: Context) -> Path:
    from pipeline.evaluate.downstream import run_finetune_stage

    return run_finetune_stage(plan, ctx)


def _run_fewshot(plan: Plan, ctx: Context) -> Path:
    from pipeline.evaluate.downstream import run_fewshot_stage

    return run_fewshot_stage(plan, ctx)


STAGES: dict[str, Stage] = {
    "prepare": Stage("prepare", P.PrepareParams, lambda p: (), plain_identity, _store("prepare"), _run_prepare, "store"),
    "render": Stage("render", P.RenderParams, lambda p: ("prepare",), plain_identity, _store("render"), _run_render, "store"),
    "cache-features": Stage(
        "cache-features", P.FeaturesParams, lambda p: ("render",), features_identity, _features_out, _run_features, "store"
    ),
    "train": Stage("train", P.TrainParams, train_needs, plain_identity, _run_out, _run_train, "run"),
    "eval": Stage("eval", P.EvalParams, lambda p: ("train",), plain_identity, _eval_out("svm"), _run_eval, "eval"),
    "finetune": Stage(
        "finetune", P.FinetuneParams, lambda p: ("train",), plain_identity, _eval_out("finetune"), _run_finetune, "eval"
    ),
    "fewshot": Stage(
        "fewshot", P.FewshotParams, lambda p: ("train",), plain_identity, _eval_out("fewshot"), _run_fewshot, "eval"
    ),
}

# What `i2p run` brings up to date when no stage is named (finetune and fewshot take hours: run by name).
DEFAULT_TARGETS = ("eval",)
