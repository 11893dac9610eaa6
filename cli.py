"""The ``i2p`` command line: each command parses, builds one validated request (its flags merged into the
config), calls one pipeline function (:mod:`pipeline.runner.commands`) and prints the result
(``cli_output``).

Stage commands live here; the evaluation commands in ``cli_eval.py`` (``partseg`` in ``cli_partseg.py``), ``status`` and ``gc`` in
``cli_state.py``, ``i2p teacher`` in ``cli_teacher.py``; option types, the global options and the session in
``cli_options.py``. torch, open_clip, zarr and dask are imported inside the pipeline functions a command
calls, so ``i2p --help`` and ``i2p status`` stay fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

import cli_eval
import cli_partseg
import cli_reproduce
import cli_state
import cli_teacher
import cli_verify
from cli_options import (
    Dataset,
    Device,
    FlagGroup,
    Run,
    Teacher,
    default,
    global_options,
    request,
    session,
    with_global_options,
)
from cli_output import report, say, stage_lines
from pipeline.core.errors import I2PError

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
app.command("partseg")(cli_partseg.partseg_command)
app.command("reproduce")(cli_reproduce.reproduce_command)
app.add_typer(cli_teacher.teacher_app, name="teacher")

Workers = Annotated[int | None, typer.Option(help="Local dask worker processes.")]
Scheduler = Annotated[str | None, typer.Option(help="Address of a dask.distributed scheduler.")]


@app.command()
@with_global_options
def prepare(
    ctx: typer.Context,
    source: Annotated[
        str | None,
        typer.Argument(
            help="synthetic | shapenet | modelnet40 | scanobjectnn | folder | shapenetpart | synthetic-parts"
        ),
    ] = None,
    root: Annotated[
        Path | None, typer.Option(help="Where the release or meshes lie (layout is detected).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--dataset", "-d", "--name", help="Dataset name (default: from the source).")
    ] = None,
    variant: Annotated[str | None, typer.Option(help="ScanObjectNN: obj-bg | obj-only | pb-t50-rs.")] = None,
    points: Annotated[
        int | None, typer.Option(help=f"Points per mesh object (default {default('prepare', 'points')}).")
    ] = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad input.")] = False,
) -> None:
    """Sample point clouds from a dataset into points/<dataset>-<fp8>.zarr."""
    options = dict(locals())
    with session(ctx) as (config, root_dir):
        from pipeline.runner import commands

        where = str(root.expanduser().resolve()) if root else None
        config = config.with_options("prepare", options, root=where, strict=strict or None)
        say(f"points store: {commands.prepare(request(config, root_dir, name), bool(source or root))}")


@app.command()
@with_global_options
def render(
    ctx: typer.Context, dataset: Dataset = None, workers: Workers = None, scheduler: Scheduler = None
) -> None:
    """Project every object into three depth views (method §5.2) → views/<dataset>-<fp8>.zarr."""
    with session(ctx) as (config, root_dir):
        from pipeline.runner import commands

        config = config.with_values("render", workers=workers, scheduler=scheduler)
        say(f"views store: {commands.bring_up_to_date('render', request(config, root_dir, dataset))}")


@app.command("cache-features")
@with_global_options
def cache_features(
    ctx: typer.Context,
    dataset: Dataset = None,
    teacher: Teacher = None,
    weights: Annotated[
        Path | None, typer.Option(help="Local checkpoint for the teacher (.bin, .safetensors, .pt).")
    ] = None,
    device: Device = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per teacher forward.")] = None,
    shard: Annotated[
        str | None, typer.Option(help="i/n: fill every n-th chunk from i (n processes share a store).")
    ] = None,
) -> None:
    """Run the frozen 2D teacher on every view once → features/<dataset>-<teacher>-<fp8>.zarr."""
    options = dict(locals())
    with session(ctx) as (config, root_dir):
        from pipeline.runner import commands

        where = str(weights.expanduser().resolve()) if weights else None
        config = config.with_options("cache-features", options, weights=where)
        say(
            f"features store: {commands.bring_up_to_date('cache-features', request(config, root_dir, dataset))}"
        )


@app.command()
@with_global_options
def show(
    ctx: typer.Context,
    obj: Annotated[
        str, typer.Argument(metavar="OBJECT", help="Object id (e.g. chair/chair_0003) or row index.")
    ],
    dataset: Dataset = None,
    split: Annotated[
        str | None, typer.Option(help="train | test (default train; test with --partseg)")
    ] = None,
    teacher: Teacher = None,
    run_name: Annotated[
        str | None,
        typer.Option("--run", help="Draw what this run does with the object: mask, tokens, reconstruction."),
    ] = None,
    seed: Annotated[int, typer.Option(help="--run: seed of the mask draw.")] = 0,
    partseg: Annotated[
        bool, typer.Option("--partseg", help="--run: its part segmentation of the object beside the truth.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="PNG to write (default <data-root>/show/<dataset>-<split>-<id>-<teacher>.png)."),
    ] = None,
) -> None:
    """Write a PNG of an object's depth views with the teacher's saliency, or (--run) of a run's step on it."""
    with session(ctx) as (config, root_dir):
        from pipeline.runner import commands

        if partseg:
            say(
                f"wrote {commands.show_partseg(request(config, root_dir, dataset), obj, split, run_name, seed, out)}"
            )
            return
        req = request(config, root_dir, dataset)
        say(f"wrote {commands.show(req, obj, split or 'train', teacher, run_name, seed, out)}")


@app.command()
@with_global_options
def train(
    ctx: typer.Context,
    dataset: Dataset = None,
    run_name: Run = None,
    epochs: Annotated[
        int | None, typer.Option(help=f"Epochs (default {default('train', 'epochs')}).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (at least 1).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Objects per step (default {default('train', 'batch_size')}).")
    ] = None,
    device: Device = None,
    seed: Annotated[
        int | None, typer.Option(help=f"Random seed (default {default('train', 'seed')}).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run (it continues by itself when rerun).")
    ] = False,
    masking: Annotated[str | None, typer.Option(help="2d-guided | random")] = None,
    mask_ratio: Annotated[
        float | None,
        typer.Option(help=f"Share of top-scale tokens masked (default {default('train', 'mask_ratio')})."),
    ] = None,
    targets: Annotated[str | None, typer.Option(help="3d | 3d+2d")] = None,
    teacher: Teacher = None,
    features: Annotated[
        str | None,
        typer.Option(help="Train on this features store (and its views and points; a folder or URL)."),
    ] = None,
    online_teacher: Annotated[
        str | None,
        typer.Option(
            help="The official step: project each step's augmented input and run this teacher on it."
        ),
    ] = None,
) -> None:
    """Pre-train I2P-MAE from the cached stores (method §2–§9.1) into runs/<run>/."""
    options = dict(locals())
    done = "interrupted: the run keeps its last checkpoint; rerun the same command to continue"
    with session(ctx, interrupted=done) as (config, root_dir):
        from pipeline.runner import commands

        config = config.with_options("train", options, run=run_name, resume=resume or None).with_values(
            "cache-features", teacher=teacher
        )
        say(f"run: {commands.train(request(config, root_dir, dataset, run_name), features)}")


@app.command()
@with_global_options
def run(
    ctx: typer.Context,
    stage: Annotated[
        str | None, typer.Argument(help="Bring this stage up to date (default: eval, and all it needs).")
    ] = None,
    dataset: Dataset = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="Offline short run: synthetic v3 data, the tiny-synthetic teacher, 15 steps."
        ),
    ] = False,
) -> None:
    """Bring a stage and everything it needs up to date (as `dvc repro`); skips what is up to date."""
    with session(ctx) as (config, root_dir):
        from pipeline.runner import commands

        for target, out, record in commands.run(request(config, root_dir, dataset), stage, quick):
            report(stage_lines(target, out, record))


@app.command()
@with_global_options
def export(
    ctx: typer.Context,
    run_name: Run = None,
    dataset: Dataset = None,
    which: Annotated[str, typer.Option("--which", help="Checkpoint of the run: last | best.")] = "last",
    out: Annotated[
        Path | None, typer.Option(help="Folder to write (default <data-root>/exports/<run>-<which>/).")
    ] = None,
) -> None:
    """Write a run's model as files others load: model.safetensors, config.json, a model card, and the
    official-format pre-train.pth."""
    with session(ctx) as (config, root_dir):
        from pipeline.runner import commands

        done = commands.export(request(config, root_dir, dataset, run_name), which, out)
        say(f"exported {', '.join(done.files)} to {done.folder}")


app.command()(cli_state.status)
app.command()(cli_state.gc)
app.command()(cli_verify.verify)


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
