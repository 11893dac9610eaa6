"""Outputs a command reads without building them: the features `i2p show` draws, the stores behind an
explicit ``--features STORE``, the points store an evaluation of a run uses."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import StoreError
from pipeline.runner.plan import plan
from pipeline.storage.contract import Context
from pipeline.storage.remote import location
from pipeline.storage.store import read_state


def built_features(ctx: Context) -> tuple[Path, Path]:
    """(views store, features store) of the dataset for the asked-for teacher (else its last one); an
    error naming the teachers that do have features when this one has none."""
    p = plan("cache-features", ctx)
    state = ctx.reads.state(p.out, progress=False)
    if state is not None and state.complete:
        return p.needs["render"].out, p.out
    record = ctx.reads.dataset(ctx.data_root, ctx.dataset)
    others = [t for t in (record.teachers() if record else []) if t != p.params.teacher]
    hint = f"run `i2p cache-features --teacher {p.params.teacher} -d {ctx.dataset}`"
    if others:
        hint = f"features exist for --teacher {', '.join(others)}; pass one of those, or {hint}"
    raise StoreError(f"dataset {ctx.dataset} has no complete features of teacher {p.params.teacher}", hint)


def features_pins(features: Path) -> dict[str, Path]:
    """{"cache-features", "render", "prepare"} → the stores behind an explicit features store."""
    import zarr

    state = read_state(features, progress=False)
    if state is None or state.attrs.get("stage") != "cache-features" or not state.complete:
        what = (
            "no store"
            if state is None
            else (
                "incomplete"
                if state.attrs.get("stage") == "cache-features"
                else f"a {state.attrs.get('stage')} store"
            )
        )
        raise StoreError(
            f"--features {features}: {what}; training needs a complete cache-features store",
            "run `i2p cache-features` (all shards) first, or pick a store listed by `i2p status`",
        )
    views = location(state.attrs["upstream_paths"]["render"])
    points = location(zarr.open_group(str(views), mode="r").attrs["upstream_paths"]["prepare"])
    return {"cache-features": location(features), "render": views, "prepare": points}


def features_dataset(features: Path, asked: str | None) -> str:
    """The dataset an explicit features store belongs to; a different ``--dataset`` is an error."""
    state = read_state(features, progress=False)
    owner = str((state.attrs if state else {}).get("dataset"))
    if asked is not None and asked != owner:
        raise StoreError(
            f"--features {features} belongs to dataset {owner}, not {asked}",
            f"drop --dataset, or pass --dataset {owner}",
        )
    return owner


def run_points(ctx: Context) -> Path:
    """The points store an evaluation of the context's run uses on the context's dataset."""
    return plan("eval", ctx).needs["prepare"].out


def current_points(ctx: Context) -> Path:
    """The dataset's current points store (complete), for encoders evaluated directly (--ckpt)."""
    p = plan("prepare", ctx)
    state = ctx.reads.state(p.out, progress=False)
    if state is None or not state.complete:
        raise StoreError(
            f"dataset {ctx.dataset} has no complete points store ({p.out})",
            "run `i2p prepare` for it (rerunning resumes an incomplete store)",
        )
    return p.out
