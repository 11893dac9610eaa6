"""Run a plan (needs first, each output once), skip what is up to date, record what the user built.

The state of an output is decided here, once, for ``i2p run``, every stage command and ``i2p status``:
``up to date``, ``partial …``, ``missing`` or ``changed: <param> <before> → <now>``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from pipeline.core.errors import TeacherError
from pipeline.runner.planning import OutputState
from pipeline.runner.stages import STAGES
from pipeline.storage import datasets
from pipeline.storage.contract import Context, Plan, Reads
from pipeline.storage.remote import location, relative
from pipeline.storage.store import read_state

log = logging.getLogger("i2p")


def output_state(plan: Plan, ctx: Context | None = None) -> OutputState:
    """The state of the plan's output, by its kind (``ctx``: the command's reads, reused)."""
    return STAGES[plan.stage].output.state(plan, ctx.reads if ctx is not None else Reads())


def run(plan: Plan, ctx: Context, done: set[tuple[str, str]] | None = None) -> Path:
    """Bring ``plan``'s needs, then its own output, up to date; record them for the dataset."""
    done = set() if done is None else done
    key = (plan.stage, plan.fingerprint)
    if key in done:
        return plan.out
    spec = STAGES[plan.stage]
    state = output_state(plan, ctx)
    if state.refusal is not None:  # before building anything for it
        raise state.refusal
    if spec.binds_source:
        bound = ctx.reads.dataset(ctx.data_root, plan.dataset)
        datasets.check_binding(ctx.data_root, plan.dataset, plan.params.model_dump(), bound)
    for need in plan.needs.values():
        run(need, ctx, done)
    if state.up_to_date:
        log.info("%s %s: up to date (%s)", plan.stage, plan.dataset, relative(plan.out, ctx.data_root))
    elif _left_to_rank_0(plan, ctx):
        _wait_until_complete(plan)
    else:
        try:
            spec.run(plan, ctx)
        except TeacherError as err:
            raise _with_other_teachers(err, plan, ctx) from None
        finally:
            ctx.reads.forget(location(plan.out))
    done.add(key)
    if ctx.dist.rank == 0 and (state.up_to_date or spec.output.finished(plan)):
        record(plan, ctx)
    return plan.out


def _left_to_rank_0(plan: Plan, ctx: Context) -> bool:
    """Under torchrun, rank 0 alone builds the stores (cache-features with ``--shard auto``: every rank
    fills its shard); the other ranks wait for them."""
    spec = STAGES[plan.stage]
    return (
        ctx.dist.world > 1
        and ctx.dist.rank != 0
        and spec.output.traits.rank_0_builds
        and not spec.shared_by_ranks(plan.params)
    )


def _wait_until_complete(plan: Plan, poll_s: float = 2.0) -> None:
    import time

    log.info("%s %s: waiting for rank 0 to build %s", plan.stage, plan.dataset, plan.out)
    while not STAGES[plan.stage].output.finished(plan):
        time.sleep(poll_s)


def _with_other_teachers(err: TeacherError, plan: Plan, ctx: Context) -> TeacherError:
    """A teacher that cannot be built while another teacher's features exist: say so in the hint."""
    record = ctx.reads.dataset(ctx.data_root, plan.dataset)
    others = [t for t in (record.teachers() if record else []) if t != getattr(plan.params, "teacher", None)]
    if not others:
        return err
    hint = f"features of --teacher {', '.join(others)} exist for {plan.dataset}: pass that, or {err.hint or 'fix the teacher'}"
    return TeacherError(err.message, hint)


def record(plan: Plan, ctx: Context) -> None:
    """The dataset's current output of this stage is now ``plan.out`` (a run: its last run); the record
    is written only when that changes it."""
    if plan.from_run:
        return
    before = ctx.reads.dataset(ctx.data_root, plan.dataset)
    rec = copy.deepcopy(before) if before is not None else datasets.DatasetRecord(plan.dataset)
    STAGES[plan.stage].output.record(plan, STAGES[plan.stage], rec, ctx.data_root)
    if rec != before:
        ctx.reads.save_dataset(ctx.data_root, rec)


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
