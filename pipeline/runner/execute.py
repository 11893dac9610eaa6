"""Run a plan (needs first, each output once), skip what is up to date, record what the user built.

The state of an output is decided here, once, for ``i2p run``, every stage command and ``i2p status``:
``up to date``, ``partial …``, ``missing`` or ``changed: <param> <before> → <now>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError, TeacherError
from pipeline.runner.plan import Context, Plan, changed
from pipeline.runner.stages import STAGES
from pipeline.storage import datasets, rundir
from pipeline.storage.remote import is_url, location
from pipeline.storage.store import read_state

log = logging.getLogger("i2p")


@dataclass(frozen=True)
class OutputState:
    label: str  # "up to date" | "partial …" | "missing" | "changed: …"
    detail: dict[str, Any]

    @property
    def up_to_date(self) -> bool:
        return self.label == "up to date"


def reached_end(done: dict[str, Any] | None, params: Any) -> bool:
    """complete.json says the run reached its epochs, or at least this plan's ``max_steps``."""
    if done is None:
        return False
    return done["epoch"] >= params.epochs or (params.max_steps is not None and done["step"] >= params.max_steps)


def output_state(plan: Plan) -> OutputState:
    kind = STAGES[plan.stage].kind
    if kind == "store":
        state = read_state(plan.out)
        if state is not None:
            done, total = state.progress
            if state.complete:
                return OutputState("up to date", {"chunks": total})
            return OutputState(f"partial {done}/{total} chunks", {"chunks_done": done, "chunks": total})
    elif kind == "run":
        run = rundir.read(plan.out)
        if run.exists and run.identity != plan.fingerprint:
            why = changed(plan) if run.dataset in (None, plan.dataset) else f"run {run.path.name} was trained on {run.dataset}"
            return OutputState(f"changed: {why}", {"conflict": True})
        steps = {"steps_done": run.steps_logged, "max_steps": plan.params.max_steps, "epochs": plan.params.epochs}
        if reached_end(run.complete, plan.params):
            return OutputState("up to date", steps)
        if run.has_checkpoint:
            return OutputState(f"partial: {run.steps_logged} steps done (resumable)", steps)
    else:
        done = rundir.read_eval(plan.out)
        if done is not None:
            return OutputState("up to date", {"result": done.get("result")})
    why = changed(plan)
    return OutputState(f"changed: {why}" if why else "missing", {})


def run(plan: Plan, ctx: Context, done: set[tuple[str, str]] | None = None) -> Path:
    """Bring ``plan``'s needs, then its own output, up to date; record them for the dataset."""
    done = set() if done is None else done
    key = (plan.stage, plan.fingerprint)
    if key in done:
        return plan.out
    state = output_state(plan)
    if state.detail.get("conflict"):  # before building anything for it
        raise ConfigError(
            f"run {plan.params.run} was trained with other settings: {state.label.removeprefix('changed: ')}",
            "train this variant under its own name with --run NAME (or --set train.run=NAME)",
        )
    if plan.stage == "prepare":
        datasets.check_binding(ctx.data_root, plan.dataset, plan.params.model_dump())
    for need in plan.needs.values():
        run(need, ctx, done)
    if state.up_to_date:
        log.info("%s %s: up to date (%s)", plan.stage, plan.dataset, _rel(plan.out, ctx.data_root))
    elif _left_to_rank_0(plan, ctx):
        _wait_until_complete(plan)
    else:
        try:
            STAGES[plan.stage].run(plan, ctx)
        except TeacherError as err:
            raise _with_other_teachers(err, plan, ctx.data_root) from None
    done.add(key)
    if ctx.dist.rank == 0 and _finished(plan):
        record(plan, ctx.data_root)
    return plan.out


def _left_to_rank_0(plan: Plan, ctx: Context) -> bool:
    """Under torchrun, rank 0 alone builds the stores (cache-features with ``--shard auto``: every rank
    fills its shard); the other ranks wait for them."""
    sharded = plan.stage == "cache-features" and plan.params.shard == "auto"
    return ctx.dist.world > 1 and ctx.dist.rank != 0 and STAGES[plan.stage].kind == "store" and not sharded


def _wait_until_complete(plan: Plan, poll_s: float = 2.0) -> None:
    import time

    log.info("%s %s: waiting for rank 0 to build %s", plan.stage, plan.dataset, plan.out)
    while not _finished(plan):
        time.sleep(poll_s)


def _with_other_teachers(err: TeacherError, plan: Plan, data_root: Path) -> TeacherError:
    """A teacher that cannot be built while another teacher's features exist: say so in the hint."""
    record = datasets.load(data_root, plan.dataset)
    others = [t for t in (record.teachers() if record else []) if t != getattr(plan.params, "teacher", None)]
    if not others:
        return err
    hint = f"features of --teacher {', '.join(others)} exist for {plan.dataset}: pass that, or {err.hint or 'fix the teacher'}"
    return TeacherError(err.message, hint)


def _finished(plan: Plan) -> bool:
    if STAGES[plan.stage].kind == "store":
        state = read_state(plan.out, progress=False)
        return state is not None and state.complete
    return plan.out.exists()


def record(plan: Plan, data_root: Path) -> None:
    """The dataset's current output of this stage is now ``plan.out`` (a run: its last run)."""
    if plan.from_run or STAGES[plan.stage].kind == "eval":
        return
    rec = datasets.load(data_root, plan.dataset) or datasets.DatasetRecord(plan.dataset)
    if plan.stage == "prepare" and not rec.source:
        rec.source = datasets.binding_of(plan.params.model_dump())
    if plan.stage == "train":
        rec.run = plan.params.run
    else:
        rel = _rel(plan.out, data_root)
        rec.current[plan.stage] = rel
        if plan.stage == "cache-features":
            rec.current[f"cache-features/{plan.params.teacher}"] = rel
    datasets.save(data_root, rec)


def _rel(path: Path, root: Path) -> str:
    if is_url(path):  # a store on object storage: its URL, in records and logs
        return str(path)
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def build_store(stage: str, params: Any, upstream: Path, data_root: Path, offline: bool = True) -> Path:
    """Render or cache-features from one given upstream store, outside any dataset record (benchmarks,
    tests): the stage's own identity and output rules, its run function, the store's path."""
    from pipeline.storage.store import fingerprint

    spec = STAGES[stage]
    (need,) = spec.needs(params)
    attrs = read_state(location(upstream), progress=False).attrs
    identity = spec.identity(params)
    fp = fingerprint(stage, identity, {need: attrs["fingerprint"]})
    up = Plan(need, attrs["dataset"], None, {}, attrs["fingerprint"], location(upstream), {}, None)
    out = spec.out(location(data_root), attrs["dataset"], fp, params, {need: up})
    plan = Plan(stage, attrs["dataset"], params, identity, fp, out, {need: up}, None)
    return spec.run(plan, Context(None, Path(data_root), attrs["dataset"], offline))
