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

from pathlib import Path

from pipeline.runner.planning import Walk, changed
from pipeline.runner.stages import STAGES
from pipeline.storage.contract import Context, Plan
from pipeline.storage.remote import relative


def plan(stage: str, ctx: Context, memo: dict[str, Plan] | None = None) -> Plan:
    """The plan of ``stage`` for ``ctx.dataset`` and, recursively, of everything it needs (``memo``: the
    plans already made for this context, shared by the calls of one command)."""
    return Walk(STAGES, {} if memo is None else memo).plan(stage, ctx)


def outputs_used(plan_: Plan, data_root: Path) -> str:
    """``points/x.zarr, views/y.zarr, features/z.zarr``: the stores a plan reads, for one log line."""
    seen: dict[str, Path] = {}

    def walk(p: Plan) -> None:
        for n, q in p.needs.items():
            walk(q)
            if STAGES[n].output.traits.is_input:
                seen[n] = q.out

    walk(plan_)
    return ", ".join(relative(p, data_root) for p in seen.values()) or "no stores"


__all__ = ["Context", "Plan", "plan", "changed", "outputs_used"]
