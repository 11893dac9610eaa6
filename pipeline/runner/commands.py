"""The one pipeline call behind each stage command of the CLI (prepare, render, cache-features, show,
train, run, status, gc, teacher train): each takes a :class:`~pipeline.runner.request.Request` and returns
what the command prints. torch, zarr and dask are imported by the stages these reach, not here, so
``i2p status`` stays light.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.quick import with_quick
from pipeline.runner.request import Request, build
from pipeline.runner.stages import DEFAULT_TARGETS, STAGES
from pipeline.storage import rundir
from pipeline.storage.remote import is_url, location


def bring_up_to_date(stage: str, req: Request) -> Path:
    """``stage`` (and all it needs) up to date for the request's dataset; its output."""
    return build(stage, req.context())


def prepare(req: Request, name_from_source: bool) -> Path:
    """The points store; without a dataset name, one from the source given on the command line."""
    if req.dataset is None and name_from_source:
        from pipeline import sources

        req = req.with_dataset(sources.default_dataset_name(req.config.params("prepare")))
    return bring_up_to_date("prepare", req)


def train(req: Request, features: str | None) -> Path:
    """The run directory; with ``features`` (a folder or URL), trained on that store and the views and
    points behind it, for the dataset it belongs to."""
    from pipeline.runner.lookup import features_dataset, features_pins

    pins = None
    if features:
        where = location(features) if is_url(features) else Path(features).expanduser().resolve()
        pins, req = features_pins(where), req.with_dataset(features_dataset(where, req.dataset))
    return build("train", req.context(pins))


def show(
    req: Request, obj: str, split: str, teacher: str | None, run: str | None, seed: int, out: Path | None
) -> Path:
    """The PNG written: an object's depth views with the teacher's saliency, or (``run``) what that run
    does with the object (mask, tokens, reconstruction; ``seed``: the mask draw's)."""
    if run:
        from pipeline.show.run_picture import run_picture

        return run_picture(req.data_root, run, split, obj, req.data_root / "show", out, seed)
    from pipeline.runner.lookup import built_features
    from pipeline.show.stores import show_object

    req = req.with_config(req.config.with_values("cache-features", teacher=teacher))
    views, features = built_features(req.context())
    return show_object(views, features, split, obj, req.data_root / "show", out)


def show_partseg(
    req: Request, obj: str, split: str | None, run: str | None, seed: int, out: Path | None
) -> Path:
    """The PNG written: the part segmentation the run's last ``i2p partseg`` trained, on one shape of its
    dataset (``req.dataset`` picks among several), beside the ground truth."""
    from pipeline.show.partseg_picture import partseg_picture

    if not run:
        raise ConfigError("--partseg draws a run's part segmentation", "pass --run NAME")
    return partseg_picture(
        req.data_root, run, req.dataset, split or "test", obj, req.data_root / "show", out, seed
    )


def run(req: Request, stage: str | None, quick: bool) -> Iterator[tuple[str, Path, dict[str, Any] | None]]:
    """Bring ``stage`` (default: the default targets) up to date, as ``dvc repro``: per target, as it
    finishes, (target, output, the evaluation record for an evaluation stage)."""
    if stage is not None and stage not in STAGES:
        close = difflib.get_close_matches(stage, list(STAGES), n=1)
        hint = f"did you mean {close[0]}?" if close else f"stages: {', '.join(STAGES)}"
        raise ConfigError(f"unknown stage {stage!r}", hint)
    req = req.with_config(with_quick(req.config)) if quick else req
    for target in [stage] if stage else DEFAULT_TARGETS:
        out = bring_up_to_date(target, req)
        yield target, out, rundir.read_eval(out) if STAGES[target].kind == "eval" else None


def status(req: Request, quick: bool) -> dict[str, Any]:
    """The state ``i2p status`` shows (stages per dataset, stores, runs), against the quick settings
    with ``quick``."""
    from pipeline.runner.status import collect

    config = with_quick(req.config) if quick else req.config
    return collect(config, req.data_root, req.dataset, req.store_root)


def train_tiny_teacher(
    req: Request, training: Any, out: Path | None, command: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """Train tiny-synthetic on the train split of the request's dataset (prepared, or found, first);
    (weights written, training record). ``command``: the command line, kept in the record."""
    from pipeline.features.tiny_teachers import packaged_weights
    from pipeline.features.train_teacher import NAME, train_teacher

    points = bring_up_to_date("prepare", req)
    target = out.expanduser().resolve() if out else packaged_weights(NAME)
    return target, train_teacher(points, target, training, command)


def gc(req: Request, remove: bool) -> tuple[list[Any], int | None]:
    """What nothing in the data root uses (stores, optimizer state of finished runs); removed when
    ``remove``. Returns (items, bytes freed: None when only listed)."""
    from pipeline.runner import gc as garbage

    items = garbage.collect(req.data_root)
    return items, (garbage.remove(items) if remove and items else None)


def export(req: Request, which: str, out: Path | None) -> Any:
    """``i2p export``: the run's checkpoint (``--run``, else the dataset's run) as shareable files
    (:mod:`pipeline.storage.export`); default folder ``<data root>/exports/<run>-<which>/``."""
    from pipeline.runner.plan import plan
    from pipeline.storage.export import export_run

    name = req.run or plan("train", req.context()).params.run
    folder = out.expanduser().resolve() if out else Path(req.data_root) / "exports" / f"{name}-{which}"
    return export_run(rundir.run_dir(req.data_root, name), folder, which)
