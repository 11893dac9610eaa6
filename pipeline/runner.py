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
    for state in list_states(data_root, "prepare", progress=False):  # attrs only: names and origins
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
    """Prepare's params for a dataset: stages.yaml + overrides, with the origin (source, root, variant,
    layout) read from the dataset's newest store when it has been prepared before."""
    params = config.params("prepare")
    stores = prepared_datasets(data_root).get(dataset)
    if stores:
        recorded = stores[0].attrs["params"]
        params = params.model_copy(update={k: recorded[k] for k in ORIGIN_KEYS if k in recorded})
    elif params.source == "synthetic" and dataset != "synthetic":
        known = ", ".join(sorted(prepared_datasets(data_root))) or "none"
        raise ConfigError(
            f"dataset {dataset!r} has not been prepared (prepared: {known})",
            "check the name, or prepare it: `i2p prepare SOURCE --root PATH --dataset NAME`",
        )
    elif params.source != "synthetic" and params.root is None:
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
    values = prepare_params_for(config, data_root, dataset).fingerprint_params()  # origin, layout, root
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


def stage_status(config: Config, data_root: Path, stage: str, dataset: str) -> StatusRow:
    """One row of `i2p status`: the stage's own status function if it registered one (runs), else
    whether its expected store is complete, partial, missing or stale."""
    if stage in STATUS_FUNCS:
        return STATUS_FUNCS[stage](config, data_root, dataset)
    expected = EXPECTED_FUNCS[stage](config, data_root, dataset) if stage in EXPECTED_FUNCS else None
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


# Stage implementations, registered by name. Each takes (config, data_root, dataset, inputs), where
# inputs maps every upstream stage to the store it produced, and returns the store it brought up to date.
StageFunc = Callable[[Config, Path, str, dict[str, Path]], Path]
STAGE_FUNCS: dict[str, StageFunc] = {}
# For `i2p status`: the store each stage should produce now, computed cheaply (no source scan, no torch).
EXPECTED_FUNCS: dict[str, Callable[[Config, Path, str], Expected | None]] = {"prepare": expected_points}
# Stages that produce something other than a store (train, eval) give `i2p status` their own row.
STATUS_FUNCS: dict[str, Callable[[Config, Path, str], StatusRow]] = {}


def register(stage: str) -> Callable[[StageFunc], StageFunc]:
    def wrap(fn: StageFunc) -> StageFunc:
        STAGE_FUNCS[stage] = fn
        return fn

    return wrap


@register("prepare")
def _run_prepare(config: Config, data_root: Path, dataset: str, inputs: dict[str, Path]) -> Path:
    from pipeline.prepare import prepare

    return prepare(prepare_params_for(config, data_root, dataset), data_root, dataset).path


def run_stage(
    stage: str, config: Config, data_root: Path, dataset: str, done: dict[str, Path] | None = None
) -> Path:
    """Run ``stage`` for ``dataset`` after bringing its upstream stages up to date (each once)."""
    done = {} if done is None else done
    if stage in done:
        return done[stage]
    if stage not in STAGE_FUNCS:
        raise StoreError(f"stage {stage!r} is declared in stages.yaml but not implemented in this version")
    for dep in config.stages[stage].deps:
        run_stage(dep, config, data_root, dataset, done)
    inputs = {dep: done[dep] for dep in config.upstream_of(stage)}
    done[stage] = STAGE_FUNCS[stage](config, data_root, dataset, inputs)
    return done[stage]


def runnable_stages(config: Config) -> list[str]:
    """Declared stages that this version implements, in dependency order (what `i2p run` runs)."""
    return [s for s in config.order() if s in STAGE_FUNCS]


def expected_views(config: Config, data_root: Path, dataset: str) -> Expected | None:
    from pipeline.render import render_fingerprint

    points = expected_points(config, data_root, dataset)
    if points is None:
        return None
    params = config.params("render")
    fp = render_fingerprint(params, points.fingerprint)
    return Expected(
        "render", dataset, store_path(data_root, "render", dataset, fp), fp, params.fingerprint_params()
    )


def expected_features(config: Config, data_root: Path, dataset: str) -> Expected | None:
    """Without importing torch: with precision auto, whichever of fp32 / fp16 exists (else fp32)."""
    from pipeline.teachers import teacher_slug

    views = expected_views(config, data_root, dataset)
    if views is None:
        return None
    params = config.params("cache-features")
    candidates = ["fp32", "fp16"] if params.precision == "auto" else [params.precision]
    found = []
    for precision in candidates:
        values = {**params.fingerprint_params(), "precision": precision}
        fp = fingerprint("cache-features", values, {"render": views.fingerprint})
        path = store_path(data_root, "cache-features", dataset, fp, teacher_slug(params.teacher))
        found.append(Expected("cache-features", dataset, path, fp, values))
    return next((e for e in found if e.path.exists()), found[0])


EXPECTED_FUNCS.update({"render": expected_views, "cache-features": expected_features})


@register("render")
def _run_render(config: Config, data_root: Path, dataset: str, inputs: dict[str, Path]) -> Path:
    from pipeline.render import render

    return render(config.params("render"), inputs["prepare"], data_root)


@register("cache-features")
def _run_features(config: Config, data_root: Path, dataset: str, inputs: dict[str, Path]) -> Path:
    from pipeline.features import cache_features

    return cache_features(
        config.params("cache-features"), inputs["render"], data_root, offline=config.offline
    )


def train_inputs(config: Config, data_root: Path, dataset: str, features: Path | None, done: dict[str, Path]):  # noqa: ANN201
    """The stores a training run reads: an explicit features store (``--features``) and its upstream, or
    the stages' current stores, built if needed. Views/features are skipped when the run needs none."""
    import zarr

    from pipeline.train import TrainInputs

    params = config.params("train")
    if features is not None:
        state = read_state(features)
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
        group = zarr.open_group(str(features), mode="r")
        views = Path(group.attrs["upstream_paths"]["render"])
        points = Path(zarr.open_group(str(views), mode="r").attrs["upstream_paths"]["prepare"])
    else:
        needs_maps = params.masking == "2d-guided" or params.targets == "3d+2d"
        needs_features = needs_maps and params.online_teacher is None
        last = "cache-features" if needs_features else ("render" if needs_maps else "prepare")
        run_stage(last, config, data_root, dataset, done)
        points, views, features = done["prepare"], done.get("render"), done.get("cache-features")
    groups = {
        name: zarr.open_group(str(p), mode="r")
        for name, p in (("prepare", points), ("render", views), ("cache-features", features))
        if p
    }
    fps = {name: g.attrs["fingerprint"] for name, g in groups.items()}
    channels = 512
    if features is not None:
        channels = groups["cache-features"]["train/feature"].shape[2]
        if groups["cache-features"].attrs["teacher"].get("random_weights"):
            log.warning(
                "training on features of a RANDOM-weight teacher (%s): fine for smoke runs only", features
            )
    return TrainInputs(
        str(points), str(views) if views else None, str(features) if features else None, fps, channels
    )


# train and eval live in pipeline/training.py (light to import: torch is loaded inside the functions)
from pipeline import training as _training  # noqa: E402,F401  (registers the "train" and "eval" stages)
