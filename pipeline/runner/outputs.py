"""The three kinds of output, each planned, found, inspected and recorded its own way (as DVC's outputs):

* :class:`StoreOutput`: a zarr store of a dataset (points, views, features), found through the dataset
  record (or pinned by a run), ``partial k/n chunks`` until complete;
* :class:`RunOutput`: a training run, found by name (``train.run``, else the dataset's last run), planned
  on its own stores once it exists, ``partial: N steps done (resumable)`` until it reaches its end;
* :class:`EvalOutput`: an evaluation of a run on a points store, a JSON file in the run's directory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from pipeline.core.errors import ConfigError
from pipeline.runner.planning import (
    OutputState,
    Stage,
    Traits,
    Walk,
    changed,
    check_source,
    finish,
    stage_params,
)
from pipeline.storage import datasets, rundir
from pipeline.storage.contract import Context, Plan, Reads, Recorded
from pipeline.storage.remote import location, relative
from pipeline.storage.store import read_state


def _missing_or_changed(plan: Plan) -> OutputState:
    why = changed(plan)
    return OutputState(f"changed: {why}" if why else "missing", {})


@dataclass(frozen=True)
class StoreOutput:
    """A store under the store root; the dataset record names the current one of each stage."""

    traits: ClassVar[Traits] = Traits("store", rank_0_builds=True, is_input=True)

    def plan(self, walk: Walk, spec: Stage, ctx: Context) -> Plan:
        hint = dict(ctx.config.overrides.get(spec.name, {}))
        if spec.name in ctx.pins:
            recorded = self.recorded(ctx.pins[spec.name], ctx)
        else:
            record = ctx.reads.dataset(ctx.data_root, ctx.dataset)
            recorded = (
                None
                if record is None
                else self.recorded(record.output(ctx.data_root, spec.keys(hint)[-1]), ctx)
            )
        if spec.binds_source and recorded is None:
            check_source(spec, ctx)
        params = stage_params(spec, ctx, recorded)
        needs = {n: walk.plan(n, ctx) for n in spec.needs(params)}
        return finish(spec, ctx, params, needs, recorded, ctx.stores_under(), from_run=spec.name in ctx.pins)

    def recorded(self, path: Path | None, ctx: Context) -> Recorded | None:
        """What the store's attrs say (read with its progress: the state asks for it next)."""
        if path is None:
            return None
        state = ctx.reads.state(location(path))
        if state is None:
            return None
        a = state.attrs
        params = a.get("stage_params") or a.get("params", {})
        return Recorded(location(path), a["fingerprint"], params, a.get("upstream", {}), a.get("params", {}))

    def state(self, plan: Plan, reads: Reads) -> OutputState:
        state = reads.state(plan.out)
        if state is None:
            return _missing_or_changed(plan)
        done, total = state.progress
        if state.complete:
            return OutputState("up to date", {"chunks": total})
        return OutputState(f"partial {done}/{total} chunks", {"chunks_done": done, "chunks": total})

    def finished(self, plan: Plan) -> bool:
        state = read_state(plan.out, progress=False)
        return state is not None and state.complete

    def record(self, plan: Plan, spec: Stage, rec: datasets.DatasetRecord, data_root: Path) -> None:
        rel = relative(plan.out, data_root)
        rec.current.update(dict.fromkeys(spec.keys(plan.params.model_dump()), rel))
        if spec.binds_source and not rec.source:
            rec.source = datasets.binding_of(plan.params.model_dump())


def reached_end(done: dict[str, Any] | None, params: Any) -> bool:
    """complete.json says the run reached its epochs, or at least this plan's ``max_steps``."""
    if done is None:
        return False
    return done["epoch"] >= params.epochs or (
        params.max_steps is not None and done["step"] >= params.max_steps
    )


@dataclass(frozen=True)
class RunOutput:
    """A run directory ``runs/<name>/``, found by name; never changed under its name."""

    traits: ClassVar[Traits] = Traits("run", rank_0_builds=False, is_input=False)

    def plan(self, walk: Walk, spec: Stage, ctx: Context) -> Plan:
        return self.plan_run(walk, spec, ctx, any_dataset=False)

    def plan_run(self, walk: Walk, spec: Stage, ctx: Context, any_dataset: bool) -> Plan:
        """A run that exists is planned on its own stores (``any_dataset``: also when it was trained on
        another dataset than the context's, for its evaluations)."""
        name = self.run_name(spec, ctx)
        out = rundir.run_dir(ctx.data_root, name)
        state = rundir.read(out)
        recorded = self._recorded(state)
        sub = ctx
        if state.exists and (any_dataset or state.dataset in (None, ctx.dataset)):
            pins = {
                s: location(v["path"]) for s, v in state.stores.items() if v and location(v["path"]).exists()
            }
            sub = replace(ctx, dataset=state.dataset or ctx.dataset, pins={**pins, **ctx.pins})
            if state.dataset not in (
                None,
                ctx.dataset,
            ):  # the other stages' settings are the evaluated dataset's
                sub = replace(sub, config=sub.config.only(spec.name))
            walk = walk.fresh()
        config = sub.config.with_values(spec.name, run=name)
        if state.exists and "max_steps" not in ctx.config.overrides.get(spec.name, {}):  # a run keeps its end
            config = config.with_values(
                spec.name, max_steps=(state.config.get("runtime") or {}).get("max_steps")
            )
        sub = replace(sub, config=config)
        params = stage_params(spec, sub, recorded)
        needs = {n: walk.plan(n, sub) for n in spec.needs(params)}
        return finish(spec, sub, params, needs, recorded, sub.data_root)

    @staticmethod
    def run_name(spec: Stage, ctx: Context) -> str:
        """The run's name as given (flag or --set), else the dataset's last run, else stages.yaml's."""
        explicit = ctx.config.overrides.get(spec.name, {}).get("run")
        if explicit:
            return explicit
        record = ctx.reads.dataset(ctx.data_root, ctx.dataset)
        if record is not None and record.run:
            return record.run
        return ctx.config.stages[spec.name].params.get("run", "default")

    def recorded(self, path: Path | None, ctx: Context) -> Recorded | None:
        return None if path is None or not Path(path).exists() else self._recorded(rundir.read(path))

    @staticmethod
    def _recorded(run: rundir.RunState) -> Recorded | None:
        if not run.exists or not run.identity:
            return None
        ups = {s: v["fingerprint"] for s, v in run.stores.items() if v}
        return Recorded(run.path, run.identity, run.params, ups)

    def state(self, plan: Plan, reads: Reads) -> OutputState:
        run = rundir.read(plan.out)
        if run.exists and run.identity != plan.fingerprint:
            why = (
                changed(plan)
                if run.dataset in (None, plan.dataset)
                else f"run {run.path.name} was trained on {run.dataset}"
            )
            refusal = ConfigError(
                f"run {plan.params.run} was trained with other settings: {why}",
                "train this variant under its own name with --run NAME (or --set train.run=NAME)",
            )
            return OutputState(f"changed: {why}", {"conflict": True}, refusal)
        steps = {
            "steps_done": run.steps_logged,
            "max_steps": plan.params.max_steps,
            "epochs": plan.params.epochs,
        }
        if reached_end(run.complete, plan.params):
            return OutputState("up to date", steps)
        if run.has_checkpoint:
            return OutputState(f"partial: {run.steps_logged} steps done (resumable)", steps)
        return _missing_or_changed(plan)

    def finished(self, plan: Plan) -> bool:
        return plan.out.exists()

    def record(self, plan: Plan, spec: Stage, rec: datasets.DatasetRecord, data_root: Path) -> None:
        rec.run = plan.params.run


@dataclass(frozen=True)
class EvalOutput:
    """``runs/<run>/evals/<kind>-<dataset>-<fp8>.json``: an evaluation of the ``run`` stage's output on
    the ``points`` stage's store (the run's own for its dataset, else the dataset's current one)."""

    run: str = "train"
    points: str = "prepare"
    traits: ClassVar[Traits] = Traits("eval", rank_0_builds=False, is_input=False)

    def plan(self, walk: Walk, spec: Stage, ctx: Context) -> Plan:
        named = bool(
            ctx.config.overrides.get(self.run, {}).get("run")
        )  # --run NAME: that run, on any dataset
        if self.run not in walk.memo:
            run_spec = walk.table[self.run]
            walk.memo[self.run] = run_spec.output.plan_run(walk, run_spec, ctx, any_dataset=named)
        train = walk.memo[self.run]
        if ctx.dataset == train.dataset and self.points in train.needs:
            points = train.needs[self.points]
        else:
            points = walk.fresh().plan(self.points, replace(ctx, pins={}))
        params = stage_params(spec, ctx, None)
        plan = finish(spec, ctx, params, {self.run: train, self.points: points}, None, ctx.data_root)
        return replace(plan, recorded=self.recorded(plan.out, ctx) or _last_eval(plan))

    def recorded(self, path: Path | None, ctx: Context) -> Recorded | None:
        done = None if path is None else rundir.read_eval(path)
        return (
            None
            if done is None
            else Recorded(Path(path), done["fingerprint"], done["params"], done["upstream"])
        )

    def state(self, plan: Plan, reads: Reads) -> OutputState:
        done = rundir.read_eval(plan.out)
        if done is not None:
            return OutputState("up to date", {"result": done.get("result")})
        return _missing_or_changed(plan)

    def finished(self, plan: Plan) -> bool:
        return plan.out.exists()

    def record(self, plan: Plan, spec: Stage, rec: datasets.DatasetRecord, data_root: Path) -> None:
        """An evaluation is found by its plan, never through the dataset record."""


def _last_eval(plan: Plan) -> Recorded | None:
    """The newest evaluation of the same kind and dataset in the run (what "changed: …" compares with)."""
    kind = plan.out.name.split("-", 1)[0]
    same = [
        e
        for e in rundir.list_evals(plan.out.parent.parent)
        if e.get("kind") == kind and e.get("dataset") == plan.dataset
    ]
    if not same:
        return None
    last = same[-1]
    return Recorded(plan.out, last["fingerprint"], last["params"], last["upstream"])
