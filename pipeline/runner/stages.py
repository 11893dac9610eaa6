"""The stage contract, in one explicit table.

Every stage is one :class:`~pipeline.runner.planning.Stage` record:

* ``params``: its frozen, validated params model (:mod:`pipeline.core.params`, defaults in stages.yaml);
* ``needs(params)``: the stages whose outputs it reads (train needs views and features only when its
  masking or targets use them);
* ``identity(params)``: what defines its output, a dict hashed into its fingerprint together with the
  upstream fingerprints. Computed from params and upstream identities only, never by rescanning
  a source folder, so a dataset whose folder moved keeps its stores;
* ``out(root, dataset, fp, params, needs)``: where the output lives (evaluations: in the directory of
  the run they evaluate, ``needs["train"]``);
* ``body``: the ``run(plan, ctx) -> output`` of its own package (:class:`pipeline.storage.contract.StageBody`),
  imported when it runs, so planning and ``i2p status`` stay cheap;
* ``output``: its kind (:mod:`pipeline.runner.outputs`: store, run, evaluation), which plans, finds,
  inspects and records it; and the facts the runner asks instead of testing the stage's name
  (``record_keys``, ``weights``, ``binds_source``, ``shared_by_ranks``).

The runner (:mod:`pipeline.runner.plan`) plans by walking ``needs`` depth-first, as ``dvc repro`` does, and uses
the same plan to run, to skip and to report. Nothing registers itself at import time. Adding a stage
touches this table and its own package.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core import params as P
from pipeline.runner.outputs import EvalOutput, RunOutput, StoreOutput
from pipeline.runner.planning import Stage
from pipeline.storage import rundir
from pipeline.storage.store import store_path

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
    return lambda data_root, dataset, fp, params, needs: rundir.eval_path(
        needs["train"].out, kind, dataset, fp
    )


# ---- per-stage facts -----------------------------------------------------------------------------


def _features_keys(values: dict[str, Any]) -> tuple[str, ...]:
    """Features are recorded as the dataset's current ones and as its current ones of their teacher."""
    return (
        ("cache-features", f"cache-features/{values['teacher']}")
        if "teacher" in values
        else ("cache-features",)
    )


def _features_weights(recorded_params: dict[str, Any]) -> str | None:
    """The weight file given, else the one shipped with the package for the teacher (if any)."""
    from pipeline.features.tiny_teachers import packaged_weights

    given = recorded_params.get("weights")
    shipped = None if given else packaged_weights(str(recorded_params.get("teacher")))
    return given or (str(shipped) if shipped is not None else None)


def _shards_over_ranks(params: P.FeaturesParams) -> bool:
    return params.shard == "auto"


def _upstream(stage: str) -> Callable[[Any], tuple[str, ...]]:
    return lambda params: (stage,)


STORE, RUN, EVAL = StoreOutput(), RunOutput(), EvalOutput()

STAGES: dict[str, Stage] = {
    "prepare": Stage("prepare", P.PrepareParams, lambda p: (), plain_identity, _store("prepare"),
                     "pipeline.prepare.points", STORE, binds_source=True),
    "render": Stage("render", P.RenderParams, _upstream("prepare"), plain_identity, _store("render"),
                    "pipeline.render.views", STORE),
    "cache-features": Stage("cache-features", P.FeaturesParams, _upstream("render"), features_identity, _features_out,
                            "pipeline.features.cache", STORE, record_keys=_features_keys, weights=_features_weights,
                            shared_by_ranks=_shards_over_ranks),
    "train": Stage("train", P.TrainParams, train_needs, plain_identity, _run_out, "pipeline.train.stage", RUN),
    "eval": Stage("eval", P.EvalParams, _upstream("train"), plain_identity, _eval_out("svm"), "pipeline.evaluate.svm", EVAL),
    "finetune": Stage("finetune", P.FinetuneParams, _upstream("train"), plain_identity, _eval_out("finetune"),
                      "pipeline.evaluate.downstream:run_finetune", EVAL),
    "fewshot": Stage("fewshot", P.FewshotParams, _upstream("train"), plain_identity, _eval_out("fewshot"),
                     "pipeline.evaluate.downstream:run_fewshot", EVAL),
    "partseg": Stage("partseg", P.PartsegParams, _upstream("train"), plain_identity, _eval_out("partseg"),
                     "pipeline.evaluate.downstream:run_partseg", EVAL),
}  # fmt: skip

# What `i2p run` brings up to date when no stage is named (finetune, fewshot, partseg take hours: run by name).
DEFAULT_TARGETS = ("eval",)
