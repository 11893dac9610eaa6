"""The ``i2p`` command line: parse → one validated config and planning context → one pipeline call.

Stage commands live here; the evaluation commands in ``cli_eval.py``; shared options and the session in
``cli_options.py``. torch, open_clip, zarr and dask are imported inside the pipeline functions a command
calls, so ``i2p --help`` and ``i2p status`` stay fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

import cli_eval
import cli_teacher
from cli_options import (
    DataRoot,
    Dataset,
    FlagGroup,
    Quiet,
    Run,
    Sets,
    Teacher,
    Verbose,
    build,
    context,
    default,
    global_options,
    result_lines,
    say,
    session,
    store_root,
)
from pipeline.core.errors import I2PError
from pipeline.storage.remote import is_url, location

app = typer.Typer(
    name="i2p",
    help="I2P-MAE pre-training of 3D point-cloud encoders from cached 2D teacher features.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=FlagGroup,
)
app.callback()(global_options)
app.add_typer(cli_eval.eval_app, name="eval")
app.command("embed")(cli_eval.embed_command)
app.command("finetune")(cli_eval.finetune_command)
app.command("fewshot")(cli_eval.fewshot_command)
app.add_typer(cli_teacher.teacher_app, name="teacher")

# `i2p run --quick`: the same pipeline and architecture, offline and short. The data are the synthetic v3
# set (class in the global structure, a relief per object: random initialisation is far from the ceiling
# there, docs/datasets.md); the teacher is tiny-synthetic, which i2p trained on that set's train views
# (it knows a little: docs/training.md); 15 steps of 16 objects with no warm-up (the paper's 10-epoch
# warm-up with its one-epoch lag would keep lr at 1e-6 throughout); every SVM number, the random-init
# baseline's included, uses BatchNorm statistics re-estimated on the train split (docs/evaluation.md).
# The run is named quick-v3 so that a `runs/quick` of the earlier settings (v1, tiny-random) is left as it
# is instead of being refused as "trained with other settings". A value the user sets (--set) wins.
QUICK = {
    "prepare": {"synthetic_version": 3},
    "cache-features": {"teacher": "tiny-synthetic"},
    "train": {"run": "quick-v3", "epochs": 1, "max_steps": 15, "batch_size": 16, "warmup_epochs": 0, "cosine_to_end": True,
              "monitor_dataset": "synthetic", "monitor_every_steps": 7, "monitor_bn_stats": "reestimate"},  # steps 0, 7, 14
    "eval": {"bn_stats": "reestimate"},
}
Workers = Annotated[int | None, typer.Option(help="Local dask worker processes.")]
Scheduler = Annotated[str | None, typer.Option(help="Address of a dask.distributed scheduler.")]


@app.command()
def prepare(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Argument(help="synthetic | shapenet | modelnet40 | scanobjectnn | folder")] = None,
    root: Annotated[Path | None, typer.Option(help="Where the release or meshes lie (layout is detected).")] = None,
    name: Annotated[str | None, typer.Option("--dataset", "-d", "--name", help="Dataset name (default: from the source).")] = None,
    variant: Annotated[str | None, typer.Option(help="ScanObjectNN: obj-bg | obj-only | pb-t50-rs.")] = None,
    points: Annotated[int | None, typer.Option(help=f"Points per mesh object (default {default('prepare', 'points')}).")] = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad input.")] = False,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Sample point clouds from a dataset into points/<dataset>-<fp8>.zarr."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        from pipeline import sources

        config = config.with_values(
            "prepare", source=source, root=str(root.expanduser().resolve()) if root else None, variant=variant,
            points=points, workers=workers, scheduler=scheduler, strict=strict or None,
        )
        if name is None and (source or root):
            name = sources.default_dataset_name(config.params("prepare"))
        say(f"points store: {build('prepare', context(config, root_dir, name))}")


@app.command()
def render(
    ctx: typer.Context, dataset: Dataset = None, workers: Workers = None, scheduler: Scheduler = None,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Project every object into three depth views (method §5.2) → views/<dataset>-<fp8>.zarr."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        config = config.with_values("render", workers=workers, scheduler=scheduler)
        say(f"views store: {build('render', context(config, root_dir, dataset))}")


@app.command("cache-features")
def cache_features(
    ctx: typer.Context,
    dataset: Dataset = None,
    teacher: Teacher = None,
    weights: Annotated[Path | None, typer.Option(help="Local checkpoint for the teacher (.bin, .safetensors, .pt).")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per teacher forward.")] = None,
    shard: Annotated[str | None, typer.Option(help="i/n: fill every n-th chunk from i (n processes share a store).")] = None,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Run the frozen 2D teacher on every view once → features/<dataset>-<teacher>-<fp8>.zarr."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        config = config.with_values(
            "cache-features", teacher=teacher, weights=str(weights.expanduser().resolve()) if weights else None,
            device=device, batch_size=batch_size, shard=shard,
        )
        say(f"features store: {build('cache-features', context(config, root_dir, dataset))}")


@app.command()
def show(
    ctx: typer.Context,
    obj: Annotated[str, typer.Argument(metavar="OBJECT", help="Object id (e.g. chair/chair_0003) or row index.")],
    dataset: Dataset = None,
    split: Annotated[str, typer.Option(help="train | test")] = "train",
    teacher: Teacher = None,
    run_name: Annotated[str | None, typer.Option("--run", help="Draw what this run does with the object: mask, tokens, reconstruction.")] = None,
    seed: Annotated[int, typer.Option(help="--run: seed of the mask draw.")] = 0,
    out: Annotated[Path | None, typer.Option(help="PNG to write (default <data-root>/show/<dataset>-<split>-<id>-<teacher>.png).")] = None,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Write a PNG of an object's depth views with the teacher's saliency, or (--run) of a run's step on it."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        if run_name:
            from pipeline.show.run_picture import run_picture

            say(f"wrote {run_picture(root_dir, run_name, split, obj, root_dir / 'show', out, seed)}")
            return
        from pipeline.runner.lookup import built_features
        from pipeline.show.stores import show_object

        config = config.with_values("cache-features", teacher=teacher)
        views, features = built_features(context(config, root_dir, dataset))
        say(f"wrote {show_object(views, features, split, obj, root_dir / 'show', out)}")


@app.command()
def train(
    ctx: typer.Context,
    dataset: Dataset = None,
    run_name: Run = None,
    epochs: Annotated[int | None, typer.Option(help=f"Epochs (default {default('train', 'epochs')}).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (at least 1).")] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Objects per step (default {default('train', 'batch_size')}).")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    seed: Annotated[int | None, typer.Option(help=f"Random seed (default {default('train', 'seed')}).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run (it continues by itself when rerun).")] = False,
    masking: Annotated[str | None, typer.Option(help="2d-guided | random")] = None,
    mask_ratio: Annotated[float | None, typer.Option(help=f"Share of top-scale tokens masked (default {default('train', 'mask_ratio')}).")] = None,
    targets: Annotated[str | None, typer.Option(help="3d | 3d+2d")] = None,
    teacher: Teacher = None,
    features: Annotated[str | None, typer.Option(help="Train on this features store (and its views and points; a folder or URL).")] = None,
    online_teacher: Annotated[str | None, typer.Option(help="The official step: project each step's augmented input and run this teacher on it.")] = None,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Pre-train I2P-MAE from the cached stores (method §2–§9.1) into runs/<run>/."""
    done = "interrupted: the run keeps its last checkpoint; rerun the same command to continue"
    with session(ctx, data_root, sets, verbose, quiet, interrupted=done) as (config, root_dir):
        from pipeline.runner.lookup import features_dataset, features_pins

        config = config.with_values(
            "train", run=run_name, epochs=epochs, max_steps=max_steps, batch_size=batch_size, device=device,
            seed=seed, resume=resume or None, masking=masking, mask_ratio=mask_ratio, targets=targets,
            online_teacher=online_teacher,
        ).with_values("cache-features", teacher=teacher)
        pins = None
        if features:
            features = location(features) if is_url(features) else Path(features).expanduser().resolve()
            pins, dataset = features_pins(features), features_dataset(features, dataset)
        say(f"run: {build('train', context(config, root_dir, dataset, run_name, pins))}")


@app.command()
def run(
    ctx: typer.Context,
    stage: Annotated[str | None, typer.Argument(help="Bring this stage up to date (default: eval, and all it needs).")] = None,
    dataset: Dataset = None,
    quick: Annotated[bool, typer.Option("--quick", help="Offline short run: synthetic v3 data, the tiny-synthetic teacher, 15 steps.")] = False,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Bring a stage and everything it needs up to date (as `dvc repro`); skips what is up to date."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        from pipeline.runner.stages import DEFAULT_TARGETS, STAGES
        from pipeline.storage import rundir

        if stage is not None and stage not in STAGES:
            import difflib

            from pipeline.core.errors import ConfigError

            close = difflib.get_close_matches(stage, list(STAGES), n=1)
            raise ConfigError(f"unknown stage {stage!r}", f"did you mean {close[0]}?" if close else f"stages: {', '.join(STAGES)}")
        config = _quick(config) if quick else config
        for target in [stage] if stage else DEFAULT_TARGETS:
            out = build(target, context(config, root_dir, dataset))
            say(f"{target}: {out}")
            for line in result_lines(target, rundir.read_eval(out)) if STAGES[target].kind == "eval" else []:
                say(f"  {line}")


def _quick(config):
    """QUICK's values under the user's own --set values (which win)."""
    for stage, values in QUICK.items():
        mine = config.overrides.get(stage, {})
        config = config.with_values(stage, **{k: v for k, v in values.items() if k not in mine})
    return config


@app.command()
def status(
    ctx: typer.Context,
    dataset: Dataset = None,
    quick: Annotated[bool, typer.Option("--quick", help="Compare with the settings of `i2p run --quick`.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole state as JSON (schema: docs/pipeline.md).")] = False,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Every stage per dataset (up to date, partial, missing, or which param changed), stores, runs."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        from pipeline.runner.status import collect, render_json, render_tables

        state = collect(_quick(config) if quick else config, root_dir, dataset, store_root())
        say(render_json(state)) if as_json else render_tables(state)


@app.command()
def gc(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", help="Remove what is listed (default: only list it).")] = False,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """List stores no dataset or run uses, and optimizer state of finished runs; remove them with --yes."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        from pipeline.runner import gc as garbage
        from pipeline.runner.status import size_text

        items = garbage.collect(root_dir)
        for g in items:
            say(f"{size_text(g.bytes):>10}  {g.kind:<15}  {g.path.relative_to(root_dir)}  ({g.why})")
        total = sum(g.bytes for g in items)
        if not items:
            say("nothing to collect")
        elif yes:
            say(f"freed {size_text(garbage.remove(items))}")
        else:
            say(f"{size_text(total)} in {len(items)} item(s) would be freed; rerun with --yes to remove them")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except I2PError as err:  # raised outside a session (e.g. while parsing)
        from cli_options import report_error

        report_error(err)
        sys.exit(2)


if __name__ == "__main__":
    main()
