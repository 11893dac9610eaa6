"""The ``i2p`` command line: parse → build one validated config → call one function.

Only this module reads the environment (``I2P_DATA_ROOT``, ``I2P_DEBUG``, ``HF_HUB_OFFLINE``).
torch, open_clip, zarr and dask are imported inside the commands that need them, so ``i2p --help``
and ``i2p status`` stay fast.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli_options import DataRoot, Dataset, FlagGroup, Quiet, Sets, Stages, Verbose
from pipeline.errors import I2PError

app = typer.Typer(
    name="i2p",
    help="I2P-MAE pre-training of 3D point-cloud encoders from cached 2D teacher features.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=FlagGroup,
)

# `i2p run --quick`: the same pipeline and architecture, offline and short (about 10 minutes on 2 CPU
# cores): the tiny random teacher needs no download; 15 steps of 16 objects (the paper's model costs
# ≈1 s per object per step on 2 CPU cores); no warm-up, so the short run trains at lr 1e-3 (the paper's
# 10-epoch warm-up with its one-epoch lag would keep lr at 1e-6 throughout).
QUICK = {
    "cache-features": {"teacher": "tiny-random"},
    "train": {
        "run": "quick",
        "epochs": 1,
        "max_steps": 15,
        "batch_size": 16,
        "warmup_epochs": 0,
        "cosine_to_end": True,
    },
}


@dataclass
class Globals:
    data_root: Path | None = None
    sets: list[str] | None = None
    verbose: int = 0
    quiet: bool = False
    stages: Path | None = None


@app.callback()
def main_options(
    ctx: typer.Context,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    stages: Stages = None,
) -> None:
    """Global options; each command also accepts them after its name."""
    ctx.obj = Globals(data_root, sets, verbose, quiet, stages)


@contextmanager
def session(
    ctx: typer.Context,
    data_root: Path | None,
    sets: list[str] | None,
    verbose: int,
    quiet: bool,
    stages: Path | None = None,
) -> Iterator[tuple]:
    """Set up logging, load the config; print known errors as one red line plus a hint."""
    from pipeline.console import console, setup_logging

    g: Globals = ctx.obj or Globals()
    setup_logging(-1 if (quiet or g.quiet) else max(verbose, g.verbose))
    try:
        from pipeline.config import load_config

        config = load_config(stages or g.stages, [*(g.sets or []), *(sets or [])])
        config = dataclasses.replace(config, offline=os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"))
        root = Path(data_root or g.data_root or "data").expanduser().resolve()
        yield config, root
    except I2PError as err:
        if os.environ.get("I2P_DEBUG") == "1":  # the traceback first, then the same red line and hint
            console.print_exception()
        from rich.markup import escape

        console.print(f"[bold red]error:[/] {escape(err.message)}", highlight=False, soft_wrap=True)
        if err.hint:
            console.print(f"[dim]hint:[/] {escape(err.hint)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted[/]: finished chunks and the last checkpoint are kept; "
            "rerun the command (train: with --resume) to continue"
        )
        raise typer.Exit(130) from None


@app.command()
def prepare(
    ctx: typer.Context,
    source: Annotated[
        str | None, typer.Argument(help="synthetic | shapenet | modelnet40 | scanobjectnn | folder")
    ] = None,
    root: Annotated[
        Path | None, typer.Option(help="Where the release or meshes lie (layout is detected).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--dataset", "-d", "--name", help="Dataset name (default: from the source and layout)."),
    ] = None,
    variant: Annotated[str | None, typer.Option(help="ScanObjectNN: obj-bg | obj-only | pb-t50-rs.")] = None,
    points: Annotated[int | None, typer.Option(help="Points per mesh object (stages.yaml: 8192).")] = None,
    workers: Annotated[int | None, typer.Option(help="Local dask worker processes.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Address of a dask.distributed scheduler.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad input.")] = False,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Sample point clouds from a dataset into points/<dataset>-<fp8>.zarr."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        from pipeline.prepare import prepare as run_prepare

        params = config.params(
            "prepare",
            source=source,
            root=str(root.expanduser().resolve()) if root else None,
            variant=variant,
            points=points,
            workers=workers,
            scheduler=scheduler,
            strict=strict or None,
        )
        result = run_prepare(params, root_dir, name)
        _say(f"points store: {result.path}")


@app.command()
def render(
    ctx: typer.Context,
    dataset: Dataset = None,
    workers: Annotated[int | None, typer.Option(help="Local dask worker processes.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Address of a dask.distributed scheduler.")] = None,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Project every object into three depth views (spec §5.2) → views/<dataset>-<fp8>.zarr."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        config = config.with_values("render", workers=workers, scheduler=scheduler)
        _say(f"views store: {_run(config, root_dir, 'render', dataset)}")


@app.command("cache-features")
def cache_features(
    ctx: typer.Context,
    dataset: Dataset = None,
    teacher: Annotated[
        str | None,
        typer.Option(help="clip-vit-b16 | clip-vit-b32 | clip-vit-l14 | tiny-random | open_clip:MODEL/TAG"),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Local checkpoint for the teacher (.bin, .safetensors, .pt).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per teacher forward.")] = None,
    shard: Annotated[
        str | None, typer.Option(help="i/n: fill every n-th chunk from i (n processes share a store).")
    ] = None,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Run the frozen 2D teacher on every view once → features/<dataset>-<teacher>-<fp8>.zarr."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        config = config.with_values(
            "cache-features",
            teacher=teacher,
            weights=str(weights.expanduser().resolve()) if weights else None,
            device=device,
            batch_size=batch_size,
            shard=shard,
        )
        _say(f"features store: {_run(config, root_dir, 'cache-features', dataset)}")


@app.command()
def show(
    ctx: typer.Context,
    obj: Annotated[
        str, typer.Argument(metavar="OBJECT", help="Object id (e.g. chair/chair_0003) or row index.")
    ],
    dataset: Dataset = None,
    split: Annotated[str, typer.Option(help="train | test")] = "train",
    teacher: Annotated[
        str | None, typer.Option(help="Whose saliency to overlay (default: stages.yaml's).")
    ] = None,
    run_name: Annotated[
        str | None,
        typer.Option("--run", help="Draw what this run does with the object: mask, tokens, reconstruction."),
    ] = None,
    seed: Annotated[int, typer.Option(help="--run: seed of the mask draw.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="PNG to write (default <data-root>/show/<dataset>-<split>-<id>-<teacher>.png)."),
    ] = None,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Write a PNG of an object's depth views with the teacher's saliency, or (--run) of a run's step on it."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        if run_name:
            from pipeline.run_picture import run_picture

            _say(f"wrote {run_picture(root_dir, run_name, split, obj, root_dir / 'show', out, seed)}")
            return
        from pipeline.runner import resolve_dataset, run_stage
        from pipeline.show import show_object

        config = config.with_values("cache-features", teacher=teacher)
        name = resolve_dataset(root_dir, dataset, default="synthetic")
        done: dict[str, Path] = {}
        features = run_stage("cache-features", config, root_dir, name, done)
        _say(f"wrote {show_object(done['render'], features, split, obj, root_dir / 'show', out)}")


def _run(config, root_dir: Path, stage: str, dataset: str | None) -> Path:  # noqa: ANN001
    from pipeline.runner import run_stage

    return run_stage(stage, config, root_dir, _dataset(root_dir, dataset))


def _dataset(root_dir: Path, dataset: str | None) -> str:
    from pipeline.runner import resolve_dataset

    return resolve_dataset(root_dir, dataset, default="synthetic")


@app.command()
def train(
    ctx: typer.Context,
    dataset: Dataset = None,
    run_name: Annotated[str | None, typer.Option("--run", help="Run directory name under runs/.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (stages.yaml: 300).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Objects per step (stages.yaml: 64).")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (stages.yaml: 1).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from its ckpt-last.pt.")] = False,
    masking: Annotated[str | None, typer.Option(help="2d-guided | random")] = None,
    mask_ratio: Annotated[float | None, typer.Option(help="Share of top-scale tokens masked (0.8).")] = None,
    targets: Annotated[str | None, typer.Option(help="3d | 3d+2d")] = None,
    features: Annotated[
        Path | None, typer.Option(help="Train on this features store (which teacher cache).")
    ] = None,
    online_teacher: Annotated[
        str | None, typer.Option(help="Render and run this teacher inside each step.")
    ] = None,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Pre-train I2P-MAE from the cached stores (spec §2–§9.1) into runs/<run>/."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        from pipeline.training import run_training

        config = config.with_values(
            "train",
            run=run_name,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            device=device,
            seed=seed,
            resume=resume or None,
            masking=masking,
            mask_ratio=mask_ratio,
            targets=targets,
            online_teacher=online_teacher,
        )
        from pipeline.training import Distributed

        dist = Distributed(
            *(int(os.environ.get(k, d)) for k, d in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
        )
        name = _dataset(root_dir, dataset)
        _say(f"run: {run_training(config, root_dir, name, features.resolve() if features else None, dist)}")


@app.command()
def run(
    ctx: typer.Context,
    dataset: Dataset = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Offline smoke run: tiny-random teacher, short training.")
    ] = False,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Run every implemented stage of stages.yaml in order, skipping those that are up to date."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        from pipeline.runner import resolve_dataset, run_stage, runnable_stages

        if quick:
            for stage, values in QUICK.items():
                config = config.with_values(stage, **values)
        name = resolve_dataset(root_dir, dataset, default="synthetic")
        done: dict[str, Path] = {}
        for stage in runnable_stages(config):
            _say(f"{stage}: {run_stage(stage, config, root_dir, name, done)}")


@app.command()
def status(
    ctx: typer.Context,
    dataset: Dataset = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Compare with the settings of `i2p run --quick`.")
    ] = False,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Show every stage and store: up to date, partial k/n, missing, or which parameter changed."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        from pipeline.status import print_status

        if quick:
            for stage, values in QUICK.items():
                config = config.with_values(stage, **values)
        print_status(config, root_dir, dataset)


def _register_evaluation() -> None:
    """The evaluation commands live in pipeline/eval_commands.py (cheap to import: no torch)."""
    from pipeline.eval_commands import embed_command, eval_app, fewshot_command, finetune_command

    app.add_typer(eval_app, name="eval")
    app.command("embed")(embed_command)
    app.command("finetune")(finetune_command)
    app.command("fewshot")(fewshot_command)


_register_evaluation()


def _say(text: str) -> None:
    from pipeline.console import console

    console.print(text, highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except I2PError as err:  # raised outside a session (e.g. while parsing)
        if os.environ.get("I2P_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        print(f"error: {err.message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
