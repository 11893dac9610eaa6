"""The stage runner: plan a stage by walking its needs, then run, skip or report with the same plan.

Params of a stage for a dataset: the params of the output the user last built for it (the dataset
record, :mod:`pipeline.storage.datasets`), else stages.yaml's; then ``--set`` overrides and typed flags. So a
dataset keeps the prepare params it was prepared with, ``--teacher`` given once carries to later
commands, and stages.yaml defaults apply to what was never built. A training run's own stores (its
``config.yaml``) take the place of the dataset's current ones when the run is planned, so a run is
resumed, reported and evaluated on exactly what it was trained on.

A plan's fingerprint is sha256(stage, identity(params), upstream fingerprints, schema version); when no
value the command sets explicitly differs from the recorded output's and its upstream is the same, the
recorded output is used as is (stages.yaml edits apply to what is built next, never silently to this).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.core.config import Config
from pipeline.core.devices import Distributed
from pipeline.core.params import StageParams
from pipeline.runner.stages import STAGES
from pipeline.storage import datasets, rundir
from pipeline.storage.remote import absolute, is_url, location
from pipeline.storage.store import fingerprint, read_state

log = logging.getLogger("i2p")


@dataclass(frozen=True)
class Context:
    """What a command plans with: the config (stages.yaml + overrides), where data lives, which dataset."""

    config: Config
    data_root: Path
    dataset: str
    offline: bool = False
    dist: Distributed = Distributed()
    pins: dict[str, Path] = field(default_factory=dict)  # stage → an output to use as is (a run's stores)
    store_root: Path | None = None  # where new stores go (a folder or an fsspec URL); None: the data root

    def stores_under(self) -> Path:
        return absolute(self.store_root) if self.store_root else self.data_root


@dataclass(frozen=True)
class Recorded:
    """An output on disk: its fingerprint, the params that made it and its upstream fingerprints."""

    path: Path
    fingerprint: str
    params: dict[str, Any]
    upstream: dict[str, str]
    identity: dict[str, Any] = field(default_factory=dict)  # what the fingerprint hashed (e.g. weights_sha256)


@dataclass(frozen=True)
class Plan:
    stage: str
    dataset: str
    params: StageParams
    identity: dict[str, Any]  # what the fingerprint hashes (params, resolved where needed)
    fingerprint: str
    out: Path
    needs: dict[str, Plan]
    recorded: Recorded | None  # the output this dataset/run had for the stage before (for "changed: …")
    from_run: bool = False  # a store pinned by a run's config.yaml (not the dataset's current one)


def recorded_output(stage: str, path: Path | None) -> Recorded | None:
    """What the output at ``path`` says about itself (store attrs, a run's config.yaml, an eval file)."""
    if path is None or not location(path).exists():
        return None
    kind = STAGES[stage].kind
    if kind == "store":
        state = read_state(path, progress=False)
        if state is None:
            return None
        a = state.attrs
        params = a.get("stage_params") or a.get("params", {})
        return Recorded(location(path), a["fingerprint"], params, a.get("upstream", {}), a.get("params", {}))
    if kind == "run":
        run = rundir.read(path)
        if not run.exists or not run.identity:
            return None
        ups = {s: v["fingerprint"] for s, v in run.stores.items() if v}
        return Recorded(Path(path), run.identity, run.params, ups)
    done = rundir.read_eval(path)
    return None if done is None else Recorded(Path(path), done["fingerprint"], done["params"], done["upstream"])


def _recorded_for(stage: str, ctx: Context, params_hint: dict[str, Any]) -> Recorded | None:
    if stage in ctx.pins:
        return recorded_output(stage, ctx.pins[stage])
    record = datasets.load(ctx.data_root, ctx.dataset)
    if record is None:
        return None
    if stage == "cache-features" and "teacher" in params_hint:
        return recorded_output(stage, record.output(ctx.data_root, f"cache-features/{params_hint['teacher']}"))
    if stage == "train":
        return None  # runs are found by name (see _run_name)
    return recorded_output(stage, record.output(ctx.data_root, stage))


def _params(stage: str, ctx: Context, recorded: Recorded | None) -> StageParams:
    """stages.yaml ← the recorded output's params ← --set overrides ← flags (validated)."""
    model = STAGES[stage].params
    values = dict(ctx.config.stages[stage].params) if stage in ctx.config.stages else {}
    if recorded is not None:
        values.update({k: v for k, v in recorded.params.items() if k in model.model_fields and k not in model.RUNTIME})
        values.update({k: v for k, v in model.LEGACY.items() if k not in recorded.params})
    values.update(ctx.config.overrides.get(stage, {}))
    params = model.build(values, where=str(ctx.config.path), origins=ctx.config.origins.get(stage, {}))
    for key, fix in params.inert().items():
        if key in ctx.config.overrides.get(stage, {}):
            log.warning("%s.%s=%s has no effect here (%s)", stage, key, getattr(params, key), fix)
    return params


def _run_name(ctx: Context) -> str:
    """train.run as given (flag or --set), else the dataset's last run, else stages.yaml's."""
    explicit = ctx.config.overrides.get("train", {}).get("run")
    if explicit:
        return explicit
    record = datasets.load(ctx.data_root, ctx.dataset)
    if record is not None and record.run:
        return record.run
    return ctx.config.stages["train"].params.get("run", "default")


def plan(stage: str, ctx: Context, memo: dict[str, Plan] | None = None) -> Plan:
    """The plan of ``stage`` for ``ctx.dataset`` and, recursively, of everything it needs."""
    memo = {} if memo is None else memo
    if stage in memo:
        return memo[stage]
    if stage == "train":
        memo[stage] = _plan_train(ctx, memo, for_eval=False)
    elif STAGES[stage].kind == "eval":
        memo[stage] = _plan_eval(stage, ctx, memo)
    else:
        hint = dict(ctx.config.overrides.get(stage, {}))
        recorded = _recorded_for(stage, ctx, hint)
        if stage == "prepare" and recorded is None:
            _check_preparable(ctx)
        params = _params(stage, ctx, recorded)
        needs = {n: plan(n, ctx, memo) for n in STAGES[stage].needs(params)}
        memo[stage] = _finish(stage, ctx, params, needs, recorded, from_run=stage in ctx.pins)
    return memo[stage]


def _finish(stage: str, ctx: Context, params: StageParams, needs: dict[str, Plan], recorded: Recorded | None,
            from_run: bool = False) -> Plan:  # fmt: skip
    spec = STAGES[stage]
    upstream = {n: p.fingerprint for n, p in needs.items()}
    if recorded is not None and recorded.upstream == upstream and _keeps(stage, ctx, recorded):
        fp, identity = recorded.fingerprint, dict(recorded.params)
    else:
        identity = spec.identity(params)
        fp = fingerprint(stage, identity, upstream)
    out = spec.out(ctx.stores_under() if spec.kind == "store" else ctx.data_root, ctx.dataset, fp, params, needs)
    return Plan(stage, ctx.dataset, params, identity, fp, out, needs, recorded, from_run)


def _keeps(stage: str, ctx: Context, recorded: Recorded) -> bool:
    """No value the command sets explicitly (flag or --set) differs from what the recorded output used."""
    runtime = STAGES[stage].params.RUNTIME
    given = {k: v for k, v in ctx.config.overrides.get(stage, {}).items() if k not in runtime}
    if not all(recorded.params.get(k) == v for k, v in given.items()):
        return False
    weights, sha = recorded.params.get("weights"), recorded.identity.get("weights_sha256")
    if not weights and sha and stage == "cache-features":  # weights shipped with the package, if any
        from pipeline.features.tiny_teachers import packaged_weights

        weights = packaged_weights(str(recorded.params.get("teacher")))
    if weights and sha and Path(weights).is_file():  # same path, other bytes: another teacher
        from pipeline.features.teacher_weights import weights_sha256

        return weights_sha256(weights) == sha
    return True


def _check_preparable(ctx: Context) -> None:
    """A dataset never prepared can only be planned when the command says where it comes from."""
    given = ctx.config.overrides.get("prepare", {})
    source = given.get("source", ctx.config.stages["prepare"].params.get("source"))
    if "source" in given or "root" in given or (source == "synthetic" and ctx.dataset == "synthetic"):
        return
    raise datasets.unknown_dataset(ctx.data_root, ctx.dataset)


def _plan_train(ctx: Context, memo: dict[str, Plan], for_eval: bool) -> Plan:
    """A run that exists is planned on its own stores (for its evaluations: on its own dataset too)."""
    name = _run_name(ctx)
    out = rundir.run_dir(ctx.data_root, name)
    state = rundir.read(out)
    recorded = recorded_output("train", out)
    sub = ctx
    if state.exists and (for_eval or state.dataset in (None, ctx.dataset)):
        pins = {s: location(v["path"]) for s, v in state.stores.items() if v and location(v["path"]).exists()}
        sub = replace(ctx, dataset=state.dataset or ctx.dataset, pins={**pins, **ctx.pins})
        memo = {}
    config = sub.config.with_values("train", run=name)
    given = ctx.config.overrides.get("train", {})
    if state.exists and "max_steps" not in given:  # a run keeps the end it was given (e.g. --max-steps 5)
        config = config.with_values("train", max_steps=(state.config.get("runtime") or {}).get("max_steps"))
    sub = replace(sub, config=config)
    params = _params("train", sub, recorded)
    needs = {n: plan(n, sub, memo) for n in STAGES["train"].needs(params)}
    return _finish("train", sub, params, needs, recorded)


def _plan_eval(stage: str, ctx: Context, memo: dict[str, Plan]) -> Plan:
    """Evaluations of a run: on the run's own points store for its dataset, else the dataset's current."""
    named = bool(ctx.config.overrides.get("train", {}).get("run"))  # --run NAME: that run, on any dataset
    train = memo.setdefault("train", _plan_train(ctx, memo, for_eval=named))
    if ctx.dataset == train.dataset and "prepare" in train.needs:
        points = train.needs["prepare"]
    else:
        points = plan("prepare", replace(ctx, pins={}), {})
    params = _params(stage, ctx, None)
    needs = {"train": train, "prepare": points}
    plan_ = _finish(stage, ctx, params, needs, None)
    return replace(plan_, recorded=recorded_output(stage, plan_.out) or _last_eval(plan_))


def _last_eval(plan_: Plan) -> Recorded | None:
    """The newest evaluation of the same kind and dataset in the run (what "changed: …" compares with)."""
    kind = plan_.out.name.split("-", 1)[0]
    same = [e for e in rundir.list_evals(plan_.out.parent.parent) if e.get("kind") == kind and e.get("dataset") == plan_.dataset]
    if not same:
        return None
    last = same[-1]
    return Recorded(plan_.out, last["fingerprint"], last["params"], last["upstream"])


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


def outputs_used(plan_: Plan, data_root: Path) -> str:
    """``points/x.zarr, views/y.zarr, features/z.zarr``: the stores a plan reads, for one log line."""
    seen: dict[str, Path] = {}

    def walk(p: Plan) -> None:
        for n, q in p.needs.items():
            walk(q)
            if STAGES[n].kind == "store":
                seen[n] = q.out

    walk(plan_)
    return ", ".join(_rel(p, data_root) for p in seen.values()) or "no stores"


def _rel(path: Path, root: Path) -> str:
    if is_url(path):
        return str(path)
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


__all__ = ["Context", "Plan", "plan", "changed", "outputs_used"]
