"""What planning shares across stages: the stage record, the interface of an output kind, one walk of
the needs, and the steps every kind takes (params, fingerprint, "changed: …").

A stage record (:class:`Stage`) holds every fact about one stage; its output kind (:class:`Output`:
a store, a run, an evaluation; :mod:`pipeline.runner.outputs`) knows how such an output is planned,
found, inspected and recorded. The runner asks them and never branches on a stage's name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pipeline.core.errors import ConfigError
from pipeline.core.stage_params import StageParams
from pipeline.storage import datasets
from pipeline.storage.contract import Context, Plan, Reads, Recorded, StageBody
from pipeline.storage.store import fingerprint

log = logging.getLogger("i2p")


@dataclass(frozen=True)
class OutputState:
    """What an output's state is: ``up to date``, ``partial …``, ``missing`` or ``changed: …``."""

    label: str
    detail: dict[str, Any]  # extra fields of the status row (chunks, steps, result)
    refusal: ConfigError | None = None  # running it would overwrite an output made with other settings

    @property
    def up_to_date(self) -> bool:
        return self.label == "up to date"


@dataclass(frozen=True)
class Traits:
    """What the runner needs to know of a kind of output besides its behaviour."""

    kind: str  # "store" | "run" | "eval": its name, for messages
    rank_0_builds: bool  # under torchrun rank 0 alone builds it; the other ranks wait for it
    is_input: bool  # named in the "<stage> uses …" line of the commands that read it


class Output(Protocol):
    """A kind of output (a store, a run, an evaluation) and what the runner does with it, as DVC's outputs."""

    traits: ClassVar[Traits]

    def plan(self, walk: Walk, spec: Stage, ctx: Context) -> Plan: ...

    def recorded(self, path: Path | None, ctx: Context) -> Recorded | None: ...

    def state(self, plan: Plan, reads: Reads) -> OutputState: ...

    def finished(self, plan: Plan) -> bool: ...

    def record(self, plan: Plan, spec: Stage, rec: datasets.DatasetRecord, data_root: Path) -> None: ...


def given_weights(recorded_params: dict[str, Any]) -> str | None:
    """The weight file a recorded output names in its params (``weights``), if any."""
    return recorded_params.get("weights")


def never(params: StageParams) -> bool:
    """A predicate on params that is always false."""
    return False


@dataclass(frozen=True)
class Stage:
    """One stage: its params model, what it needs, its identity, where its output lives, its body and kind."""

    name: str
    params: type[StageParams]
    needs: Callable[[Any], tuple[str, ...]]
    identity: Callable[[Any], dict[str, Any]]
    out: Callable[[Path, str, str, Any, dict[str, Plan]], Path]  # (root, dataset, fp, params, needs) → output
    body: str  # "module:function" of its StageBody, imported when it runs (planning stays cheap)
    output: Output
    # dataset-record keys; default (name,)
    record_keys: Callable[[dict[str, Any]], tuple[str, ...]] | None = None
    weights: Callable[[dict[str, Any]], str | None] = given_weights  # the weight file a recorded output used
    binds_source: bool = False  # its params bind a dataset name to a source (checked before it runs)
    shared_by_ranks: Callable[[Any], bool] = never  # every torchrun rank fills its share (e.g. --shard auto)

    def keys(self, values: dict[str, Any]) -> tuple[str, ...]:
        """The dataset-record keys of its output, for ``values`` (params or a command's overrides);
        the last one is where a command looks it up."""
        return self.record_keys(values) if self.record_keys else (self.name,)

    def body_function(self) -> StageBody:
        module, _, name = self.body.partition(":")
        return getattr(import_module(module), name or "run")

    def run(self, plan: Plan, ctx: Context) -> Path:
        """Run the body: bring ``plan.out`` up to date."""
        return self.body_function()(plan, ctx)

    @property
    def kind(self) -> str:
        return self.output.traits.kind


@dataclass
class Walk:
    """One planning walk over the needs: the stage table and the plans made so far (one per stage)."""

    table: Mapping[str, Stage]
    memo: dict[str, Plan] = field(default_factory=dict)

    def plan(self, stage: str, ctx: Context) -> Plan:
        if stage not in self.memo:
            spec = self.table[stage]
            self.memo[stage] = spec.output.plan(self, spec, ctx)
        return self.memo[stage]

    def fresh(self) -> Walk:
        """A walk with nothing planned yet (another context: a run's own stores)."""
        return Walk(self.table)


def stage_params(spec: Stage, ctx: Context, recorded: Recorded | None) -> StageParams:
    """stages.yaml ← the recorded output's params ← --set overrides ← flags (validated)."""
    model, stage = spec.params, spec.name
    values = dict(ctx.config.stages[stage].params) if stage in ctx.config.stages else {}
    if recorded is not None:
        values.update(
            {k: v for k, v in recorded.params.items() if k in model.model_fields and k not in model.RUNTIME}
        )
        values.update({k: v for k, v in model.LEGACY.items() if k not in recorded.params})
    values.update(ctx.config.overrides.get(stage, {}))
    params = model.build(values, where=str(ctx.config.path), origins=ctx.config.origins.get(stage, {}))
    for key, fix in params.inert().items():
        if key in ctx.config.overrides.get(stage, {}):
            log.warning("%s.%s=%s has no effect here (%s)", stage, key, getattr(params, key), fix)
    return params


def finish(
    spec: Stage,
    ctx: Context,
    params: StageParams,
    needs: dict[str, Plan],
    recorded: Recorded | None,
    root: Path,
    from_run: bool = False,
) -> Plan:
    """The plan: the recorded output kept as is when nothing the command sets differs, else a new identity."""
    upstream = {n: p.fingerprint for n, p in needs.items()}
    if recorded is not None and recorded.upstream == upstream and keeps(spec, ctx, recorded):
        fp, identity = recorded.fingerprint, dict(recorded.params)
    else:
        identity = spec.identity(params)
        fp = fingerprint(spec.name, identity, upstream)
    out = spec.out(root, ctx.dataset, fp, params, needs)
    return Plan(spec.name, ctx.dataset, params, identity, fp, out, needs, recorded, from_run)


def keeps(spec: Stage, ctx: Context, recorded: Recorded) -> bool:
    """No value the command sets explicitly (flag or --set) differs from what the recorded output used."""
    runtime = spec.params.RUNTIME
    given = {k: v for k, v in ctx.config.overrides.get(spec.name, {}).items() if k not in runtime}
    if not all(recorded.params.get(k) == v for k, v in given.items()):
        return False
    weights, sha = spec.weights(recorded.params), recorded.identity.get("weights_sha256")
    if weights and sha and Path(weights).is_file():  # same path, other bytes: another teacher
        from pipeline.features.teacher_weights import weights_sha256

        return weights_sha256(weights) == sha
    return True


def check_source(spec: Stage, ctx: Context) -> None:
    """A dataset never prepared can only be planned when the command says where it comes from."""
    given = ctx.config.overrides.get(spec.name, {})
    source = given.get("source", ctx.config.stages[spec.name].params.get("source"))
    from pipeline.sources import GENERATED

    if "source" in given or "root" in given or (source in GENERATED and ctx.dataset == source):
        return
    raise datasets.unknown_dataset(ctx.data_root, ctx.dataset)


def describe_difference(now: dict[str, Any], before: dict[str, Any]) -> str:
    """``"points 8192 → 1024, seed 0 → 1"``: recorded output → this plan."""
    keys = sorted(set(now) | set(before))
    return ", ".join(f"{k} {before.get(k)!r} → {now.get(k)!r}" for k in keys if now.get(k) != before.get(k))


def changed(plan_: Plan) -> str | None:
    """Why the plan differs from the recorded output, or None when it does not."""
    rec = plan_.recorded
    if rec is None or rec.fingerprint == plan_.fingerprint:
        return None
    diff = describe_difference(plan_.params.fingerprint_params(), rec.params)
    if not diff and rec.identity:  # same params, other resolved identity (e.g. the weight file's bytes)
        diff = describe_difference(plan_.identity, rec.identity)
    ups = [n for n, p in plan_.needs.items() if rec.upstream.get(n) not in (None, p.fingerprint)]
    parts = [diff] if diff else []
    parts += [f"upstream {', '.join(ups)} changed"] if ups else []
    return "; ".join(parts) or "identity changed"
