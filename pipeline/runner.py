"""The stage runner: which store a stage should produce, whether it is up to date, running stages.

A stage's store is fully determined by its params and its upstream stores' fingerprints. Running a
stage first brings its upstream stages up to date, as ``dvc repro STAGE`` does, so the user's
``i2p prepare shapenet`` → ``i2p cache-features`` → ``i2p train`` needs no separate render step.

Datasets are named (``synthetic``, ``shapenet``, ``modelnet40`` …). Where a dataset came from
(source, root, variant) is recorded in its points store when it is prepared; later commands read
it back from the newest points store of that name, so they can rebuild it if prepare's params change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.errors import ConfigError, StoreError
from pipeline.params import PrepareParams
from pipeline.store import StoreState, fingerprint, list_states, read_state, store_path

log = logging.getLogger("i2p")

ORIGIN_KEYS = ("source", "root", "variant", "layout")  # where a dataset comes from, fixed at prepare time


def prepared_datasets(data_root: Path) -> dict[str, list[StoreState]]:
    """Dataset name → its points stores, newest first."""
    found: dict[str, list[StoreState]] = {}
    for state in list_states(data_root, "prepare"):
        found.setdefault(state.attrs.get("dataset", "?"), []).append(state)
    return found


def resolve_dataset(data_root: Path, name: str | None, default: str) -> str:
    """``name`` if given; else the only prepared dataset; else ``default`` when none is prepared."""
    known = prepared_datasets(data_root)
    if name:
        return name
    if len(known) == 1:
        return next(iter(known))
    if not known:
        return default
    raise ConfigError(
        f"several datasets are prepared under {data_root}: {', '.join(sorted(known))}",
        "choose one with --dataset NAME",
    )


def prepare_params_for(config: Config, data_root: Path, dataset: str) -> PrepareParams:
    """Prepare's params for an existing dataset: stages.yaml + overrides, origin from its store."""
    params = config.params("prepare")
    stores = prepared_datasets(data_root).get(dataset)
    if stores:
        recorded = stores[0].attrs["params"]
        params = params.model_copy(update={k: recorded[k] for k in ORIGIN_KEYS if k in recorded})
    elif dataset != "synthetic" or params.source != "synthetic":
        known = ", ".join(sorted(prepared_datasets(data_root))) or "none"
        raise ConfigError(
            f"dataset {dataset!r} has not been prepared (prepared: {known})",
            "run `i2p prepare SOURCE --root PATH` first (e.g. `i2p prepare shapenet --root data/ShapeNet55-34`)",
        )
    return params


@dataclass(frozen=True)
class Expected:
    """The store a stage should produce for the current params."""

    stage: str
    dataset: str
    path: Path
    fingerprint: str
    params: dict[str, Any]


def expected_points(config: Config, data_root: Path, dataset: str) -> Expected | None:
    """Prepare's expected store without scanning the source (origin read from the newest store)."""
    stores = prepared_datasets(data_root).get(dataset)
    if not stores:
        return None
    values = prepare_params_for(config, data_root, dataset).fingerprint_params()
    recorded = stores[0].attrs["params"]
    values.update({k: recorded[k] for k in ("layout", "root") if k in recorded})
    fp = fingerprint("prepare", values, {})
    return Expected("prepare", dataset, store_path(data_root, "prepare", dataset, fp), fp, values)


def describe_difference(expected: dict[str, Any], found: dict[str, Any]) -> str:
    """``"points 8192 → 4096, seed 0 → 1"``: found (store) → expected (current params)."""
    keys = sorted(set(expected) | set(found))
    changes = [f"{k} {found.get(k)!r} → {expected.get(k)!r}" for k in keys if expected.get(k) != found.get(k)]
    return ", ".join(changes) or "upstream changed"


@dataclass(frozen=True)
class StatusRow:
    stage: str
    dataset: str
    state: str  # "up to date" | "partial k/n" | "missing" | "changed: ..." | "not built yet"
    path: Path | None


def stage_status(
    config: Config, data_root: Path, stage: str, dataset: str, expected: Expected | None
) -> StatusRow:
    """One row of `i2p status`: is the expected store complete, partial, missing or stale?"""
    if expected is None:
        return StatusRow(stage, dataset, "missing", None)
    state = read_state(expected.path)
    if state is not None:
        done, total = state.progress
        label = "up to date" if state.complete else f"partial {done}/{total} chunks"
        return StatusRow(stage, dataset, label, expected.path)
    others = [s for s in list_states(data_root, stage) if s.attrs.get("dataset") == dataset]
    if others:
        diff = describe_difference(expected.params, others[0].attrs.get("params", {}))
        return StatusRow(
            stage, dataset, f"changed: {diff} (newest store {others[0].path.name})", expected.path
        )
    return StatusRow(stage, dataset, "missing", expected.path)


# Stage implementations, registered by name. Each takes (config, data_root, dataset) and returns the
# path of the store it brought up to date; upstream stages are run first by `run_stage`.
STAGE_FUNCS: dict[str, Callable[[Config, Path, str], Path]] = {}
# For `i2p status`: the store each stage should produce now, computed cheaply (no source scan, no torch).
EXPECTED_FUNCS: dict[str, Callable[[Config, Path, str], Expected | None]] = {"prepare": expected_points}


def register(stage: str) -> Callable:
    def wrap(fn: Callable[[Config, Path, str], Path]) -> Callable:
        STAGE_FUNCS[stage] = fn
        return fn

    return wrap


@register("prepare")
def _run_prepare(config: Config, data_root: Path, dataset: str) -> Path:
    from pipeline.prepare import prepare

    return prepare(prepare_params_for(config, data_root, dataset), data_root, dataset).path


def run_stage(stage: str, config: Config, data_root: Path, dataset: str, upstream: bool = True) -> Path:
    """Run ``stage`` for ``dataset`` after bringing its upstream stages up to date."""
    if stage not in STAGE_FUNCS:
        raise StoreError(f"stage {stage!r} is declared in stages.yaml but not implemented in this version")
    if upstream:
        for dep in config.upstream_of(stage):
            run_stage(dep, config, data_root, dataset, upstream=False)
    return STAGE_FUNCS[stage](config, data_root, dataset)


def runnable_stages(config: Config) -> list[str]:
    """Declared stages that this version implements, in dependency order (what `i2p run` runs)."""
    return [s for s in config.order() if s in STAGE_FUNCS]
